"""The hunt: from seed addresses to the actor's other infrastructure, as a versioned JSON result.

``hunt(store, seeds, ...)`` returns a dict in the ``flowpivot-hunt/1`` format described in
docs/hunt.md and by ``result.schema.json`` (shipped beside this module).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from .engine import DEFAULTS, FORMAT, hunt
from .noise import Allowlist, read_allowlist
from .params import HuntParams
from .seeds import Seed, SeedSet, parse_indicator, read_seeds, refang

__all__ = [
    "DEFAULTS",
    "FORMAT",
    "Allowlist",
    "HuntParams",
    "Seed",
    "SeedSet",
    "hunt",
    "parse_indicator",
    "read_allowlist",
    "read_seeds",
    "refang",
    "result_schema",
    "validate_result",
]


@cache
def result_schema() -> dict[str, Any]:
    """The JSON Schema of the hunt result (``flowpivot/hunt/result.schema.json``)."""
    return json.loads(resources.files(__package__).joinpath("result.schema.json").read_text())


def validate_result(result: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``result`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(result, result_schema())


# `flowpivot.hunt(...)` is this package called as its function (flowpivot/_callable.py)
from .._callable import make_callable as _make_callable  # noqa: E402

_make_callable(__name__, "hunt")

"""The result schema knows the keys the report reads (probes, near misses, seed sets, answers, confidence),
all optional: a result from before them still validates."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from flowpivot.hunt import result_schema

FIXTURE = Path(__file__).parent / "fixtures" / "hunt_result.json"
NEW = ("probes", "near_misses", "near_misses_total", "seed_input")


def minimal(doc: dict[str, Any]) -> dict[str, Any]:
    """The fixture's parts that follow the schema (its clusters and exclusions are older hand-made shapes)."""
    return {
        "format": "flowpivot-hunt/1",
        "window": doc["window"],
        "parameters": {},
        "seeds": doc["seeds"],
        "clusters": [],
        "overlaps": [],
        "expansion": doc["expansion"],
        "victims": doc["victims"],
        "excluded": [],
        **{k: doc[k] for k in NEW},
    }


def test_the_new_keys_validate_and_stay_optional() -> None:
    schema = result_schema()
    doc = minimal(json.loads(FIXTURE.read_text()))
    jsonschema.validate(doc, schema)
    assert schema["required"] == ["format", "window", "parameters", "seeds", "clusters", "overlaps", "expansion",
                                  "victims", "excluded"]  # fmt: skip
    old = copy.deepcopy(doc)
    for k in NEW:
        old.pop(k)
    jsonschema.validate(old, schema)
    cluster = {"id": "C1", "asn": 1, "as_name": None, "country": None, "allocation": None, "members": ["192.0.2.1"],
               "seeds": [], "established": True, "initiator": "members", "services": [], "flows": 1,
               "packets_est": 1, "bytes_est": 1, "first_seen": "2024-04-01T00:00:00Z",
               "last_seen": "2024-04-01T00:00:00Z", "score": 0.5, "confidence": 0.9,
               "evidence": {"members": {"192.0.2.1": {"confidence": 0.9, "p_value": 0.001, "substantial_seeds": 3}},
                            "links": [{"members": ["192.0.2.1", "192.0.2.2"], "seeds": [], "hosts": []}]}}  # fmt: skip
    jsonschema.validate({**doc, "clusters": [cluster]}, schema)


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        (("seeds", 0, "status"), "asleep"),
        (("victims", 0, "state"), "maybe"),
        (("probes", 0, "kind"), "fishing"),
        (("near_misses", 0, "reason"), "bad-luck"),
        (("expansion", 0, "confidence"), 1.5),
        (("near_misses_total",), -1),
    ],
)
def test_the_new_keys_are_checked(where: tuple[Any, ...], bad: Any) -> None:
    doc = minimal(json.loads(FIXTURE.read_text()))
    node: Any = doc
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, result_schema())

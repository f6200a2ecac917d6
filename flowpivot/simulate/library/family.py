"""Scenario families as data: load a family file and draw one instance of its parameters.

A family file (``families/NAME.json``) is a tree of parameters. Where a value is a range, a draw picks
one value from it:

* ``[lo, hi]`` of two numbers: uniform in the range (an integer when both ends are integers);
* ``{"choice": [a, b, ...]}``: one of the listed values (each drawn again if it is a range);
* ``{"log": [lo, hi]}``: log-uniform (intervals spanning orders of magnitude, e.g. 30 s to 6 h);
* ``{"list": [...]}``: a literal list, kept as it is;
* ``{"repeat": N, "each": X}``: a list of N (itself drawn) independent draws of X (e.g. 1-4 operations);
* any other list: each element drawn on its own (e.g. the list of operations);
* ``"@name"``: the value drawn for the top-level parameter ``name`` (two groups at one drawn provider);
* anything else is kept as it is.

``sizes.small`` and ``sizes.realistic`` hold overrides merged into the tree before the draw, so one
family describes both the quick test world and the benchmark world.
"""

from __future__ import annotations

import json
import math
import zlib
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["family_names", "load_family", "draw_params", "draw_rngs", "SIZES"]

SIZES = ("small", "realistic")


@cache
def family_names() -> tuple[str, ...]:
    """Every family shipped in ``families/``, sorted."""
    root = resources.files(__package__).joinpath("families")
    return tuple(sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json")))


def load_family(name: str) -> dict[str, Any]:
    """The parsed family file; raises KeyError naming the known families."""
    if name not in family_names():
        raise KeyError(f"unknown scenario family {name!r}; known: {', '.join(family_names())}")
    text = resources.files(__package__).joinpath("families", f"{name}.json").read_text()
    data = json.loads(text)
    if data.get("name") != name:
        raise ValueError(f"families/{name}.json: its 'name' is {data.get('name')!r}, expected {name!r}")
    return data


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    return over


def _is_range(v: Any) -> bool:
    return (
        isinstance(v, list) and len(v) == 2 and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    )


def _draw(v: Any, rng: np.random.Generator) -> Any:
    if _is_range(v):
        lo, hi = v
        if isinstance(lo, int) and isinstance(hi, int):
            return int(rng.integers(lo, hi + 1))
        return float(rng.uniform(lo, hi))
    if isinstance(v, dict):
        if set(v) == {"choice"}:
            options = v["choice"]
            return _draw(options[int(rng.integers(len(options)))], rng)
        if set(v) == {"log"}:
            lo, hi = v["log"]
            x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            return int(round(x)) if isinstance(lo, int) and isinstance(hi, int) else x
        if set(v) == {"list"}:
            return list(v["list"])
        if set(v) == {"repeat", "each"}:
            return [_draw(v["each"], rng) for _ in range(int(_draw(v["repeat"], rng)))]
        return {k: _draw(x, rng) for k, x in v.items()}
    if isinstance(v, list):
        return [_draw(x, rng) for x in v]
    return v


def draw_rngs(name: str, draw: int, size: str) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators (parameters, world) fixed by family, draw number and size."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    ss = np.random.SeedSequence([zlib.crc32(name.encode()), int(draw), SIZES.index(size)])
    a, b = ss.spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b)


def draw_params(family: dict[str, Any], size: str, rng: np.random.Generator) -> dict[str, Any]:
    """One instance of the family's parameter tree at ``size`` (sizes, descriptions left out)."""
    tree = {k: v for k, v in family.items() if k not in ("sizes", "name", "description", "covers")}
    tree = _merge(tree, family.get("sizes", {}).get(size, {}))
    drawn = _draw(tree, rng)
    return _resolve(drawn, drawn)


def _resolve(v: Any, top: dict[str, Any]) -> Any:
    if isinstance(v, str) and v.startswith("@"):
        if v[1:] not in top:
            raise KeyError(f"family parameter {v!r} refers to no top-level parameter")
        return top[v[1:]]
    if isinstance(v, dict):
        return {k: _resolve(x, top) for k, x in v.items()}
    if isinstance(v, list):
        return [_resolve(x, top) for x in v]
    return v

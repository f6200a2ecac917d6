"""Scenario library: families of worlds written as data, each drawn at random from a seed number, with the
truth of what the exported flows show, to test the hunt on behaviour its authors did not tune it to.

    >>> from flowpivot.simulate.library import generate, family_names
    >>> truth = generate("chained-operators", 0, "out/")    # doctest: +SKIP

writes ``out/exports/<vantage>/...`` (NetFlow v9 or IPFIX pcaps, Zeek conn logs), ``out/seeds.txt``
(and ``seeds-2.txt`` when the family has a second seed file), ``out/asn.tsv`` and ``out/truth.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .actor import exits, operations, place_seeds
from .export import export
from .family import draw_params, draw_rngs, family_names, load_family
from .noise import monitors, probes, research, sweeps, victims
from .score import score
from .services import background, make_services
from .truth import expected
from .world import KINDS, World, iso

__all__ = ["generate", "family_names", "load_family", "score", "input_files"]


def generate(family: str, draw: int, out_dir: str | Path, size: str = "small") -> dict[str, Any]:
    """Draw ``draw`` of ``family`` at ``size`` ("small" or "realistic") into ``out_dir``; returns the truth."""
    fam = load_family(family)
    prng, wrng = draw_rngs(family, draw, size)
    p = draw_params(fam, size, prng)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    w = World(wrng, int(p["days"]))
    w.truth["seed_provider"] = p["seeds"]["provider"]
    make_services(w, p.get("services", {}), [p["seeds"]["provider"]])
    op_seeds = place_seeds(w, p)
    operations(w, p, op_seeds)
    exits(w, p, op_seeds)
    research(w, p, sweeps(w, p))
    monitors(w, p)
    victims(w, p)
    probes(w, p)
    background(w, p.get("background", {}), p["export"])
    s, kind, ref, oneway = w.sessions()
    E, files, vantages = export(w, out, p["export"], s, oneway)
    sets: dict[str, list[str]] = {}
    for ix, names in zip(w.seeds.ix.tolist(), w.seeds.sets, strict=True):
        for name in names:
            sets.setdefault(name, []).append(w.text(ix))
    seed_files = []
    for name, ips in sorted(sets.items()):
        path = out / f"{name}.txt"
        path.write_text(
            f"# {family} draw {draw}: seed set {name}, flowpivot simulate library\n" + "".join(f"{ip}\n" for ip in ips)
        )
        seed_files.append(path.name)
    asn_rows = w.book.write_ip2asn(out / "asn.tsv")
    t = expected(w, s, kind, ref, E)
    truth = {
        "family": family,
        "draw": draw,
        "size": size,
        "params": p,
        "expect": t["expect"],
        "limits": t["limits"],
        "hosts": t["hosts"],
        "seeds": [
            {
                "ip": w.text(ix),
                "sets": sets_,
                "first_active": iso(max(int(f), w.t0)) if f > w.t0 else None,
                "dark_at": iso(int(d)) if d < w.t_end else None,
            }
            for ix, sets_, f, d in zip(
                w.seeds.ix.tolist(), w.seeds.sets, w.seeds.first.tolist(), w.seeds.dark.tolist(), strict=True
            )
        ],  # fmt: skip
        "seed_files": seed_files,
        "operations": [
            {
                "members": w.text(op["members"]),
                "seeds": w.text(op["seeds"]),
                "management": op["management"],
                "providers": op["providers"],
                "ports": op["ports"],
                "one_way": w.text(op["members"][op["one_way"]]) if op["one_way"].any() else [],
            }
            for op in w.truth["operations"]
        ],  # fmt: skip
        "window": {"start": iso(w.t0), "end": iso(w.t_end), "days": w.days},
        "files": [str(f.relative_to(out)) for f in files],
        "vantages": vantages,
        "sessions": len(s["a"]),
        "by_kind": {
            k: {"sessions": int(n_s), "records": int(n_r)}
            for k, n_s, n_r in zip(
                KINDS,
                np.bincount(kind.astype(np.int64), minlength=len(KINDS)).tolist(),
                np.bincount(kind[E["session"]].astype(np.int64), minlength=len(KINDS)).tolist(),
                strict=True,
            )
        },
        "records": int(sum(v["records"] for v in vantages)),
        "asn_rows": asn_rows,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1, default=_plain) + "\n")
    return json.loads(json.dumps(truth, default=_plain))


def _plain(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON")


def input_files(out_dir: str | Path, truth: dict[str, Any]) -> tuple[list[Path], list[Path], Path]:
    """(export files to ingest, seed files, asn.tsv) of a generated draw."""
    out = Path(out_dir)
    return [out / f for f in truth["files"]], [out / f for f in truth["seed_files"]], out / "asn.tsv"

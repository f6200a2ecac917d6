"""Benchmark: the hunt's accuracy on random draws of every scenario-library family.

Run: ``.venv/bin/python -m bench.accuracy [--draws 20] [--size realistic] [--families a b ...] [--out bench/out/accuracy.json]``

Each draw is generated (``flowpivot.simulate.library.generate``), ingested into a fresh store, hunted
with the draw's seed files and ASN table, and scored against its ``truth.json``
(``flowpivot.simulate.library.score``). The table gives, per family and category, precision and
recall summed over the draws (tp / (tp + fp), tp / (tp + fn)), and the share of draws the hunt got
exactly right; then every draw that missed, with its first misses. Progress goes to stderr, the
Markdown to stdout, every draw's score and timings to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flowpivot.ingest import ingest_paths
from flowpivot.simulate.library import family_names, generate, input_files, score
from flowpivot.simulate.library.score import CATEGORIES
from flowpivot.store import Store

err = Console(stderr=True)


def run_draw(family: str, draw: int, size: str, work: Path, exit_list: bool = True) -> dict[str, Any]:
    """Generate, ingest, hunt and score one draw; the score with timings (or the error).

    ``exit_list``: the draw's Tor and VPN exits are given as an allowlist, as an analyst keeps the
    public exit lists (flows cannot tell such an exit from an operator's address: docs/hunt.md).
    """
    from flowpivot.hunt import hunt

    d = work / f"{family}-{draw}"
    shutil.rmtree(d, ignore_errors=True)
    out: dict[str, Any] = {"family": family, "draw": draw, "size": size}
    try:
        t0 = time.perf_counter()
        truth = generate(family, draw, d / "sim", size)
        t1 = time.perf_counter()
        files, seeds, asn = input_files(d / "sim", truth)
        store = Store(d / "store")
        ingest_paths(files, store)
        t2 = time.perf_counter()
        allow = None
        exits = sorted(ip for ip, role in truth.get("hosts", {}).items() if "exit" in role)
        if exit_list and exits:
            allow = d / "exits.txt"
            allow.write_text("".join(f"{ip}  public exit list\n" for ip in exits))
        result = hunt(store, seeds, asn_dbs=[asn], allowlist=allow)
        t3 = time.perf_counter()
        out.update(score(result, truth))
        out["records"] = truth["records"]
        out["limits"] = len(truth["limits"])
        out["seconds"] = {"generate": round(t1 - t0, 2), "ingest": round(t2 - t1, 2), "hunt": round(t3 - t2, 2)}
    except Exception as e:  # noqa: BLE001 - one broken draw is a result, not the end of the run
        out.update({"exact": False, "error": f"{type(e).__name__}: {e}", "categories": {}, "misses": [str(e)]})
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "-"


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: per family, precision/recall per category and the exact share; then the draws that missed."""
    families = sorted({r["family"] for r in runs})
    head = "| family | draws | exact | " + " | ".join(f"{c} P/R" for c in CATEGORIES) + " |"
    lines = [head, "|" + " --- |" * (3 + len(CATEGORIES))]
    for fam in families:
        mine = [r for r in runs if r["family"] == fam]
        cells = []
        for c in CATEGORIES:
            tp = sum(r["categories"].get(c, {}).get("tp", 0) for r in mine)
            fp = sum(r["categories"].get(c, {}).get("fp", 0) for r in mine)
            fn = sum(r["categories"].get(c, {}).get("fn", 0) for r in mine)
            cells.append(f"{_ratio(tp, tp + fp)}/{_ratio(tp, tp + fn)}")
        exact = sum(1 for r in mine if r["exact"])
        lines.append(f"| {fam} | {len(mine)} | {exact}/{len(mine)} | " + " | ".join(cells) + " |")
    missed = [r for r in runs if not r["exact"]]
    if missed:
        lines += ["", "Draws that missed:", ""]
        for r in missed:
            why = r.get("error") or "; ".join(m[:160] for m in r["misses"][:3])
            more = f" (+{len(r['misses']) - 3} more)" if len(r["misses"]) > 3 else ""
            lines.append(f"- {r['family']} draw {r['draw']}: {why}{more}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=20, help="draws per family (default 20)")
    ap.add_argument("--first", type=int, default=1, help="first draw number (draw 0 is the test suite's)")
    ap.add_argument("--size", choices=["small", "realistic"], default="realistic")
    ap.add_argument("--families", nargs="+", choices=family_names(), default=list(family_names()))
    ap.add_argument("--out", type=Path, default=Path("bench/out/accuracy.json"))
    ap.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    ap.add_argument("--no-exit-list", action="store_true", help="do not give the draws' Tor/VPN exits as an allowlist")
    a = ap.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    jobs = [(f, d) for f in a.families for d in range(a.first, a.first + a.draws)]
    t0 = time.perf_counter()
    try:
        with Progress(
            TextColumn("[bold]accuracy[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=False,
        ) as bar:  # fmt: skip
            task = bar.add_task("", total=len(jobs))
            for fam, d in jobs:
                bar.update(task, description=f"{fam} draw {d}")
                runs.append(run_draw(fam, d, a.size, work, exit_list=not a.no_exit_list))
                bar.advance(task)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    md = table(runs)
    print(f"Scenario library accuracy: {a.draws} draws per family at size {a.size}, first draw {a.first}\n")
    print(md)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "size": a.size,
                "draws": a.draws,
                "first": a.first,
                "machine": f"{platform.node()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
                "seconds": round(time.perf_counter() - t0, 1),
                "table": md,
                "runs": runs,
            },
            indent=1,
        )
        + "\n"
    )
    err.print(f"wrote {a.out}", highlight=False)


if __name__ == "__main__":
    main()

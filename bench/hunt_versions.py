"""Benchmark: the same hunt with several versions of flowpivot, alternating run by run.

Run: ``.venv/bin/python -m bench.hunt_versions --store DIR/store --seeds DIR/seeds.txt
--version before=/path/to/old/checkout --version after=. [--threads 1] [--repeats 3] [--no-index]``

Each version is a directory holding a ``flowpivot`` package (a checkout, or ``git archive REV
flowpivot | tar -x -C DIR``). Every run is a child process with ``PYTHONPATH`` set to it, so the
versions never share an import; they run in turn (a, b, c, a, b, c, ...) so that a busy machine's
load falls on all of them alike. Per run: wall seconds, CPU seconds of the child
(``time.process_time()``: all its threads), peak RSS, what it found, the load average. On a
shared machine compare CPU seconds with ``--threads 1`` (docs/performance.md, "Hunt judgement").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_CHILD = r"""
import json, os, sys, time
from flowpivot.hunt import hunt
kw = {"threads": int(os.environ["HV_THREADS"])} if os.environ.get("HV_THREADS") else {}
t, c = time.perf_counter(), time.process_time()
r = hunt(sys.argv[1], [sys.argv[2]], use_index=os.environ.get("HV_INDEX") == "1", **kw)
secs, cpu = time.perf_counter() - t, time.process_time() - c
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"secs": secs, "cpu": cpu, "rss_kb": hwm, "clusters": len(r["clusters"]),
    "excluded": len(r["excluded"]), "bounded": sum(1 for e in r["excluded"] if e.get("p_bound")),
    "timings": r["provenance"]["timings_s"]}))
"""


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--seeds", type=Path, required=True)
    ap.add_argument("--version", action="append", required=True, help="NAME=DIR (a directory holding flowpivot/)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, help="DuckDB threads (default: the hunt's)")
    ap.add_argument("--no-index", action="store_true", help="scan the store even when it has an index")
    a = ap.parse_args(argv)
    versions = dict(v.split("=", 1) for v in a.version)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in versions}
    for _ in range(max(1, a.repeats)):
        for name, tree in versions.items():
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve()), "HV_INDEX": "0" if a.no_index else "1",
                   "HV_THREADS": str(a.threads or "")}  # fmt: skip
            load = os.getloadavg()[0]
            # run in the version's directory: ``python -c`` puts the working directory first on the
            # path, which would otherwise import the flowpivot of wherever this was started
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(a.store.resolve()), str(a.seeds.resolve())],
                capture_output=True,
                text=True,
                env=env,
                cwd=Path(tree).resolve(),
            )
            if out.returncode:
                print(f"{name}: failed\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1]) | {"load": round(load, 2)}
            runs[name].append(r)
            print(time.strftime("%H:%M:%S"), name, json.dumps(r), flush=True)
    print(
        "\n| version | CPU s (median, all) | wall s (median, all) | peak RSS MiB | clusters | excluded (bounded) | load |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, rs in runs.items():
        if not rs:
            continue
        cpu, wall = [r["cpu"] for r in rs], [r["secs"] for r in rs]
        loads = [r["load"] for r in rs]
        print(
            f"| {name} | {_median(cpu):.2f} ({', '.join(f'{x:.2f}' for x in sorted(cpu))}) "
            f"| {_median(wall):.2f} ({', '.join(f'{x:.2f}' for x in sorted(wall))}) "
            f"| {max(r['rss_kb'] for r in rs) / 1024:.0f} | {rs[0]['clusters']} | {rs[0]['excluded']} ({rs[0]['bounded']}) "
            f"| {min(loads)}-{max(loads)} |"
        )


if __name__ == "__main__":
    main()

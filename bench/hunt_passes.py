"""Benchmark: where a hunt spends its time, pass by pass, with and without the address index.

Run: ``.venv/bin/python -m bench.hunt_passes --store DIR/store --seeds DIR/seeds.txt [--no-index]``
on the store of ``bench.hunt --keep DIR`` (built with ``--index`` to time the index).

It runs one hunt and times each call of the engine's passes (the session pass ``create_pairs``,
the reach pass ``create_reach``, the keeping scan ``keep_touching``, the exact known-peer count
``_condemn_counted``, the managed-draws bound from the index's host-peer table ``managed_bounds``
and the reach of the hosts it left undecided ``count_more``), named by their anchor table (``seeds``, ``cand``, ``memb``, ``xa1``, ...).
The hunt's own step timings are printed too.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

import flowpivot.hunt.engine as engine
import flowpivot.hunt.expansion as expansion
import flowpivot.hunt.noise_stage as noise_stage
import flowpivot.hunt.reach as reach

# (module, function): the passes are called through these module attributes
PASSES = ((engine, "create_pairs"), (expansion, "create_pairs"), (expansion, "create_reach"), (reach, "create_reach"),
          (reach, "keep_touching"), (reach, "_condemn_counted"), (noise_stage, "managed_bounds"),
          (noise_stage, "count_more"))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--seeds", type=Path, required=True)
    ap.add_argument("--no-index", action="store_true", help="scan the store even when it has an index")
    a = ap.parse_args(argv)
    timed: list[tuple[str, str, float]] = []

    def wrap(mod: Any, name: str) -> None:
        f = getattr(mod, name)

        @functools.wraps(f)
        def g(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return f(*args, **kw)
            finally:
                timed.append((name, str(args[1]) if len(args) > 1 else "", time.perf_counter() - t))

        setattr(mod, name, g)

    for mod, name in PASSES:
        wrap(mod, name)
    t = time.perf_counter()
    r = engine.hunt(a.store, [a.seeds], use_index=not a.no_index)
    total = time.perf_counter() - t
    print(f"hunt: {total:.2f} s, index {r['parameters']['index']}; steps (s): {r['provenance']['timings_s']}\n")
    print("| pass | anchors | seconds |")
    print("| --- | --- | ---: |")
    for name, anchors, secs in timed:
        print(f"| {name} | {anchors} | {secs:.2f} |")


if __name__ == "__main__":
    main()

"""``make bench``: run every benchmark in turn and print their Markdown tables.

Each benchmark compares flowpivot with a reference tool or query in the same run and prints
ratios. Copy the figures into docs/performance.md with the machine they ran on.
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys

BENCHES = (
    "address",
    "decode",
    "ingest",
    "collect",
    "storage",
    "enrich",
    "simulate",
    "hunt",
    "hunt_floor",
    "index",
    "collect_overload",
    "accuracy",
)


def main() -> None:
    only = sys.argv[1:] or list(BENCHES)
    print(f"# flowpivot benchmarks on {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    for name in only:
        try:
            importlib.import_module(f"bench.{name}")
        except ImportError as e:
            print(f"\n## {name}: not available ({e})")
            continue
        print(f"\n## {name}\n", flush=True)
        rc = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        if rc:
            print(f"(bench.{name} exited with {rc})")


if __name__ == "__main__":
    main()

"""Benchmark: the address index's layout choices, against a scan of the store, same run.

Run: ``.venv/bin/python -m bench.index --store DIR/store --seeds DIR/seeds.txt`` on the store of
``bench.hunt --keep DIR`` (or without ``--store`` to build a border mix of ``--flows``).

It builds the index (``flowpivot.store.index.build_index``: time, bytes per flow), then times the
1,000-seed lookup on the source side, every pivot column:

* the store scanned by DuckDB (arrival order): the reference;
* the index's source copy as built (``IndexPlan.lookup``: the batches the keys file names);
* the same rows rewritten with other batch sizes and compressions (``--variants``);
* the same rows as a Parquet file of 8,192-row groups read by DuckDB with the seeds as a literal
  ``IN`` list: the layout the index had before (flowpivot-index/1).

Every lookup must find what the scan found (count and a hash of every column). Ratios are
against the scan; each figure is the fastest of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.hunt_floor import _best
from flowpivot.hunt.pivot import _PIVOT_COLUMNS
from flowpivot.store import Store
from flowpivot.store.index import IndexPlan, _batch_bounds, _order_key, build_index, index_plan

_HASH = f"count(*), sum(hash({_PIVOT_COLUMNS}))"


def _rewrite(src: Path, dst: Path, rows: int, compression: str | None) -> None:
    """The source copy again, in batches of ``rows`` flows, with its keys file."""
    with pa.memory_map(str(src)) as f:
        r = pa.ipc.open_file(f)
        t = r.read_all().combine_chunks()
    with (
        pa.OSFile(str(dst), "wb") as sink,
        pa.ipc.new_file(sink, t.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as w,
    ):
        w.write_table(t, max_chunksize=rows)
    np.save(dst.with_suffix(".keys.npy"), _batch_bounds(_order_key(t, "src"), rows))


def _lookup(plan: IndexPlan, seeds: np.ndarray, cols: list[str]) -> Any:
    return plan.lookup("src", seeds, [], cols, 0, 2**62)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="a store written by `bench.hunt --keep DIR` (DIR/store)")
    ap.add_argument("--seeds", type=Path, help="IPv4 seeds, one per line (DIR/seeds.txt of bench.hunt --keep DIR)")
    ap.add_argument("--flows", type=int, default=10_000_020, help="flows to build without --store")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="time the store's current index instead of building one")
    ap.add_argument("--variants", default="1024:lz4,1024:none,4096:zstd,512:zstd", help="batch rows:compression, ...")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        if a.store:
            store = Store(a.store)
            seeds_file = a.seeds
        else:
            from bench.hunt import build

            build(a.flows, 1000, work)
            store, seeds_file = Store(work / "store"), work / "seeds.txt"
        seeds = np.array(sorted(int(ipaddress.ip_address(s.strip())) for s in open(seeds_file) if s.strip()), np.uint32)
        lst = ",".join(map(str, seeds))
        con = duckdb.connect()
        con.execute("SET parquet_metadata_cache = true")
        n = con.sql(f"SELECT count(*) FROM read_parquet('{store.glob}')").fetchall()[0][0]
        print(f"{n:,} flows, {len(seeds):,} seeds, {os.cpu_count()} cores\n")

        if not a.reuse:
            t = time.perf_counter()
            m = build_index(store)
            print(
                f"build_index: {time.perf_counter() - t:.1f} s, {m['bytes_per_flow']} bytes/flow for the two copies "
                f"(store {sum(p.stat().st_size for p in store.files()) / n:.2f})\n"
            )
        plan = index_plan(store, 0, 2**62)
        assert plan is not None
        cols = [c.strip().strip('"') for c in _PIVOT_COLUMNS.split(",")]
        scan, want = _best(
            con, f"SELECT {_HASH} FROM read_parquet('{store.glob}') WHERE src_addr_v4 IN ({lst})", a.repeats
        )
        print("| layout, source side, 1,000 seeds | bytes/flow (one copy) | batches read | seconds | vs scan |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print(f"| store, arrival order (DuckDB scan) | | | {scan:.3f} | 1.00x |")

        def row(label: str, p: IndexPlan) -> None:
            """One copy's lookup: it must find what the scan found."""
            secs = []
            for _ in range(max(1, a.repeats)):
                t = time.perf_counter()
                got = _lookup(p, seeds, cols)
                secs.append(time.perf_counter() - t)
            con.register("got", got)
            assert con.sql(f"SELECT {_HASH} FROM got").fetchall() == want
            con.unregister("got")
            batches = p.span_rows(seeds, []) // p.batch_rows // 2  # span_rows counts both sides
            print(
                f"| {label} | {p.src.stat().st_size / n:.2f} | ~{batches:,} | {min(secs):.3f} "
                f"| {scan / min(secs):.2f}x faster |"
            )

        row("the index's source copy as built", plan)
        for v in a.variants.split(","):
            rows_s, comp = v.split(":")
            path = work / f"src-{rows_s}-{comp}.arrow"
            _rewrite(plan.src, path, int(rows_s), None if comp == "none" else comp)
            # both "sides" of this plan are the rewritten source copy: only the source side is timed
            p = dataclasses.replace(plan, src=path, dst=path, batch_rows=int(rows_s), lock=None, _open={})
            row(f"{int(rows_s):,}-flow batches, {comp}", p)
            path.unlink()
            path.with_suffix(".keys.npy").unlink()
        # the layout before: Parquet, 8,192-row groups, read by DuckDB with a literal IN list
        path = work / "src-8192.parquet"
        with pa.memory_map(str(plan.src)) as f:
            pq.write_table(
                pa.ipc.open_file(f).read_all(), path, row_group_size=8192, compression="zstd", use_dictionary=False
            )
        null = ", ".join(f'NULL AS "{c}"' for c in plan.null_columns)
        q = f"SELECT {_HASH} FROM (SELECT *{', ' + null if null else ''} FROM read_parquet('{path}')) WHERE src_addr_v4 IN ({lst})"
        secs, got = _best(con, q, a.repeats)
        assert got == want, (got, want)
        print(
            f"| Parquet, 8,192-row groups, DuckDB (flowpivot-index/1) | {path.stat().st_size / n:.2f} | | {secs:.3f} "
            f"| {scan / secs:.2f}x faster |"
        )
        plan.release()
        if a.store and not a.reuse:
            shutil.rmtree(store.root / "index", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

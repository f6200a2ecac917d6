"""Benchmark: the address index's layout choices, against a scan of the store, same run.

Run: ``.venv/bin/python -m bench.index --store DIR/store --seeds DIR/seeds.txt`` on the store of
``bench.hunt --keep DIR`` (or without ``--store`` to build a border mix of ``--flows``).

It builds the index (``flowpivot.store.index.build_index``: time, bytes per flow), then times the
1,000-seed lookup on the source side, every pivot column, with DuckDB:

* the store scanned (arrival order): the reference;
* the index's source copy as built;
* the same rows rewritten with other row-group sizes and with dictionary encoding on or off
  (bytes per flow, row groups read, seconds);
* on the copy as built: only the address columns, and a single seed (the per-query cost of
  reading every row group's statistics).

Ratios are against the scan. Each query is the fastest of ``--repeats`` runs, with DuckDB's
Parquet metadata cache on (as the hunt sets it).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from bench.hunt_floor import _best
from flowpivot.hunt.pivot import _PIVOT_COLUMNS
from flowpivot.store import Store
from flowpivot.store.index import build_index, index_plan


def _row_groups_read(con: duckdb.DuckDBPyConnection, q: str) -> str:
    plan = con.sql("EXPLAIN ANALYZE " + q).fetchall()[0][1]
    m = re.search(r"Row Groups Scanned:\s*([\d,]+)\s*/\s*([\d,]+)", plan)
    return f"{m.group(1)} / {m.group(2)}" if m else "?"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="a store written by `bench.hunt --keep DIR` (DIR/store)")
    ap.add_argument("--seeds", type=Path, help="IPv4 seeds, one per line (DIR/seeds.txt of bench.hunt --keep DIR)")
    ap.add_argument("--flows", type=int, default=10_000_020, help="flows to build without --store")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="time the store's current index instead of building one")
    ap.add_argument("--variants", default="4096:plain,16384:plain,8192:dict", help="row-group size:encoding, ...")
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
        seeds = sorted(int(ipaddress.ip_address(s.strip())) for s in open(seeds_file) if s.strip())
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
        src = plan.src
        cols = _PIVOT_COLUMNS
        scan, want = _best(
            con,
            f"SELECT count(*), sum(hash({cols})) FROM read_parquet('{store.glob}') WHERE src_addr_v4 IN ({lst})",
            a.repeats,
        )
        print("| layout, source side, 1,000 seeds | bytes/flow (one copy) | row groups read | seconds | vs scan |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print(f"| store, arrival order (scan) | | | {scan:.3f} | 1.00x |")

        def row(label: str, path: Path) -> None:
            """One copy's lookup: it must find what the scan found."""
            q = f"SELECT count(*), sum(hash({cols})) FROM read_parquet('{path}') WHERE src_addr_v4 IN ({lst})"
            secs, got = _best(con, q, a.repeats)
            assert got == want, (got, want)
            print(
                f"| {label} | {path.stat().st_size / n:.2f} | {_row_groups_read(con, q)} | {secs:.3f} "
                f"| {scan / secs:.2f}x faster |"
            )

        row("the index's source copy as built", src)
        for v in a.variants.split(","):
            rg_s, enc = v.split(":")
            rg = int(rg_s)
            path = work / f"src-{rg}-{enc}.parquet"
            f = pq.ParquetFile(src)
            with pq.ParquetWriter(
                path, f.schema_arrow, compression="zstd", use_dictionary=enc == "dict", write_statistics=True
            ) as w:
                for b in f.iter_batches(batch_size=64 * rg):
                    w.write_table(pa.Table.from_batches([b]), row_group_size=rg)
            row(f"ordered by source, {rg:,}-row groups, {enc}", path)
            path.unlink()
        q = f"SELECT count(*), sum(hash(src_addr_v4, dst_addr_v4)) FROM read_parquet('{src}') WHERE src_addr_v4 IN ({lst})"
        secs, _ = _best(con, q, a.repeats)
        print(f"| as built, address columns only | | | {secs:.3f} | {scan / secs:.2f}x faster |")
        q = f"SELECT count(*) FROM read_parquet('{src}') WHERE src_addr_v4 = {seeds[0]}"
        secs, _ = _best(con, q, a.repeats)
        print(f"| as built, one seed (reading the row-group statistics) | | | {secs:.3f} | |")
        plan.release()
        if a.store and not a.reuse:
            shutil.rmtree(store.root / "index", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

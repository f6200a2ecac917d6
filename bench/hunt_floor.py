"""Benchmark: what a seed pivot over the Parquet store cannot go below, with DuckDB, same run.

Run: ``.venv/bin/python -m bench.hunt_floor [--flows 10000020] [--store DIR]``

The pivot needs about ten real columns of every flow with a seed on either side. This measures,
on bench.hunt's border-router mix:

* ``scan``: reading only the two address columns of every flow (the least any pivot reads);
* ``decode``: reading the pivot's real columns of every flow, no filter;
* for k = 1, 10, 100 and 1,000 seeds, the source side filtered with ``= ANY(list)`` (the filter
  form DuckDB pushes into its Parquet reader), counting the matches only and then reading the
  other columns of the matches. The gap between the two is what decoding the wide columns of
  the vectors that hold a match costs. DuckDB decodes a column 2,048 rows at a time; once the
  seeds are many enough that most vectors hold a match, that gap reaches the full decode,
  whatever the filter;
* the share of 2,048-row vectors of the store that hold a match for each k;
* a layout that would let the reader skip: the same flows in one file ordered by source address
  and one ordered by destination (``--no-sorted`` to leave it out): bytes per flow of each copy
  and the 1,000-seed query on the side each copy is ordered by.

Ratios are against ``scan``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from flowpivot.store import Store

WIDE = 'src_addr_v4, dst_addr_v4, src_port, dst_port, protocol, tcp_flags, packets, bytes, sampling_rate, start, "end"'


def _best(con: Any, q: str, repeats: int) -> tuple[float, Any]:
    secs, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = con.sql(q).fetchall()
        secs.append(time.perf_counter() - t)
    return min(secs), out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=10_000_020)
    ap.add_argument("--store", type=Path, help="a store written by `bench.hunt --keep DIR` (DIR/store); else built")
    ap.add_argument("--repeats", type=int, default=3, help="runs per query; the fastest is reported")
    ap.add_argument("--no-sorted", action="store_true", help="skip the address-ordered copies")
    ap.add_argument("--seeds", type=Path, help="IPv4 seeds, one per line (e.g. DIR/seeds.txt of bench.hunt --keep DIR)")
    a = ap.parse_args(argv)
    work = None
    if a.store:
        store = Store(a.store)
    else:
        from bench.hunt import build

        work = Path(tempfile.mkdtemp(prefix="bench-floor-"))
        build(a.flows - a.flows % 30, 1000, work)
        store = Store(work / "store")
    try:
        con = store.connect()
        n = con.sql("SELECT count(*) FROM flows").fetchall()[0][0]
        addrs = np.array(
            [
                r[0]
                for r in con.sql(
                    "SELECT DISTINCT dst_addr_v4 FROM flows WHERE dst_addr_v4 IS NOT NULL ORDER BY 1"
                ).fetchall()
            ],
            np.uint64,
        )
        rng = np.random.default_rng(7)
        seeds = rng.choice(addrs, size=min(1000, len(addrs)), replace=False)
        if a.seeds:
            quads = [line.split()[0] for line in a.seeds.read_text().splitlines() if line.strip() and line[0] != "#"]
            seeds = np.array([int.from_bytes(bytes(int(x) for x in q.split(".")), "big") for q in quads], np.uint64)
        scan, _ = _best(con, "SELECT count(*) FROM flows WHERE src_addr_v4::UBIGINT + dst_addr_v4 = 7", a.repeats)
        decode, _ = _best(con, f"SELECT sum(hash({WIDE})) FROM flows", a.repeats)
        print(f"{n:,} flows in {len(store.files())} files; each query: the fastest of {a.repeats} runs\n")
        print("| query | seconds | vs address scan | matches | vectors with a match |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print(f"| address columns only (scan) | {scan:.3f} | 1.00x | | |")
        print(f"| pivot columns of every flow (decode) | {decode:.3f} | {decode / scan:.2f}x | | |")
        for k in (1, 10, 100, 1000):
            lst = "[" + ",".join(str(int(s)) for s in seeds[:k]) + "]::UINTEGER[]"
            where = f"src_addr_v4 = ANY({lst})"
            c, out = _best(con, f"SELECT count(*) FROM flows WHERE {where}", a.repeats)
            w, _ = _best(con, f"SELECT count(*), sum(hash({WIDE})) FROM flows WHERE {where}", a.repeats)
            vec = con.sql(
                f"SELECT count(DISTINCT (filename, file_row_number // 2048)) FROM read_parquet("
                f"'{store.root}/flows/*/*.parquet', filename=true, file_row_number=true) WHERE {where}"
            ).fetchall()[0][0]
            total_vec = con.sql(
                f"SELECT sum((num_rows + 2047) // 2048) FROM (SELECT DISTINCT file_name, num_rows FROM "
                f"parquet_file_metadata('{store.root}/flows/*/*.parquet'))"
            ).fetchall()[0][0]
            print(f"| {min(k, len(seeds)):,} seeds, source side, count | {c:.3f} | {c / scan:.2f}x | {out[0][0]:,} | |")
            print(
                f"| {min(k, len(seeds)):,} seeds, source side, + pivot columns of the matches | {w:.3f} | {w / scan:.2f}x | {out[0][0]:,} "
                f"| {vec / total_vec:.1%} |"
            )
        if not a.no_sorted:
            sorted_copies(con, store, seeds, n, a.repeats)
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)


def sorted_copies(con: Any, store: Store, seeds: np.ndarray, n: int, repeats: int) -> None:
    """Write the flows ordered by source and by destination address (one file each, the store's
    encoding; DuckDB sorts out of core and streams the rows); their size and the one-sided
    1,000-seed query on each."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from flowpivot.schema import STORE_SCHEMA
    from flowpivot.store import PARQUET_OPTIONS, ROW_GROUP_ROWS

    lst = "[" + ",".join(str(int(s)) for s in seeds) + "]::UINTEGER[]"
    glob = f"{store.root}/flows/*/*.parquet"
    size = sum(f.stat().st_size for f in store.files())
    base, _ = _best(con, f"SELECT count(*), sum(hash({WIDE})) FROM flows WHERE src_addr_v4 = ANY({lst})", repeats)
    print(
        f"\nstore (arrival order): {size / n:.2f} bytes/flow; source side, 1,000 seeds + pivot columns: {base:.3f} s\n"
    )
    print(
        "| copy (one file, the store's encoding) | bytes/flow | 1,000 seeds on its side + pivot columns | vs arrival order |"
    )
    print("| --- | ---: | ---: | ---: |")
    tmp = Path(tempfile.mkdtemp(prefix="bench-floor-sorted-"))
    try:
        # DuckDB sorts out of core (spilling past memory_limit) and streams the sorted rows, so
        # this also runs at 100 M flows
        con.execute("SET memory_limit = '6GB'")
        con.execute(f"SET temp_directory = '{tmp}/spill'")
        names = ", ".join(f'"{f.name}"' for f in STORE_SCHEMA)
        both = 0.0
        for a, b in (("src", "dst"), ("dst", "src")):
            path = tmp / f"{a}.parquet"
            reader = con.sql(
                f"SELECT {names} FROM read_parquet('{glob}', hive_partitioning=false) "
                f"ORDER BY {a}_addr_v4, {b}_addr_v4, start"
            ).to_arrow_reader(1 << 16)
            with pq.ParquetWriter(path, STORE_SCHEMA, **PARQUET_OPTIONS) as w:
                held: list[pa.RecordBatch] = []
                rows = 0
                for batch in reader:
                    held.append(batch)
                    rows += batch.num_rows
                    if rows >= ROW_GROUP_ROWS:
                        w.write_table(pa.Table.from_batches(held).cast(STORE_SCHEMA), row_group_size=ROW_GROUP_ROWS)
                        held, rows = [], 0
                if held:
                    w.write_table(pa.Table.from_batches(held).cast(STORE_SCHEMA), row_group_size=ROW_GROUP_ROWS)
            secs, _ = _best(
                con,
                f"SELECT count(*), sum(hash({WIDE})) FROM read_parquet('{path}') WHERE {a}_addr_v4 = ANY({lst})",
                repeats,
            )
            both += secs
            print(
                f"| ordered by {'source' if a == 'src' else 'destination'} | {os.path.getsize(path) / n:.2f} "
                f"| {secs:.3f} s | {base / secs:.1f}x faster |"
            )
            path.unlink()
        print(f"\nboth sides on the ordered copies: {both:.3f} s ({len(seeds):,} seeds)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

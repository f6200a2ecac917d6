"""Address representation: split UINT32/BLOB columns vs 16-byte BLOBs vs plain UINT32, for a seed pivot.

    .venv/bin/python -m bench.address [--flows 20000000] [--seeds 1000]

Writes the same random flows three ways, then times in DuckDB the query every hunt starts with:
all flows with one of N seed addresses on either side. Reports seconds, ratios and bytes per flow.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _v4_to_v6_mapped(v4: np.ndarray) -> pa.Array:
    buf = np.zeros((len(v4), 16), dtype=np.uint8)
    buf[:, 10] = 0xFF
    buf[:, 11] = 0xFF
    buf[:, 12:] = v4.astype(">u4").view(np.uint8).reshape(-1, 4)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(v4), [None, pa.py_buffer(buf.tobytes())])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=20_000_000)
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(7)
    n = a.flows
    # Heavy-tailed address popularity: a pool of 2 M hosts, Zipf-ish choice.
    pool = rng.integers(0x0B000000, 0xDF000000, size=2_000_000, dtype=np.uint32)
    idx = np.minimum(rng.zipf(1.3, size=2 * n) - 1, len(pool) - 1)
    src, dst = pool[idx[:n]], pool[idx[n:]]
    start = np.sort(rng.integers(1_714_521_600_000, 1_717_113_600_000, size=n))
    ports = rng.integers(1, 65535, size=n, dtype=np.uint16)
    seeds = rng.choice(pool[:200_000], size=a.seeds, replace=False)

    tmp = tempfile.mkdtemp(prefix="fp-addr-")
    common = {"start": pa.array(start, pa.int64()), "dst_port": pa.array(ports)}
    layouts = {
        "uint32": {"src_v4": pa.array(src), "dst_v4": pa.array(dst)},
        "blob16": {"src_v6": _v4_to_v6_mapped(src), "dst_v6": _v4_to_v6_mapped(dst)},
        "split (flowpivot)": {
            "src_v4": pa.array(src),
            "src_v6": pa.nulls(n, pa.binary(16)),
            "dst_v4": pa.array(dst),
            "dst_v6": pa.nulls(n, pa.binary(16)),
        },
    }
    con = duckdb.connect()
    con.execute(f"SET threads = {a.threads}")
    con.execute("CREATE TABLE seeds4 AS SELECT unnest(?::UINTEGER[]) AS a", [seeds.tolist()])
    con.execute(
        "CREATE TABLE seeds16 AS SELECT from_hex('00000000000000000000ffff' || lpad(printf('%x', a), 8, '0')) AS a FROM seeds4"
    )
    results = {}
    for name, cols in layouts.items():
        path = os.path.join(tmp, name.split()[0] + ".parquet")
        pq.write_table(pa.table({**common, **cols}), path, compression="zstd", row_group_size=1 << 20)
        if "v4" in next(iter(cols)):
            sql = (
                f"SELECT count(*) FROM (SELECT f.start FROM '{path}' f JOIN seeds4 s ON f.src_v4 = s.a"
                f" UNION ALL SELECT f.start FROM '{path}' f JOIN seeds4 s ON f.dst_v4 = s.a)"
            )
        else:
            sql = (
                f"SELECT count(*) FROM (SELECT f.start FROM '{path}' f JOIN seeds16 s ON f.src_v6 = s.a"
                f" UNION ALL SELECT f.start FROM '{path}' f JOIN seeds16 s ON f.dst_v6 = s.a)"
            )
        best, count = 1e9, None
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            count = con.execute(sql).fetchone()[0]
            best = min(best, time.perf_counter() - t0)
        addr_bytes = sum(
            pq.ParquetFile(path).metadata.row_group(i).column(j).total_compressed_size
            for i in range(pq.ParquetFile(path).metadata.num_row_groups)
            for j in range(pq.ParquetFile(path).metadata.num_columns)
            if pq.ParquetFile(path).metadata.row_group(i).column(j).path_in_schema.split("_")[0] in ("src", "dst")
        )
        results[name] = (best, count, addr_bytes / n)
    base = results["uint32"][0]
    print(
        f"# {n:,} flows, {a.seeds} seeds, DuckDB {duckdb.__version__}, threads={a.threads}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    print("| layout | pivot s | vs uint32 | matches | address bytes/flow |")
    print("|---|---|---|---|---|")
    for name, (sec, count, bpf) in results.items():
        print(f"| {name} | {sec:.3f} | {sec / base:.2f}x | {count:,} | {bpf:.2f} |")


if __name__ == "__main__":
    main()

"""Benchmark: bytes per flow on disk, flowpivot's Parquet store against nfcapd 1.7.1's LZ4 files, same flows.

Run: ``.venv/bin/python -m bench.storage [--flows 2000010] [--no-experiments]``

The same realistic NetFlow v5 stream (bench.collect.realistic_flows: Zipf-popular servers, both
directions of each connection, scans, DNS; every flow distinct) is sent at a rate both collectors
keep up with to ``flowpivot collect`` and to ``nfcapd -y`` (LZ4). The Parquet files of the store
and nfcapd's files are then measured, and the flow counts checked to be equal.

Then the stored flows, put back in arrival (end) order, are rewritten with variants of the store's
writer settings (sort order, dictionary encoding, per-column encodings, zstd level, row group
size) to show what each changes in size and in sort + write time (best of two). The first
variant reproduces StoreWriter's settings.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.collect import RCVBUF, RmemMax, realistic_flows, run_flowpivot, run_nfcapd, v5_datagrams
from flowpivot.schema import STORE_SCHEMA

STORE_DICT = ["exporter", "conn_state", "history", "sampling_rate", "protocol"]
INT_COLUMNS = [f.name for f in STORE_SCHEMA if pa.types.is_integer(f.type)]


def _variants() -> list[tuple[str, list[tuple[str, str]], dict[str, Any], int]]:
    """(label, sort keys, ParquetWriter options, row group rows). The first is StoreWriter's."""
    base = dict(compression="zstd", compression_level=3, use_dictionary=STORE_DICT, write_statistics=True)
    by_start = [("start", "ascending")]
    dict_all = {**base, "use_dictionary": True}
    delta = {
        **base,
        "use_dictionary": STORE_DICT,
        "column_encoding": {"start": "DELTA_BINARY_PACKED", "end": "DELTA_BINARY_PACKED"},
    }
    dict_delta = {
        **base,
        "use_dictionary": [c for c in (f.name for f in STORE_SCHEMA) if c not in ("start", "end")],
        "column_encoding": {"start": "DELTA_BINARY_PACKED", "end": "DELTA_BINARY_PACKED"},
    }
    bss = {
        **base,
        "use_dictionary": [c for c in STORE_DICT],
        "column_encoding": {c: "BYTE_STREAM_SPLIT" for c in ("src_addr_v4", "dst_addr_v4", "packets", "bytes")},
    }
    return [
        ("store now: sort start, zstd 3, dict on 5 columns", by_start, base, 1 << 20),
        ("  + dictionary on every column", by_start, dict_all, 1 << 20),
        ("  + DELTA_BINARY_PACKED start/end", by_start, delta, 1 << 20),
        ("  + dictionary on all but start/end, DELTA start/end", by_start, dict_delta, 1 << 20),
        ("  + BYTE_STREAM_SPLIT addresses, packets, bytes", by_start, bss, 1 << 20),
        ("  zstd 1", by_start, {**base, "compression_level": 1}, 1 << 20),
        ("  zstd 6", by_start, {**base, "compression_level": 6}, 1 << 20),
        ("  zstd 9", by_start, {**base, "compression_level": 9}, 1 << 20),
        ("  dictionary all, zstd 6", by_start, {**dict_all, "compression_level": 6}, 1 << 20),
        ("  row groups of 256 Ki rows", by_start, base, 1 << 18),
        ("  no sort (rows in arrival order)", [], base, 1 << 20),
        ("  sort src_addr_v4, start", [("src_addr_v4", "ascending"), ("start", "ascending")], base, 1 << 20),
        ("  sort src_addr_v4, start; dictionary all", [("src_addr_v4", "ascending"), ("start", "ascending")], dict_all, 1 << 20),
        ("  sort dst_port, src_addr_v4, start; dictionary all",
         [("dst_port", "ascending"), ("src_addr_v4", "ascending"), ("start", "ascending")], dict_all, 1 << 20),
    ]  # fmt: skip


def experiments(table: pa.Table, workdir: Path, repeat: int = 2) -> list[dict[str, Any]]:
    """Write ``table`` (in arrival order) with each variant; the time is the best of ``repeat``."""
    table = table.combine_chunks()
    rows = []
    for label, keys, opts, rg in _variants():
        path = workdir / "variant.parquet"
        secs = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            t = table.take(pc.sort_indices(table, sort_keys=keys)) if keys else table
            with pq.ParquetWriter(path, STORE_SCHEMA, **opts) as w:
                for i in range(0, t.num_rows, rg):
                    w.write_table(t.slice(i, rg), row_group_size=rg)
            secs = min(secs, time.perf_counter() - t0)
        size = path.stat().st_size
        back = pq.read_table(path)
        assert back.num_rows == table.num_rows
        rows.append({"variant": label, "bytes_per_flow": size / table.num_rows, "write_s": secs})
    return rows


def column_sizes(path: Path) -> list[tuple[str, float]]:
    md = pq.read_metadata(path)
    sizes: dict[str, int] = {}
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        for c in range(rg.num_columns):
            col = rg.column(c)
            sizes[col.path_in_schema] = sizes.get(col.path_in_schema, 0) + col.total_compressed_size
    return sorted(((k, v / md.num_rows) for k, v in sizes.items()), key=lambda kv: -kv[1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=2_000_010, help="flows (a multiple of 30)")
    ap.add_argument("--rate", type=float, default=400_000, help="sending rate, flows/s (both collectors keep up)")
    ap.add_argument("--no-experiments", action="store_true")
    a = ap.parse_args(argv)
    n = a.flows - a.flows % 30
    dgrams = v5_datagrams(realistic_flows(n, seed=3))
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {n:,} realistic v5 flows"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    try:
        with RmemMax(2 * RCVBUF) as rm:
            print(rm.note)
            fp = run_flowpivot(dgrams, a.rate, work)
            nf = run_nfcapd(dgrams, a.rate, work, compress="-y")
        if fp["stored_flows"] != n or nf["stored_flows"] != n:
            print(
                f"WARNING: flows stored differ from sent: flowpivot {fp['stored_flows']:,}, nfcapd {nf['stored_flows']:,}, sent {n:,}"
            )
        fpb, nfb = fp["disk_bytes"] / fp["stored_flows"], nf["disk_bytes"] / nf["stored_flows"]
        print()
        print("| store | flows | bytes on disk | bytes/flow |")
        print("| --- | ---: | ---: | ---: |")
        print(
            f"| flowpivot Parquet store ({fp['files']} file(s)) | {fp['stored_flows']:,} | {fp['disk_bytes']:,} | {fpb:.1f} |"
        )
        print(
            f"| nfcapd 1.7.1 -y (LZ4) ({nf['files']} file(s)) | {nf['stored_flows']:,} | {nf['disk_bytes']:,} | {nfb:.1f} |"
        )
        print(f"\nratio flowpivot/nfcapd bytes per flow: {fpb / nfb:.2f}")
        files = sorted(Path(fp["store"]).glob("flows/day=*/*.parquet"))
        print(
            "\nlargest columns in the store (bytes/flow): "
            + ", ".join(f"{k} {v:.2f}" for k, v in column_sizes(files[0])[:8])
        )
        if not a.no_experiments:
            table = pq.read_table(files, schema=STORE_SCHEMA) if len(files) > 1 else pq.read_table(files[0])
            # back to arrival order (exporters send flows as they end), as the collector hands them over
            table = table.cast(STORE_SCHEMA)
            table = table.take(pc.sort_indices(table, sort_keys=[("end", "ascending")]))
            print("\n| writer variant (same flows) | bytes/flow | sort + write (s) |")
            print("| --- | ---: | ---: |")
            for r in experiments(table, work):
                print(f"| {r['variant']} | {r['bytes_per_flow']:.2f} | {r['write_s']:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

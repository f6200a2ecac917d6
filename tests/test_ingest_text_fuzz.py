"""Damaged text inputs never crash a reader: seeded mutations of real files.

Each mutation (bytes flipped, lines cut, fields swapped for huge numbers or junk, gzip cut) must
end in either batches of the store schema whose times every date can hold, or an InputError for
a file that cannot be read at all; never another exception.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import shared

from flowpivot.errors import InputError
from flowpivot.ingest.argus import read_binetflow
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.columns import MAX_MS, MIN_MS
from flowpivot.ingest.tabular import read_csv
from flowpivot.ingest.zeek import read_zeek
from flowpivot.schema import STORE_SCHEMA

CONN = "stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"
BINETFLOW = "realworld/stratosphere/test2-malicious.binetflow"
HOSTILE = ["9" * 30, "253402300800.5", "-1", "1e308", "inf", "nan", "0x" + "f" * 20, "\x00", "é", '"', "", "-"]


def _canonical_csv() -> bytes:
    rows = ["start,end,src_addr,dst_addr,src_port,dst_port,protocol,packets,bytes"]
    for i in range(200):
        rows.append(f"{1714564800 + i},{1714564801 + i},10.0.0.{i % 250},2001:db8::{i:x},{i},{443},6,{i},{i * 40}")
    return ("\n".join(rows) + "\n").encode()


def _mutate(data: bytes, rng: random.Random) -> bytes:
    lines = data.split(b"\n")
    kind = rng.randrange(5)
    if kind == 0:  # flip bytes
        b = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 1:  # cut short anywhere
        return data[: rng.randrange(len(data))]
    if kind == 2:  # a field of some lines replaced by a hostile value
        sep = b"\t" if b"\t" in lines[min(10, len(lines) - 1)] else b","
        for _ in range(rng.randint(1, 10)):
            i = rng.randrange(len(lines))
            parts = lines[i].split(sep)
            parts[rng.randrange(len(parts))] = rng.choice(HOSTILE).encode()
            lines[i] = sep.join(parts)
        return b"\n".join(lines)
    if kind == 3:  # lines duplicated, dropped or swapped (headers included)
        for _ in range(rng.randint(1, 5)):
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines[: rng.randrange(1, len(lines) + 1)])
    packed = gzip.compress(data)  # gzip cut or damaged
    cut = bytearray(packed[: rng.randrange(10, len(packed))])
    if rng.random() < 0.5 and len(cut) > 20:
        cut[rng.randrange(10, len(cut))] ^= 0xFF
    return bytes(cut)


def _check(batches: Iterator[pa.RecordBatch]) -> int:
    n = 0
    for b in batches:
        assert b.schema == STORE_SCHEMA
        for col in ("start", "end"):
            ms = b.column(col).cast(pa.int64())
            if len(ms) and ms.null_count < len(ms):
                lo_hi = pc.min_max(ms).as_py()
                assert MIN_MS <= lo_hi["min"] and lo_hi["max"] <= MAX_MS
        n += b.num_rows
    return n


@pytest.mark.parametrize(
    ("name", "reader"),
    [("conn", read_zeek), ("binetflow", read_binetflow), ("csv", read_csv)],
)
def test_mutated_real_files_never_crash(tmp_path: Path, name: str, reader: Callable) -> None:
    if name == "conn":
        data = b"\n".join(shared(CONN).read_bytes().split(b"\n")[:200]) + b"\n"
    elif name == "binetflow":
        data = b"\n".join(shared(BINETFLOW).read_bytes().split(b"\n")[:200]) + b"\n"
    else:
        data = _canonical_csv()
    rng = random.Random(f"fuzz-{name}")
    outcomes = {"read": 0, "refused": 0}
    for k in range(40):
        path = tmp_path / f"{name}-{k}"
        path.write_bytes(_mutate(data, rng))
        rep = ReadReport(str(path))
        try:
            n = _check(reader(path, rep))
        except InputError:
            outcomes["refused"] += 1
            continue
        assert n == rep.records
        outcomes["read"] += 1
    assert outcomes["read"] > 20  # most mutations leave a readable file with bad lines in it


def test_mutated_parquet_never_crashes(tmp_path: Path) -> None:
    """Bytes flipped in a Parquet file of 5 row groups: read with problems, or refused; a string
    that is not UTF-8 (Parquet does not check it) is a problem on its row."""
    import pyarrow.parquet as pq

    from flowpivot.ingest.tabular import read_parquet

    n = 2000
    t = pa.table({
        "start": pa.array(range(1714564800000, 1714564800000 + n), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "end": pa.array(range(1714564800000, 1714564800000 + n), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "src_addr": [f"10.0.{i // 256}.{i % 256}" for i in range(n)], "dst_addr": ["10.9.9.9"] * n,
        "packets": pa.array(range(n), pa.uint64()),
    })  # fmt: skip
    base = tmp_path / "base.parquet"
    pq.write_table(t, base, row_group_size=400, compression="none")
    data = base.read_bytes()
    rng = random.Random("fuzz-parquet")
    read = 0
    for k in range(60):
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        path = tmp_path / f"p{k}.parquet"
        path.write_bytes(b)
        rep = ReadReport(str(path))
        try:
            got = _check(read_parquet(path, rep))
        except InputError:
            continue
        assert got == rep.records
        read += 1
    assert read > 30
    # one address made of bytes that are not UTF-8, written as a string by a careless writer
    bad = bytearray(data)
    at = bytes(bad).find(b"10.0.1.7")
    bad[at : at + 2] = b"\xff\xfe"
    path = tmp_path / "latin.parquet"
    path.write_bytes(bad)
    rep = ReadReport(str(path))
    assert _check(read_parquet(path, rep)) == n - 1
    assert [p.where for p in rep.problems] == ["row group 0 row 263"] and "not UTF-8" in rep.problems[0].reason

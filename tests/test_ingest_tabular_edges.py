"""Canonical CSV and Parquet at the edges: impossible times, a byte-order mark, empty files.

Expected values are derived by hand from the input written in each test (Python's datetime and the
csv module, not the reader); the store itself is the check that the rest of the file was stored.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowpivot.ingest import detect_format, ingest_paths
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.columns import MAX_MS, MIN_MS, parse_decimal_usec_checked, parse_times_checked
from flowpivot.ingest.tabular import read_parquet
from flowpivot.schema import to_output
from flowpivot.store import Store

GOOD = [
    ("1714564800", "1714564801", "10.0.0.1", "10.0.0.2"),
    ("2024-05-01T12:00:02.250Z", "2024-05-01T12:00:03Z", "10.0.0.3", "10.0.0.4"),
    ("1714564804000", "1714564805000", "2001:db8::1", "2001:db8::2"),
]


def _ms(text: str) -> int:
    """Epoch ms of a value as written above, by hand (the oracle)."""
    if text.isdigit():
        return int(text) if len(text) >= 12 else int(text) * 1000
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_the_range_bounds_are_the_first_and_last_millisecond_a_date_holds() -> None:
    first = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    last = dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert MIN_MS == (first - epoch) // dt.timedelta(milliseconds=1)
    assert MAX_MS == (last - epoch) // dt.timedelta(milliseconds=1)


@pytest.mark.parametrize(
    "bad",
    [
        "9999999999999999",  # epoch ms in year 318857
        "123456789012345678901234",  # more digits than any clock
        "10000-01-01T00:00:00Z",
        "253402300800000",  # 10000-01-01T00:00:00Z in ms: one past the last
    ],
)
def test_an_impossible_csv_time_is_a_problem_on_its_line_and_the_rest_is_stored(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "flows.csv"
    rows = [
        GOOD[0],
        (bad, "1714564801", "10.9.9.9", "10.9.9.8"),
        *GOOD[1:],
        ("1714564800", bad, "10.7.7.7", "10.7.7.8"),
    ]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["start", "end", "src_addr", "dst_addr"])
        w.writerows(rows)
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([path], store)
    assert (rep.status, rep.records, rep.bad) == ("ingested", 3, 2), (rep.error, rep.problems)
    assert [(p.where, p.reason.split(":")[0]) for p in rep.problems] == [("line 3", "start"), ("line 6", "end")]
    assert all("outside the years 1 to 9999" in p.reason and bad in p.reason for p in rep.problems)
    got = sorted((round(r["start"].timestamp() * 1000), r["src_addr"]) for r in to_output(store.query()).to_pylist())
    assert got == sorted((_ms(s), a) for s, _, a, _ in GOOD)


def test_impossible_parquet_times_name_their_row_group_and_row(tmp_path: Path) -> None:
    """Year 10000 and int64 max as Parquet timestamps, in the second of two row groups."""
    ms = pa.timestamp("ms", tz="UTC")
    us = pa.timestamp("us")
    year_10000_us = (dt.datetime(10000 - 1, 12, 31, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // (
        dt.timedelta(microseconds=1)
    ) + 86_400_000_000  # 10000-01-01T00:00:00Z: no datetime holds it, so one day past 9999-12-31
    t1 = pa.table({
        "start": pa.array([1714564800000, 1714564801000], pa.int64()).cast(ms),
        "end": pa.array([1714564800500, 1714564801500], pa.int64()).cast(ms),
        "src_addr": ["10.0.0.1", "10.0.0.2"], "dst_addr": ["10.1.0.1", "10.1.0.2"],
    })  # fmt: skip
    path = tmp_path / "flows.parquet"
    with pq.ParquetWriter(path, t1.schema) as w:
        w.write_table(t1)
        w.write_table(
            pa.table(
                {
                    "start": pa.array(
                        [1714564802000, 2**63 - 1, 1714564803000, year_10000_us // 1000], pa.int64()
                    ).cast(ms),
                    "end": pa.array([1714564802000, 1714564802000, 1714564803000, 1714564803000], pa.int64()).cast(ms),
                    "src_addr": ["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"],
                    "dst_addr": ["10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"],
                }
            )  # fmt: skip
        )
    assert pq.ParquetFile(path).metadata.num_row_groups == 2
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([path], store)
    assert (rep.status, rep.records, rep.bad) == ("ingested", 4, 2), (rep.error, rep.problems)
    assert [p.where for p in rep.problems] == ["row group 1 row 1", "row group 1 row 3"]
    assert str(2**63 - 1) in rep.problems[0].reason and "outside the years 1 to 9999" in rep.problems[0].reason
    assert sorted(to_output(store.query()).column("src_addr").to_pylist()) == [f"10.0.0.{i}" for i in (1, 2, 3, 5)]
    # microsecond timestamps (no zone): rounded down to the millisecond; year 10000 is out
    t_us = pa.table({
        "start": pa.array([1714564800123456, -1500, year_10000_us], pa.int64()).cast(us),
        "end": pa.array([1714564800999999, 0, year_10000_us], pa.int64()).cast(us),
        "src_addr": ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "dst_addr": ["10.1.0.1", "10.1.0.2", "10.1.0.3"],
    })  # fmt: skip
    pq.write_table(t_us, tmp_path / "us.parquet")
    rep = ReadReport("us")
    got = to_output(pa.Table.from_batches(list(read_parquet(tmp_path / "us.parquet", rep)))).to_pylist()
    assert [p.where for p in rep.problems] == ["row group 0 row 2"]
    assert [(round(r["start"].timestamp() * 1000), round(r["end"].timestamp() * 1000)) for r in got] == [
        (1714564800123, 1714564800999),
        (-2, 0),
    ]


def test_time_parsers_never_raise() -> None:
    """Every kind of value a file can hold: numbers of any size, inf/nan, timestamps at the int64 ends."""
    cases = [
        pa.array(["9999999999999999", "1e999", "-5", "", None, "2024-13-45T00:00:00Z", "+10000-01-01T00:00:00Z"]),
        pa.array([1e300, float("inf"), float("nan"), -1e300, None]),
        pa.array([2**63 - 1, -(2**63), 0], pa.int64()),
        pa.array([2**64 - 1, 0], pa.uint64()),
        *(pa.array([2**63 - 1, -(2**63), None], pa.int64()).cast(pa.timestamp(u)) for u in ("s", "ms", "us", "ns")),
    ]
    for col in cases:
        ms, bad, out = parse_times_checked(col)
        v = ms.to_pylist()
        assert len(v) == len(col)
        assert all(x is None or MIN_MS <= x <= MAX_MS for x in v)
        assert all((x is None) for x, b, o in zip(v, bad, out, strict=True) if b or o)
    for col in (pa.array(["1e30", "99999999999999999999.5", "-1"]), pa.array([1e300, float("nan")]),
                pa.array([2**63 - 1], pa.int64())):  # fmt: skip
        us, bad, out = parse_decimal_usec_checked(col)
        assert us.null_count == len(col) and (bad | out).all()


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:  # what Excel's "CSV UTF-8" writes
        w = csv.writer(fh)
        w.writerow(["start", "end", "src_addr", "dst_addr"])
        w.writerows(GOOD)
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert detect_format(path) == "csv"
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([path], store)
    assert (rep.status, rep.records, rep.bad) == ("ingested", 3, 0), (rep.error, rep.problems)
    got = sorted((round(r["start"].timestamp() * 1000), r["src_addr"]) for r in to_output(store.query()).to_pylist())
    assert got == sorted((_ms(s), a) for s, _, a, _ in GOOD)


def test_files_without_flows_say_why(tmp_path: Path) -> None:
    header_only = tmp_path / "header.csv"
    header_only.write_text("start,end,src_addr,dst_addr\n")
    all_bad = tmp_path / "bad.csv"
    all_bad.write_text("start,end,src_addr,dst_addr\nx,y,z,w\n1,2,3\n")
    pq.write_table(
        pa.table({"start": pa.array([], pa.int64()), "end": pa.array([], pa.int64()),
                  "src_addr": pa.array([], pa.string()), "dst_addr": pa.array([], pa.string())}),
        tmp_path / "empty.parquet",
    )  # fmt: skip
    reps = ingest_paths([header_only, all_bad, tmp_path / "empty.parquet"], Store(tmp_path / "s"))
    # a file of bad lines only gave nothing usable: an error (exit 1); the empty ones are only notes
    assert [(r.status, r.records) for r in reps] == [("ingested", 0), ("unreadable", 0), ("ingested", 0)]
    assert "all 2 records were bad" in (reps[1].error or "")
    notes = [[p for p in r.problems if p.where == "whole file"] for r in reps]
    assert all(len(n) == 1 for n in notes)
    assert "no data line" in notes[0][0].reason and reps[0].bad == 0
    assert "all 2" in notes[1][0].reason and reps[1].bad == 2
    assert "no data row" in notes[2][0].reason


def test_gzipped_csv_cut_short(tmp_path: Path) -> None:
    lines = ["start,end,src_addr,dst_addr"] + [f"{1714564800 + i},{1714564801 + i},10.0.{i // 256}.{i % 256},10.9.9.9"
                                               for i in range(20000)]  # fmt: skip
    packed = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "flows.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    import zlib

    text = zlib.decompressobj(31).decompress(packed[: len(packed) // 2])
    complete = text[: text.rfind(b"\n") + 1].count(b"\n") - 1  # minus the header
    [rep] = ingest_paths([path], Store(tmp_path / "s"))
    assert (rep.status, rep.records, rep.bad) == ("ingested", complete, 1), (rep.error, rep.problems)
    assert rep.problems[0].where == f"line {complete + 2}" and "cut short" in rep.problems[0].reason


def test_gzip_members_and_damaged_gzip_data(tmp_path: Path) -> None:
    rows = [f"{1714564800 + i},{1714564801 + i},10.0.{i // 256}.{i % 256},10.9.9.9" for i in range(60000)]
    head = "start,end,src_addr,dst_addr\n"
    a = gzip.compress((head + "\n".join(rows[:30000]) + "\n").encode())
    b = gzip.compress(("\n".join(rows[30000:]) + "\n").encode())
    both = tmp_path / "members.csv.gz"
    both.write_bytes(a + b)  # cat a.gz b.gz: Python's gzip reads both members too
    assert gzip.decompress(both.read_bytes()).count(b"\n") == 60001
    [rep] = ingest_paths([both], Store(tmp_path / "s"))
    assert (rep.status, rep.records, rep.bad) == ("ingested", 60000, 0), rep.problems
    # damage in the second member: the first member's lines are all kept, one problem says where
    raw = bytearray(a + b)
    mid = len(a) + len(b) // 2
    raw[mid : mid + 64] = bytes(64)
    damaged = tmp_path / "damaged.csv.gz"
    damaged.write_bytes(raw)
    [rep] = ingest_paths([damaged], Store(tmp_path / "t"))
    assert rep.status == "ingested" and 30000 <= rep.records < 60000
    [p] = rep.problems
    assert p.where == f"line {rep.records + 2}" and "damaged" in p.reason


def test_gzip_with_zero_padding_after_it(tmp_path: Path) -> None:
    """Zeros after the last member (a preallocated or tape-blocked file) are no damage."""
    text = "start,end,src_addr,dst_addr\n" + "".join(f"{1714564800 + i},{1714564801 + i},10.0.0.1,10.0.0.2\n"
                                                   for i in range(1000))  # fmt: skip
    path = tmp_path / "padded.csv.gz"
    path.write_bytes(gzip.compress(text.encode()) + bytes(600_000))
    [rep] = ingest_paths([path], Store(tmp_path / "s"))
    assert (rep.status, rep.records, rep.bad, rep.problems) == ("ingested", 1000, 0, [])

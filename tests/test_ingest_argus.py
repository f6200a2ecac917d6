"""Argus CSV in: the real CTU ``.binetflow`` file, its CTU-13 form, and real ``ra -c ,`` output.

The oracles: the binetflow file split by the csv module with the field meanings worked out by hand
(Decimal seconds, ``int(x, 0)`` for hex ports, the TCP header's flag bits for the state letters);
for ``ra``, the real Argus tools (``argus`` on a real capture, ``ra`` printing the same records a
second time with epoch seconds, ``-u``).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
from conftest import need_tool, shared

from flowpivot.ingest import detect_format, ingest_paths
from flowpivot.ingest.argus import read_binetflow
from flowpivot.ingest.base import ReadReport
from flowpivot.schema import to_output
from flowpivot.store import Store

BINETFLOW = "realworld/stratosphere/test2-malicious.binetflow"
CAPTURE = "stratosphere/test-cc/test-cc-capture-1.pcap"
TCP_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}  # RFC 793/3168
PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "igmp": 2}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _us(when: str, tz: dt.tzinfo = dt.UTC) -> int:
    t = dt.datetime.strptime(when, "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=tz)
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def _flags(letters: str) -> int:
    return sum(TCP_BITS[c] for c in letters)


def expected(rows: list[dict[str, str]], start_us: list[int]) -> Counter:
    out: Counter = Counter()
    for r, s in zip(rows, start_us, strict=True):
        proto = PROTO[r["Proto"]]
        end = (s + int(Decimal(r["Dur"]) * 1_000_000)) // 1000
        if proto == 1:
            tc = int(r["Sport"], 16)  # 0xCCTT: code, type
            ports = (0, (tc & 0xFF) * 256 + (tc >> 8), tc & 0xFF, tc >> 8)
        else:
            ports = (int(r["Sport"], 0) if r["Sport"] else None, int(r["Dport"], 0) if r["Dport"] else None, None, None)
        if proto == 6 and "_" in r["State"]:
            fl = tuple(_flags(x) for x in r["State"].split("_"))
        else:
            fl = (None, None) if proto == 6 else (0, 0)
        src_p = int(r["SrcPkts"]) if "SrcPkts" in r else None
        out[(
            s // 1000, end, r["SrcAddr"], r["DstAddr"], proto, *ports, *fl,
            src_p, int(r["SrcBytes"]), None if src_p is None else int(r["TotPkts"]) - src_p,
            int(r["TotBytes"]) - int(r["SrcBytes"]),
        )] += 1  # fmt: skip
    return out


def ours(table: pa.Table) -> Counter:
    out: Counter = Counter()
    for r in to_output(table).to_pylist():
        out[(
            round(r["start"].timestamp() * 1000), round(r["end"].timestamp() * 1000), r["src_addr"], r["dst_addr"],
            r["protocol"], r["src_port"], r["dst_port"], r["icmp_type"], r["icmp_code"], r["tcp_flags"],
            r["rev_tcp_flags"], r["packets"], r["bytes"], r["rev_packets"], r["rev_bytes"],
        )] += 1  # fmt: skip
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v.strip() for k, v in r.items()} for r in csv.DictReader(fh)]


def test_real_binetflow_equals_a_plain_parse(tmp_path: Path) -> None:
    src = shared(BINETFLOW)
    rows = _rows(src)
    assert len(rows) == 6751
    assert detect_format(src) == "binetflow"
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([src], store)
    assert (rep.status, rep.fmt, rep.records, rep.bad) == ("ingested", "binetflow", 6751, 0), rep.problems[:3]
    got = ours(store.query())
    assert got == expected(rows, [_us(r["StartTime"]) for r in rows])
    assert set(to_output(store.query()).column("exporter").to_pylist()) == {"argus"}


def test_time_zone_of_the_wall_clock(tmp_path: Path) -> None:
    """CTU captures were made in Prague: tz= says so, and CEST is UTC+2 in April."""
    src = shared(BINETFLOW)
    rows = _rows(src)
    rep = ReadReport("prague")
    prague = ours(pa.Table.from_batches(list(read_binetflow(src, rep, tz="Europe/Prague"))))
    assert rep.records == 6751
    assert prague == expected(rows, [_us(r["StartTime"], ZoneInfo("Europe/Prague")) for r in rows])
    assert _us(rows[0]["StartTime"]) - _us(rows[0]["StartTime"], ZoneInfo("Europe/Prague")) == 2 * 3600 * 10**6


def test_ctu13_form_without_srcpkts_and_with_labels(tmp_path: Path) -> None:
    src = shared(BINETFLOW)
    rows = _rows(src)
    cols = [c for c in rows[0] if c != "SrcPkts"]
    path = tmp_path / "capture20110810.binetflow"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i, r in enumerate(rows):
            w.writerow([r[c] if c != "Label" else f"flow=Background-{i % 7}" for c in cols])
    rep = ReadReport(str(path))
    got = to_output(pa.Table.from_batches(list(read_binetflow(path, rep)))).to_pylist()
    assert (rep.records, rep.bad) == (6751, 0)
    one_way = [r["TotBytes"] == r["SrcBytes"] for r in rows]
    # packets are the source's only when all bytes are; otherwise they cannot be split: null
    want = [int(r["TotPkts"]) if ow else None for r, ow in zip(rows, one_way, strict=True)]
    assert sorted(map(str, (g["packets"] for g in got))) == sorted(map(str, want))
    assert rep.counters["records whose packets cannot be split by direction (no SrcPkts; packets null)"] == (
        one_way.count(False)
    )
    assert rep.counters["labels dropped (the flow schema has no place for them)"] == 6751


def test_bad_argus_lines_are_reported_and_the_rest_kept(tmp_path: Path) -> None:
    lines = shared(BINETFLOW).read_text().splitlines()
    bad = {
        3: lines[3].replace("2019/04/04", "10000/04/04", 1),  # no date holds it
        5: lines[5].replace("10.8.0.69", "10.8.0.690", 1),
        7: "2019/04/04 16:23:00.325010,garbage",
    }
    for i, text in bad.items():
        lines[i] = text
    path = tmp_path / "bad.binetflow"
    path.write_text("\n".join(lines) + "\n")
    rep = ReadReport(str(path))
    n = sum(b.num_rows for b in read_binetflow(path, rep))
    assert (n, rep.bad) == (6751 - 3, 3)
    where = {p.where: p.reason for p in rep.problems}
    assert set(where) == {f"line {i + 1}" for i in bad}
    assert "outside the years 1 to 9999" in where["line 4"] and "SrcAddr".lower() in where["line 6"].lower()


def test_real_ra_output_reads_like_the_same_records_in_epoch_seconds(tmp_path: Path) -> None:
    """argus on a real capture; ra prints the records as CSV with dates (and -Z b flag states), and
    again with epoch seconds (-u); both are read, and agree with a plain parse of the second."""
    argus, ra = need_tool("argus"), need_tool("ra")
    env = {**os.environ, "TZ": "UTC"}
    rec = tmp_path / "cc.argus"
    subprocess.run([argus, "-r", str(shared(CAPTURE)), "-w", str(rec)], check=True, capture_output=True, env=env)
    rarc = tmp_path / "rarc"
    rarc.write_text('RA_TIME_FORMAT="%Y/%m/%d %T.%f"\n')
    fields = ["stime", "ltime", "dur", "proto", "saddr", "sport", "dir", "daddr", "dport", "state", "spkts", "dpkts",
              "sbytes", "dbytes"]  # fmt: skip
    dated, epoch = tmp_path / "dated.csv", tmp_path / "epoch.csv"
    for out, extra in ((dated, ["-F", str(rarc)]), (epoch, ["-u"])):
        res = subprocess.run(
            [ra, *extra, "-r", str(rec), "-n", "-c", ",", "-Z", "b", "-s", *fields], capture_output=True, env=env
        )
        assert res.returncode == 0, res.stderr
        out.write_bytes(res.stdout)
    rows = [r for r in _rows(epoch) if r["Proto"] != "man"]
    assert len(rows) > 250
    want: Counter = Counter()
    for r in rows:
        s_us = int(Decimal(r["StartTime"]) * 1_000_000)
        e_us = int(Decimal(r["LastTime"]) * 1_000_000)
        fl = tuple(_flags(x) for x in r["State"].split("_")) if r["Proto"] == "tcp" else (0, 0)
        want[(
            s_us // 1000, e_us // 1000, r["SrcAddr"], r["DstAddr"], PROTO[r["Proto"]], int(r["Sport"]),
            int(r["Dport"]), None, None, *fl, int(r["SrcPkts"]), int(r["SrcBytes"]), int(r["DstPkts"]),
            int(r["DstBytes"]),
        )] += 1  # fmt: skip
    assert detect_format(dated) == detect_format(epoch) == "binetflow"
    for path in (dated, epoch):
        rep = ReadReport(str(path))
        got = ours(pa.Table.from_batches(list(read_binetflow(path, rep))))
        assert (rep.records, rep.bad) == (len(rows), 0), rep.problems[:3]
        assert rep.counters["Argus management records (not flows) skipped"] >= 1
        assert got == want
    # ra's default time format is a time of day without the date: no flow, and the problems say why
    res = subprocess.run([ra, "-r", str(rec), "-n", "-c", ","], capture_output=True, env=env, check=True)
    plain = tmp_path / "plain.csv"
    plain.write_bytes(res.stdout)
    rep = ReadReport(str(plain))
    assert sum(b.num_rows for b in read_binetflow(plain, rep)) == 0
    assert rep.bad == len(rows) and "RA_TIME_FORMAT" in rep.problems[0].reason
    assert rep.problems[-1].where == "whole file" and f"all {len(rows)}" in rep.problems[-1].reason

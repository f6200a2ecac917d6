"""Zeek conn.log (TSV and JSON lines): the real labelled log against a plain csv-module parse of it."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import shared

from flowpivot.ingest import detect_format, ingest_paths
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.zeek import read_zeek
from flowpivot.schema import to_output
from flowpivot.store import Store

CONN = "stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"
COUNTS = ("orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")


def zeek_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The oracle: split the TSV with the csv module, fields named by the #fields line."""
    fields: list[str] = []
    rows = []
    with open(path, newline="") as fh:
        for rec in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if rec and rec[0].startswith("#"):
                if rec[0] == "#fields":
                    fields = rec[1:]
                continue
            rows.append(dict(zip(fields, rec, strict=True)))
    return fields, rows


def _ms(value: str) -> int:
    return int(Decimal(value) * 1000 // 1)


def expected_flows(rows: list[dict[str, str]]) -> Counter:
    out = Counter()
    for r in rows:
        start = Decimal(r["ts"])
        dur = Decimal(r["duration"]) if r["duration"] != "-" else Decimal(0)
        out[(
            r["uid"], _ms(r["ts"]), int((start + dur) * 1000 // 1), r["id.orig_h"], r["id.resp_h"],
            int(r["id.orig_p"]), int(r["id.resp_p"]), {"tcp": 6, "udp": 17, "icmp": 1}[r["proto"]],
            r["conn_state"], None if r["history"] == "-" else r["history"],
            *(None if r[c] == "-" else int(r[c]) for c in COUNTS),
        )] += 1  # fmt: skip
    return out


def our_flows(table: pa.Table) -> Counter:
    out = Counter()
    for r in to_output(table).to_pylist():
        out[(
            r["uid"], round(r["start"].timestamp() * 1000), round(r["end"].timestamp() * 1000), r["src_addr"],
            r["dst_addr"], r["src_port"], r["dst_port"], r["protocol"], r["conn_state"], r["history"],
            r["packets"], r["bytes"], r["rev_packets"], r["rev_bytes"],
        )] += 1  # fmt: skip
    return out


def to_json_lines(path: Path, out: Path) -> None:
    """Write the TSV log the way Zeek's JSON writer would: typed values, unset fields left out."""
    fields, rows = zeek_rows(path)
    types = {}
    for line in path.read_text().splitlines():
        if line.startswith("#types"):
            types = dict(zip(fields, line.split("\t")[1:], strict=True))
    with open(out, "w") as fh:
        for r in rows:
            obj: dict = {}
            for k, v in r.items():
                t = types[k]
                if v == "-":
                    continue
                if t in ("time", "interval"):
                    obj[k] = float(v)
                elif t in ("count", "port", "int"):
                    obj[k] = int(v)
                elif t == "bool":
                    obj[k] = v == "T"
                elif t.startswith("set[") or t.startswith("vector["):
                    obj[k] = [] if v == "(empty)" else v.split(",")
                else:
                    obj[k] = v
            fh.write(json.dumps(obj) + "\n")


def test_labelled_conn_log_equals_a_plain_parse(tmp_path: Path) -> None:
    src = shared(CONN)
    _, rows = zeek_rows(src)
    assert len(rows) == 766
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([src], store)
    assert (rep.status, rep.fmt, rep.records, rep.bad) == ("ingested", "zeek", 766, 0), rep.problems
    table = store.query()
    assert our_flows(table) == expected_flows(rows)
    states = Counter(to_output(table).column("conn_state").to_pylist())
    assert states == Counter(r["conn_state"] for r in rows)
    assert set(to_output(table).column("exporter").to_pylist()) == {"zeek"}


def test_json_lines_ingest_identically(tmp_path: Path) -> None:
    src = shared(CONN)
    js = tmp_path / "conn.log.json"
    to_json_lines(src, js)
    assert detect_format(js) == "zeek"
    tsv = pa.Table.from_batches(list(read_zeek(src, ReadReport("tsv"))))
    rep = ReadReport("json")
    jsn = pa.Table.from_batches(list(read_zeek(js, rep)))
    assert rep.records == 766 and rep.bad == 0
    assert to_output(jsn).to_pylist() == to_output(tsv).to_pylist()


def test_gzipped_log_ingests_like_the_plain_one(tmp_path: Path) -> None:
    src = shared(CONN)
    gz = tmp_path / "conn.log.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    assert detect_format(gz) == "zeek"
    plain = pa.Table.from_batches(list(read_zeek(src, ReadReport("a"))))
    packed = pa.Table.from_batches(list(read_zeek(gz, ReadReport("b"))))
    assert packed.equals(plain)


@pytest.mark.parametrize(
    ("history", "orig", "resp"),
    [
        ("Sr", 0x02, 0x04),  # SYN answered by RST: the REJ of the RemcosRAT C2
        ("ShADadfF", 0x02 | 0x10 | 0x08 | 0x01, 0x12 | 0x10 | 0x08 | 0x01),
        ("S", 0x02, 0x00),
        ("DTdtATtTt", 0x18, 0x18),
    ],
)
def test_history_letters_become_tcp_flags(history: str, orig: int, resp: int) -> None:
    from flowpivot.ingest.zeek import history_flags

    o, r = history_flags(pa.array([history]))
    assert (o[0].as_py(), r[0].as_py()) == (orig, resp)


def test_garbage_lines_are_reported_with_their_line_numbers(tmp_path: Path) -> None:
    lines = shared(CONN).read_text().splitlines()
    header, body = lines[:8], lines[8:]
    bad_addr = body[5].split("\t")
    bad_addr[2] = "192.168.1.1077"
    bad_count = body[6].split("\t")
    bad_count[16] = "many"
    broken = [
        *header,
        *body[:5],
        "\t".join(bad_addr),
        "\t".join(bad_count),
        "garbage",
        *body[7:],
        "#close\t2024-08-16-10-00-00",
    ]
    path = tmp_path / "conn.log"
    path.write_text("\n".join(broken) + "\n")
    rep = ReadReport(str(path))
    n = sum(b.num_rows for b in read_zeek(path, rep))
    assert n == 766 - 2
    assert rep.bad == 3
    where = {p.where: p.reason for p in rep.problems}
    assert set(where) == {"line 14", "line 15", "line 16"}
    assert "id.orig_h" in where["line 14"] and "orig_pkts" in where["line 15"]


def test_other_zeek_logs_are_not_taken_for_connections(tmp_path: Path) -> None:
    dns = shared("stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/dns.log.labeled")
    assert detect_format(dns) is None
    [rep] = ingest_paths([dns], Store(tmp_path / "s"), fmt="zeek")
    assert rep.status == "unreadable" and "not conn.log" in rep.error


def test_json_lines_with_iso_times_missing_fields_and_garbage(tmp_path: Path) -> None:
    """Zeek's JSON writer leaves unset fields out and may write ISO 8601 times; a bad line is skipped."""
    path = tmp_path / "conn.json"
    path.write_text(
        '{"ts":"2023-02-22T00:00:03.714845Z","uid":"C1","id.orig_h":"2001:db8::1","id.orig_p":128,'
        '"id.resp_h":"2001:db8::2","id.resp_p":0,"proto":"icmp","conn_state":"OTH","orig_pkts":1}\n'
        '{"ts":1677024003.5,"uid":"C2","id.orig_h":"10.0.0.1","id.orig_p":1,"id.resp_h":"10.0.0.2",'
        '"id.resp_p":2,"proto":"udp","duration":0.25,"conn_state":"SF"}\n'
        "not json\n"
    )
    rep = ReadReport(str(path))
    rows = {r["uid"]: r for r in to_output(pa.Table.from_batches(list(read_zeek(path, rep)))).to_pylist()}
    assert [p.where for p in rep.problems] == ["line 3"]
    c1, c2 = rows["C1"], rows["C2"]
    assert (c1["protocol"], c1["icmp_type"], c1["icmp_code"], c1["packets"]) == (58, 128, 0, 1)
    assert round(c1["start"].timestamp() * 1000) == 1677024003714
    assert round(c2["start"].timestamp() * 1000) == 1677024003500
    assert round(c2["end"].timestamp() * 1000) == 1677024003750
    assert c2["packets"] is None


def test_a_damaged_separator_escape_is_an_input_problem_with_its_line(tmp_path: Path) -> None:
    # "\xZ9" is no escape Python (or Zeek) can decode; before, UnicodeDecodeError escaped the reader
    import codecs

    with pytest.raises(UnicodeDecodeError):
        codecs.decode(b"\\xZ9", "unicode_escape")
    log = tmp_path / "conn.log"
    log.write_bytes(b"#separator \\xZ9\n#fields\tts\tuid\n1.0\tC1\n")
    from flowpivot.errors import InputError

    with pytest.raises(InputError, match=r"line 1: #separator '\\\\xZ9' is not a separator"):
        list(read_zeek(log, ReadReport(str(log))))

"""Zeek conn.log as Zeek and its users write it: scope_sep, stray TABs, concatenated logs, cut gzip.

The oracle is a plain split of the text in the test (lines counted and fields named by hand, with
the ``#fields`` line in force where each line stands), independent of the reader.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from conftest import shared

from flowpivot.ingest import detect_format, ingest_paths
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.zeek import read_zeek
from flowpivot.schema import to_output
from flowpivot.store import Store

CONN = "stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"
SCOPE_SEP = "realworld/zeek/scope_sep_conn.log"
LEADING_TAB = "realworld/stratosphere/test10-mixed-zeek-dir_conn.log"
COUNTS = ("orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")


def split_log(text: str) -> list[dict[str, str]]:
    """Data lines as dicts, each named by the last #fields line above it (stray whitespace and any
    scope separator undone by hand: ``id_orig_h`` -> ``id.orig_h``)."""
    fields: list[str] = []
    rows = []
    for line in text.splitlines():
        bare = line.lstrip("\t ")
        if bare.startswith("#"):
            if bare.startswith("#fields\t"):
                fields = [f.replace("id_", "id.", 1) if f.startswith("id_") else f for f in bare.split("\t")[1:]]
            continue
        if bare.strip():
            rows.append(dict(zip(fields, bare.split("\t"), strict=True)))
    return rows


def expected(rows: list[dict[str, str]]) -> Counter:
    out: Counter = Counter()
    for r in rows:
        start = Decimal(r["ts"])
        dur = Decimal(r["duration"]) if r["duration"] != "-" else Decimal(0)
        proto = {"tcp": 6, "udp": 17, "icmp": 1}[r["proto"]]
        if proto == 1 and ":" in r["id.orig_h"]:
            proto = 58  # Zeek writes "icmp" for ICMPv6 too
        out[(
            r["uid"], int(start * 1000 // 1), int((start + dur) * 1000 // 1), r["id.orig_h"], r["id.resp_h"],
            int(r["id.orig_p"]), int(r["id.resp_p"]), proto, r["conn_state"],
            *(None if r[c] == "-" else int(r[c]) for c in COUNTS),
        )] += 1  # fmt: skip
    return out


def ours(table: pa.Table) -> Counter:
    out: Counter = Counter()
    for r in to_output(table).to_pylist():
        out[(
            r["uid"], round(r["start"].timestamp() * 1000), round(r["end"].timestamp() * 1000), r["src_addr"],
            r["dst_addr"], r["src_port"], r["dst_port"], r["protocol"], r["conn_state"],
            r["packets"], r["bytes"], r["rev_packets"], r["rev_bytes"],
        )] += 1  # fmt: skip
    return out


def _read(path: Path) -> tuple[pa.Table, ReadReport]:
    rep = ReadReport(str(path))
    batches = list(read_zeek(path, rep))
    return (pa.Table.from_batches(batches) if batches else pa.table({})), rep


def test_scope_sep_underscore_reads_like_the_dotted_names(tmp_path: Path) -> None:
    src = shared(SCOPE_SEP)
    text = src.read_text()
    assert "\tid_orig_h\t" in text
    rows = split_log(text)
    assert len(rows) == sum(1 for ln in text.splitlines() if ln and not ln.startswith("#")) == 34
    assert detect_format(src) == "zeek"
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([src], store)
    assert (rep.status, rep.records, rep.bad) == ("ingested", 34, 0), rep.problems
    assert ours(store.query()) == expected(rows)
    # the same log in JSON, keys written with the same scope_sep
    js = tmp_path / "conn.json"
    js.write_text("".join(json.dumps({k.replace("id.", "id_"): v for k, v in r.items()}) + "\n" for r in rows))
    assert detect_format(js) == "zeek"
    table, rep = _read(js)
    assert rep.records == 34 and ours(table) == expected(rows)


def test_stray_leading_tab_on_the_header_and_on_data_lines(tmp_path: Path) -> None:
    src = shared(LEADING_TAB)
    text = src.read_text()
    assert text.startswith("\t#separator")
    data_lines = [ln for ln in text.splitlines() if not ln.lstrip("\t").startswith("#")]
    assert len(data_lines) == 141
    assert detect_format(src) == "zeek"
    [rep] = ingest_paths([src], Store(tmp_path / "s"))
    assert (rep.status, rep.records, rep.bad) == ("ingested", 141, 0), (rep.error, rep.problems)
    # the same TAB in front of some data lines: read without it, counted
    lines = text.splitlines()
    tabbed = [("\t" + ln if i % 3 == 0 and not ln.lstrip("\t").startswith("#") else ln) for i, ln in enumerate(lines)]
    shifted = tmp_path / "tabbed.log"
    shifted.write_text("\n".join(tabbed) + "\n")
    n_tabbed = sum(1 for i, ln in enumerate(lines) if i % 3 == 0 and not ln.lstrip("\t").startswith("#"))
    table, rep = _read(shifted)
    assert (rep.records, rep.bad) == (141, 0), rep.problems
    assert rep.counters["lines with a stray leading TAB (read without it)"] == n_tabbed
    assert ours(table) == expected(split_log(text))


def test_concatenated_logs_with_a_reordered_second_header(tmp_path: Path) -> None:
    """``cat a.log b.log`` where b's #fields has another order: each block is read by its own header."""
    first = shared(CONN).read_text()
    second = shared(LEADING_TAB).read_text().replace("\t#separator", "#separator", 1)
    # reorder the second log's columns (reversed), header and data lines alike
    out = []
    for line in second.splitlines():
        parts = line.split("\t")
        if line.startswith("#fields") or line.startswith("#types"):
            out.append("\t".join([parts[0], *reversed(parts[1:])]))
        elif line.startswith("#"):
            out.append(line)
        else:
            out.append("\t".join(reversed(parts)))
    path = tmp_path / "both.log"
    path.write_text(first + "\n".join(out) + "\n")
    rows = split_log(path.read_text())
    n_first = len(split_log(first))
    assert (n_first, len(rows)) == (766, 766 + 141)
    table, rep = _read(path)
    assert (rep.records, rep.bad) == (766 + 141, 0), rep.problems[:3]
    assert rep.counters["header blocks after the first (concatenated logs)"] == 1
    assert ours(table) == expected(rows)


def test_a_header_block_of_another_log_skips_its_lines(tmp_path: Path) -> None:
    conn = shared(CONN).read_text()
    dns = shared("stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/dns.log.labeled").read_text()
    dns_lines = sum(1 for ln in dns.splitlines() if ln and not ln.startswith("#"))
    path = tmp_path / "mixed.log"
    path.write_text(conn + dns + conn)
    header_line = len(conn.splitlines()) + next(
        i + 1 for i, ln in enumerate(dns.splitlines()) if ln.startswith("#fields")
    )
    table, rep = _read(path)
    assert rep.records == 2 * 766
    assert [p.where for p in rep.problems] == [f"line {header_line}"]
    assert "dns" in rep.problems[0].reason
    assert rep.counters["lines skipped under a header that is not conn.log"] == dns_lines


def test_gzip_cut_short_keeps_the_lines_before_the_cut(tmp_path: Path) -> None:
    raw = shared(CONN).read_bytes()
    packed = gzip.compress(raw, compresslevel=6)
    cut = packed[: len(packed) * 2 // 3]
    path = tmp_path / "conn.log.gz"
    path.write_bytes(cut)
    # oracle: what zlib itself can decompress from the cut bytes, whole lines only
    text = zlib.decompressobj(31).decompress(cut)
    whole = text[: text.rfind(b"\n") + 1].decode()
    rows = split_log(whole)
    assert 100 < len(rows) < 766
    assert detect_format(path) == "zeek"
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([path], store)
    assert (rep.status, rep.records, rep.bad) == ("ingested", len(rows), 1), (rep.error, rep.problems)
    cut_line = whole.count("\n") + 1
    assert rep.problems[0].where == f"line {cut_line}"
    assert "cut short" in rep.problems[0].reason
    assert ours(store.query()) == expected(rows)


def test_impossible_zeek_times_are_problems_and_the_rest_is_stored(tmp_path: Path) -> None:
    lines = shared(CONN).read_text().splitlines()
    first_data = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    bad_rows = {first_data + 3: "253402300800.5", first_data + 10: "99999999999999999999.5"}
    for i, ts in bad_rows.items():
        parts = lines[i].split("\t")
        parts[0] = ts
        lines[i] = "\t".join(parts)
    dur_line = first_data + 20
    parts = lines[dur_line].split("\t")
    parts[0], parts[8] = "253402300799.0", "5.0"  # ends in year 10000
    lines[dur_line] = "\t".join(parts)
    path = tmp_path / "conn.log"
    path.write_text("\n".join(lines) + "\n")
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([path], store)
    assert (rep.status, rep.records, rep.bad) == ("ingested", 766 - 3, 3), (rep.error, rep.problems)
    where = {p.where: p.reason for p in rep.problems}
    assert set(where) == {f"line {i + 1}" for i in (*bad_rows, dur_line)}
    for i, ts in bad_rows.items():
        assert "outside the years 1 to 9999" in where[f"line {i + 1}"] and ts in where[f"line {i + 1}"]
    assert store.stats()["flows"] == 766 - 3


def test_a_log_without_data_lines_says_so(tmp_path: Path) -> None:
    header = [ln for ln in shared(CONN).read_text().splitlines() if ln.startswith("#")]
    path = tmp_path / "empty.log"
    path.write_text("\n".join(header) + "\n")
    [rep] = ingest_paths([path], Store(tmp_path / "s"))
    assert (rep.status, rep.records, rep.bad) == ("ingested", 0, 0)
    assert [p.where for p in rep.problems] == ["whole file"] and "no data line" in rep.problems[0].reason
    lines = shared(CONN).read_text().splitlines()
    garbage = tmp_path / "garbage.log"
    garbage.write_text("\n".join([*header[:-1], "x\ty", "also bad", header[-1]]) + "\n")
    _, rep = _read(garbage)
    assert rep.records == 0 and rep.bad == 2
    assert rep.problems[-1].where == "whole file" and "all 2" in rep.problems[-1].reason
    assert lines  # the real log is not empty: the header above is its own


def test_unset_and_empty_field_as_the_header_names_them(tmp_path: Path) -> None:
    """A site that sets LogAscii::unset_field = "NULL" (and empty_field): read as the default log."""
    text = shared(CONN).read_text()
    assert "#unset_field\t-\n" in text and "#empty_field\t(empty)\n" in text
    lines = []
    for line in text.splitlines():
        if line.startswith("#unset_field"):
            line = "#unset_field\tNULL"
        elif line.startswith("#empty_field"):
            line = "#empty_field\tEMPTY"
        elif not line.startswith("#"):
            line = "\t".join("NULL" if f == "-" else "EMPTY" if f == "(empty)" else f for f in line.split("\t"))
        lines.append(line)
    path = tmp_path / "conn.log"
    path.write_text("\n".join(lines) + "\n")
    assert "\t-\t" not in path.read_text().split("#fields")[1]
    plain, _ = _read(shared(CONN))
    table, rep = _read(path)
    assert (rep.records, rep.bad) == (766, 0), rep.problems[:3]
    assert table.equals(plain)

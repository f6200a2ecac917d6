"""Exactly once and nothing silent: one input in many copies, grown files, records already stored,
junk named on the command line, flows dated outside the plausible range, inputs that give no flow."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
from conftest import need_tool, shared
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.ingest import ingest_paths
from flowpivot.schema import to_output
from flowpivot.store import Store, parse_time
from flowpivot.timerange import DAY_MS, TimeRange

CONN = "stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"
IPFIX = "realworld/exporters/sf-v10b-a.pcap"
SFLOW = "realworld/exporters/pm-sflow.pcap"
A = "exports/akvorado/"


def _data_lines(raw: bytes) -> int:
    return sum(1 for ln in raw.splitlines() if ln and not ln.startswith(b"#"))


def _rows(store: Store) -> list[str]:
    return sorted(map(repr, to_output(store.query()).to_pylist()))


def _conn(tmp_path: Path) -> Path:
    p = tmp_path / "conn.log"
    shutil.copyfile(shared(CONN), p)
    return p


# ----- B1: a plain file and its gzip are one input ---------------------------------------------------


def test_a_log_and_its_gzip_are_one_input(tmp_path: Path) -> None:
    conn = _conn(tmp_path)
    gz = tmp_path / "conn.log.gz"
    gz.write_bytes(gzip.compress(conn.read_bytes()))
    expected = _data_lines(conn.read_bytes())
    for order in ([conn, gz], [gz, conn]):
        store = Store(tmp_path / f"s-{order[0].name}")
        reps = ingest_paths(order, store)
        assert [r.status for r in reps] == ["ingested", "already ingested"]
        assert reps[0].key == reps[1].key and store.stats()["flows"] == expected == 766


def test_a_store_from_before_still_knows_its_gzipped_inputs(tmp_path: Path) -> None:
    """Before, a gzip's key was the hash of its compressed bytes; such a store says "already ingested"."""
    conn = _conn(tmp_path)
    gz = tmp_path / "conn.log.gz"
    gz.write_bytes(gzip.compress(conn.read_bytes()))
    old_key = f"zeek-{hashlib.sha256(gz.read_bytes()).hexdigest()[:32]}"
    store = Store(tmp_path / "s")
    store.write([], old_key, {"path": str(gz)})  # what such a store holds: the source record
    assert store.has_source(old_key)
    [rep] = ingest_paths([gz], store)
    assert rep.status == "already ingested"


# ----- B2: a file that grew adds only its new records ----------------------------------------------------


def test_a_grown_zeek_log_adds_only_its_new_lines(tmp_path: Path) -> None:
    full = shared(CONN).read_bytes()
    lines = full.split(b"\n")
    log = tmp_path / "conn.log"
    # caught by the first ingest with its 301st line half written
    log.write_bytes(b"\n".join(lines[:300]) + b"\n" + lines[300][:20])
    store = Store(tmp_path / "s")
    [first] = ingest_paths([log], store)
    assert first.status == "ingested" and first.records == _data_lines(b"\n".join(lines[:300]))
    assert [p.where for p in first.problems] == ["line 301"]  # the half line

    grown = full.rstrip(b"\n") + b"\nnot a connection\n"
    log.write_bytes(grown)
    [second] = ingest_paths([log], store)
    assert second.status == "ingested" and any("grew from" in n for n in second.notes)
    assert second.records == _data_lines(full) - first.records  # the half line is read again, whole
    bad_at = grown.split(b"\n").index(b"not a connection") + 1
    assert [p.where for p in second.problems] == [f"line {bad_at}"]  # numbered as in the grown file
    assert store.stats()["flows"] == _data_lines(full) == 766
    [again] = ingest_paths([log], store)
    assert again.status == "already ingested"


def test_a_file_changed_other_than_by_growing_is_a_new_input(tmp_path: Path) -> None:
    log = _conn(tmp_path)
    store = Store(tmp_path / "s")
    ingest_paths([log], store)
    raw = log.read_bytes()
    log.write_bytes(raw.replace(b"#open\t2024-08-16-09-45-01", b"#open\t2024-08-16-09-45-02"))
    [rep] = ingest_paths([log], store)
    assert any("changed since it was ingested" in n for n in rep.notes)
    # read whole as a new input, its records are the ones stored: refused as such
    assert rep.status == "already stored" and store.stats()["flows"] == 766


def _packet_ends(raw: bytes) -> list[int]:
    ends, off = [], 24
    while off < len(raw):
        off += 16 + struct.unpack_from("<I", raw, off + 8)[0]
        ends.append(off)
    return ends


def test_a_grown_capture_adds_only_its_new_packets(tmp_path: Path) -> None:
    full = shared(IPFIX).read_bytes()
    ends = _packet_ends(full)
    cap = tmp_path / "cap.pcap"
    cap.write_bytes(full[: ends[14] + 30])  # 15 packets and the start of the 16th, being written
    store = Store(tmp_path / "s")
    [first] = ingest_paths([cap], store)
    assert first.status == "ingested" and first.records > 0
    assert [p.where for p in first.problems] == [f"packet 16 offset {ends[14]}"]

    cap.write_bytes(full)
    [second] = ingest_paths([cap], store)
    assert second.status == "ingested" and not second.problems
    assert any(f"only what follows byte {ends[14]:,}" in n for n in second.notes)

    once = Store(tmp_path / "once")
    [whole] = ingest_paths([shared(IPFIX)], once)
    # the templates of the first packets decoded the new ones; nothing twice, nothing missing
    assert first.records + second.records == whole.records and _rows(store) == _rows(once)


# ----- B3: records already in the store ----------------------------------------------------------------


def test_the_stores_own_csv_export_is_refused_unless_allowed(tmp_path: Path) -> None:
    conn = _conn(tmp_path)
    store = Store(tmp_path / "s")
    ingest_paths([conn], store)
    r = CliRunner()
    res = r.invoke(app, ["flows", "--store", str(store.root), "--output", "csv"])
    assert res.exit_code == 0
    back = tmp_path / "back.csv"
    back.write_text(res.stdout)

    res = r.invoke(app, ["ingest", str(back), "--store", str(store.root), "--quiet"])
    assert res.exit_code == 1 and "--allow-duplicates" in res.output and "in the store" in res.output
    [rep] = ingest_paths([back], store)
    assert rep.status == "already stored" and not store.has_source(rep.key)
    assert store.stats()["flows"] == 766

    [rep] = ingest_paths([back], store, allow_duplicates=True)
    assert rep.status == "ingested" and rep.records == 766 and rep.counters["sampled_records_already_stored"] > 0
    assert store.stats()["flows"] == 2 * 766


def test_other_flows_of_the_same_days_are_not_taken_for_duplicates(tmp_path: Path) -> None:
    conn = _conn(tmp_path)
    raw = conn.read_bytes().split(b"\n")
    head = [ln for ln in raw if ln.startswith(b"#")]
    data = [ln for ln in raw if ln and not ln.startswith(b"#")]
    one, two = tmp_path / "a.log", tmp_path / "b.log"
    one.write_bytes(b"\n".join(head + data[::2]) + b"\n")  # every other connection of the same day
    two.write_bytes(b"\n".join(head + data[1::2]) + b"\n")
    store = Store(tmp_path / "s")
    reps = ingest_paths([one, two], store)
    assert [r.status for r in reps] == ["ingested", "ingested"] and store.stats()["flows"] == 766
    assert "sampled_records_already_stored" not in reps[1].counters


# ----- A3: the plausible time range --------------------------------------------------------------------


def _csv_with_future(tmp_path: Path) -> tuple[Path, int]:
    """The store's CSV of conn.log with one flow starting in 2099 and one ending then."""
    conn = _conn(tmp_path)
    store = Store(tmp_path / "src")
    ingest_paths([conn], store)
    out = to_output(store.query())
    start = out.column("start").cast(pa.int64()).to_pylist()
    end = out.column("end").cast(pa.int64()).to_pylist()
    y2099 = parse_time("2099-01-01T00:00:00Z")
    start[5], end[5], end[6] = y2099, y2099 + 1000, y2099
    ts = pa.timestamp("ms", tz="UTC")
    out = out.set_column(0, "start", pa.array(start, pa.int64()).cast(ts))
    out = out.set_column(1, "end", pa.array(end, pa.int64()).cast(ts))
    p = tmp_path / "future.csv"
    pacsv.write_csv(out, p)
    return p, out.num_rows


def test_flows_dated_in_2099_are_counted_and_never_stored(tmp_path: Path) -> None:
    csv, n = _csv_with_future(tmp_path)
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([csv], store)
    assert rep.status == "ingested" and rep.records == n - 2 and rep.bad == 2
    assert rep.counters["out_of_time_range"] == 2
    assert [p.where for p in rep.problems] == ["record 6", "record 7"]
    assert "start 2099-01-01T00:00:00.000Z outside the plausible range" in rep.problems[0].reason
    assert "end 2099-01-01T00:00:00.000Z" in rep.problems[1].reason
    tr = store.time_range()
    assert tr is not None and tr[1] < parse_time("2024-01-01")
    res = CliRunner().invoke(app, ["flows", "--store", str(store.root), "--output", "csv"])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == n - 2 + 1

    # the range is configurable
    later = Store(tmp_path / "later")
    res = CliRunner().invoke(app, ["ingest", str(csv), "--store", str(later.root), "--not-after", "2100-01-01", "-q"])
    assert res.exit_code == 0 and later.stats()["flows"] == n


def test_the_reference_time_is_the_files_modification_time(tmp_path: Path) -> None:
    conn = _conn(tmp_path)
    first = min(float(ln.split(b"\t")[0]) for ln in conn.read_bytes().splitlines() if ln and ln[:1] != b"#")
    os.utime(conn, (first - 3 * 86400, first - 3 * 86400))  # written 3 days before its first flow: impossible
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([conn], store)
    assert rep.status == "unreadable" and rep.counters["out_of_time_range"] == 766
    assert "all 766 records were bad" in rep.error and "modification time plus 24 h" in rep.error
    assert not store.has_source(rep.key)
    [rep] = ingest_paths([conn], store, time_range=TimeRange(slack_ms=7 * DAY_MS))
    assert rep.status == "ingested" and rep.records == 766


# ----- B4 and D: junk named explicitly, and inputs that give no flow -------------------------------------


def test_a_junk_capture_named_explicitly_is_an_error_and_not_remembered(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    # a pcap file header, then a record header announcing an impossible length
    junk.write_bytes(shared(IPFIX).read_bytes()[:24] + struct.pack("<IIII", 0, 0, 0xA8E95A2B, 64) + b"\0" * 64)
    store = Store(tmp_path / "s")
    for _ in range(2):
        [rep] = ingest_paths([junk], store)
        assert rep.status == "unreadable" and "no NetFlow v5/v9 or IPFIX export datagram" in rep.error
        assert not store.has_source(rep.key)
    res = CliRunner().invoke(app, ["ingest", str(junk), "--store", str(store.root), "-q"])
    assert res.exit_code == 1 and "no input gave a flow" in res.output


def test_a_capture_without_flow_exports_in_a_directory_is_skipped_and_said(tmp_path: Path) -> None:
    d = tmp_path / "caps"
    d.mkdir()
    shutil.copyfile(shared("stratosphere/test-cc/test-cc-capture-1.pcap"), d / "tls.pcap")
    shutil.copyfile(shared(IPFIX), d / "ipfix.pcap")
    store = Store(tmp_path / "s")
    reps = {Path(r.source).name: r for r in ingest_paths([d], store)}
    assert reps["ipfix.pcap"].status == "ingested" and reps["ipfix.pcap"].records > 0
    tls = reps["tls.pcap"]
    assert tls.status == "not a flow file" and not store.has_source(tls.key)
    assert any("no NetFlow v5/v9 or IPFIX export datagram" in n and "not_udp" in n for n in tls.notes)


def test_an_sflow_capture_is_read_and_says_what_it_held(tmp_path: Path) -> None:
    tshark = need_tool("tshark")
    sflow = shared(SFLOW)
    # tshark's count of flow samples (one sampled packet each) is the number of flows
    samples = sum(
        len([x for x in line.split(",") if x])
        for line in subprocess.run(
            [tshark, "-r", str(sflow), "-d", "udp.port==43050,sflow", "-Y", "sflow", "-T", "fields",
             "-e", "sflow.flow_sample.sequence_number"],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()
    )  # fmt: skip
    res = CliRunner().invoke(app, ["ingest", str(sflow), "--store", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[0])
    assert doc["status"] == "ingested" and doc["flows"] == samples > 0
    assert doc["counters"].get("sflow_counter_samples", 0) >= 1  # set aside, and said


def test_templates_alone_are_kept_data_alone_is_not_remembered(tmp_path: Path) -> None:
    template, data = shared(A + "netflow-samplingrate-template.pcap"), shared(A + "netflow-samplingrate-data.pcap")
    store = Store(tmp_path / "s")
    [t] = ingest_paths([template], store)
    assert t.status == "ingested" and t.records == 0 and any("templates and options only" in n for n in t.notes)
    res = CliRunner().invoke(app, ["ingest", str(data), "--store", str(tmp_path / "d"), "--json"])
    assert res.exit_code == 1  # its data waits for a template: nothing usable
    alone = Store(tmp_path / "d")
    [d] = ingest_paths([data], alone)
    assert d.status == "unreadable" and "waiting for a template" in d.error and not alone.has_source(d.key)
    reps = ingest_paths([template, data], alone)  # given later with its templates, it is read
    assert [r.status for r in reps] == ["ingested", "ingested"] and reps[1].records > 0


def test_a_header_only_log_says_it_holds_no_record(tmp_path: Path) -> None:
    log = tmp_path / "conn.log"
    log.write_bytes(b"\n".join(ln for ln in shared(CONN).read_bytes().split(b"\n") if ln.startswith(b"#")) + b"\n")
    res = CliRunner().invoke(app, ["ingest", str(log), "--store", str(tmp_path / "s")])
    assert res.exit_code == 1 and "0 flows: it holds no record" in res.output and "no input gave a flow" in res.output


def test_a_rotated_and_gzipped_log_adds_only_what_it_gained(tmp_path: Path) -> None:
    """Zeek rotates conn.log to conn.<date>.log.gz: its start was ingested from conn.log before."""
    full = shared(CONN).read_bytes()
    lines = full.split(b"\n")
    live = tmp_path / "conn.log"
    live.write_bytes(b"\n".join(lines[:500]) + b"\n")
    store = Store(tmp_path / "s")
    [first] = ingest_paths([live], store)
    rotated = tmp_path / "conn.2023-02-22.log.gz"
    rotated.write_bytes(gzip.compress(full))
    live.unlink()
    [second] = ingest_paths([rotated], store)
    assert second.status == "ingested" and any(f"(as {live})" in n for n in second.notes)
    assert first.records + second.records == _data_lines(full) == store.stats()["flows"]


def test_an_empty_capture_says_it_holds_no_packet(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(shared(IPFIX).read_bytes()[:24])  # tcpdump just started: the file header only
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([empty], store)
    assert rep.status == "unreadable" and "no packet in it" in rep.error and not store.has_source(rep.key)

"""Canonical CSV/Parquet in, the ``flowpivot ingest`` command, format detection and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import need_tool, shared
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.ingest import detect_format, ingest_paths
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.tabular import read_csv
from flowpivot.schema import to_output
from flowpivot.store import Store

NFDUMP_FILE = "stratosphere/test1-malicious.nfdump"
CONN = "stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"
PCAPS = ("exports/akvorado/netflow-icmp-template.pcap", "exports/akvorado/netflow-icmp-data.pcap")


def _rows(store: Store) -> list[tuple]:
    rows = to_output(store.query()).to_pylist()
    return sorted((tuple((k, v) for k, v in r.items()) for r in rows), key=repr)


@pytest.fixture(scope="module")
def source_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store with the real nfdump file (IPv4, TCP/UDP) and the real Zeek log (biflows, history)."""
    need_tool("nfdump")
    store = Store(tmp_path_factory.mktemp("src") / "store")
    reps = ingest_paths([shared(NFDUMP_FILE), shared(CONN)], store)
    assert [r.status for r in reps] == ["ingested", "ingested"]
    return store


@pytest.mark.parametrize("output", ["csv", "parquet"])
def test_flows_output_ingests_back_equal(source_store: Store, tmp_path: Path, output: str) -> None:
    exported = tmp_path / f"flows.{output}"
    res = CliRunner().invoke(
        app, ["flows", "--store", str(source_store.root), "--output", output, "--out", str(exported)]
    )
    assert res.exit_code == 0, res.output
    assert detect_format(exported) == output
    back = Store(tmp_path / "back")
    [rep] = ingest_paths([exported], back)
    assert (rep.status, rep.bad) == ("ingested", 0), rep.problems[:3]
    assert rep.records == 4593 + 766
    assert _rows(back) == _rows(source_store)


def test_csv_in_other_spellings(tmp_path: Path) -> None:
    path = tmp_path / "flows.csv"
    path.write_text(
        "src_addr,dst_addr,start,end,dst_port,protocol,packets,label\n"
        "10.0.0.1,2001:db8::5,2024-05-01T12:00:00.250Z,2024-05-01T12:00:01Z,443,6,3,x\n"
        "::ffff:10.0.0.2,10.0.0.3,1714564800,1714564801.5,53,17,1,y\n"
        "10.0.0.4,10.0.0.5,1714564800250,1714564800999,,,,z\n"
        "10.0.0.6,10.0.0.7,2024-05-01 14:00:00+02:00,2024-05-01 12:00:00.5,1,1,1,w\n"
    )
    rep = ReadReport(str(path))
    t = to_output(pa.Table.from_batches(list(read_csv(path, rep)))).to_pylist()
    assert rep.bad == 0, rep.problems
    assert [r["src_addr"] for r in t] == ["10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.6"]
    assert t[0]["dst_addr"] == "2001:db8::5"
    ms = [(int(r["start"].timestamp() * 1000), int(r["end"].timestamp() * 1000)) for r in t]
    assert ms == [
        (1714564800250, 1714564801000),
        (1714564800000, 1714564801500),
        (1714564800250, 1714564800999),
        (1714564800000, 1714564800500),
    ]
    assert [r["sampling_rate"] for r in t] == [1, 1, 1, 1]
    assert t[2]["dst_port"] is None and t[2]["protocol"] is None


def test_bad_csv_rows_are_reported_and_the_rest_kept(tmp_path: Path) -> None:
    good = "10.0.0.{i},10.0.1.{i},2024-05-01T12:00:0{i}Z,2024-05-01T12:00:0{i}Z,{i},6"
    lines = ["src_addr,dst_addr,start,end,dst_port,protocol"]
    lines += [good.format(i=i) for i in range(1, 4)]  # lines 2-4
    lines += [
        "10.0.0.9,10.0.1.9,2024-05-01T12:00:00Z",  # line 5: too few fields
        "10.0.0.300,10.0.1.9,2024-05-01T12:00:00Z,2024-05-01T12:00:00Z,1,6",  # 6: bad address
        "10.0.0.9,10.0.1.9,yesterday,2024-05-01T12:00:00Z,1,6",  # 7: bad time
        "10.0.0.9,10.0.1.9,2024-05-01T12:00:00Z,2024-05-01T12:00:00Z,70000,6",  # 8: port out of range
        "",  # 9: blank, not a problem
        "10.0.0.9,10.0.1.9,2024-05-01T12:00:02Z,2024-05-01T12:00:01Z,1,6",  # 10: ends before it starts
    ]
    lines += [good.format(i=i) for i in range(4, 7)]  # lines 11-13
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines) + "\n")
    rep = ReadReport(str(path))
    t = pa.Table.from_batches(list(read_csv(path, rep)))
    assert t.num_rows == 7  # line 10 is read as it is: the ingest pipeline repairs it
    assert [p.where for p in rep.problems] == ["line 5", "line 6", "line 7", "line 8"]
    assert "src_addr" in rep.problems[1].reason and "dst_port" in rep.problems[3].reason
    # through ingest: the record that ends before it starts is stored with its end set to its start
    (r,) = ingest_paths([path], Store(tmp_path / "st"))
    assert (r.records, r.bad, r.counters.get("end_before_start_repaired")) == (7, 4, 1)
    stored = Store(tmp_path / "st").query(ip="10.0.0.9").to_pylist()
    assert len(stored) == 1 and stored[0]["start"] == stored[0]["end"]
    assert stored[0]["start"].isoformat().startswith("2024-05-01T12:00:02")


def test_a_stray_quote_falls_back_to_line_by_line(tmp_path: Path) -> None:
    lines = ["src_addr,dst_addr,start,end,exporter"]
    lines += [f"10.0.0.{i},10.0.1.1,2024-05-01T12:00:00Z,2024-05-01T12:00:00Z,r{i}" for i in range(1, 5)]
    lines.insert(3, '10.0.0.99,10.0.1.1,2024-05-01T12:00:00Z,2024-05-01T12:00:00Z,"unterminated')
    path = tmp_path / "q.csv"
    path.write_text("\n".join(lines) + "\n")
    rep = ReadReport(str(path))
    t = to_output(pa.Table.from_batches(list(read_csv(path, rep))))
    assert t.column("exporter").to_pylist() == ["r1", "r2", "r3", "r4"]
    assert [p.where for p in rep.problems] == ["line 4"]


def test_missing_required_columns_make_the_file_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("start,end,src_addr\n2024-05-01T12:00:00Z,2024-05-01T12:00:00Z,10.0.0.1\n")
    [rep] = ingest_paths([path], Store(tmp_path / "s"), fmt="csv")
    assert rep.status == "unreadable" and "dst_addr" in rep.error


def test_detects_every_format(tmp_path: Path) -> None:
    need_tool("nfdump")
    assert detect_format(shared(NFDUMP_FILE)) == "nfdump"
    assert detect_format(shared(CONN)) == "zeek"
    assert detect_format(shared(PCAPS[1])) == "pcap"
    ng = tmp_path / "x.pcapng"
    ng.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x00" * 28)
    assert detect_format(ng) == "pcap"
    pq.write_table(
        pa.table({"start": [1], "end": [1], "src_addr": ["1.1.1.1"], "dst_addr": ["2.2.2.2"]}), tmp_path / "p"
    )
    assert detect_format(tmp_path / "p") == "parquet"
    (tmp_path / "readme").write_text("# notes\n")
    assert detect_format(tmp_path / "readme") is None


def test_cli_reports_and_exit_codes(tmp_path: Path) -> None:
    need_tool("nfdump")
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(shared(NFDUMP_FILE), inputs / "a.nfdump")
    shutil.copy(shared(CONN), inputs / "conn.log")
    (inputs / "notes.txt").write_text("not flows\n")  # met in a directory: skipped, not an error
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    store = tmp_path / "store"
    runner = CliRunner()

    res = runner.invoke(app, ["ingest", str(inputs), str(junk), "--store", str(store), "--json"])
    assert res.exit_code == 1, res.output
    reports = {
        Path(r["file"]).name: r for r in map(json.loads, [ln for ln in res.stdout.splitlines() if ln.startswith("{")])
    }
    assert reports["a.nfdump"]["status"] == "ingested" and reports["a.nfdump"]["flows"] == 4593
    assert reports["conn.log"]["flows"] == 766
    assert reports["notes.txt"]["status"] == "not a flow file"
    assert reports["junk.bin"]["status"] == "unreadable" and "format not recognised" in reports["junk.bin"]["error"]
    assert Store(store).stats()["flows"] == 4593 + 766

    res = runner.invoke(app, ["ingest", str(inputs), "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert "already ingested" in res.stdout
    assert Store(store).stats()["flows"] == 4593 + 766

    # bad records are warnings: exit 0, and each one is listed with where and why
    bad = tmp_path / "bad.csv"
    bad.write_text("start,end,src_addr,dst_addr\n2024-05-01T12:00:00Z,2024-05-01T12:00:00Z,10.0.0.1,10.0.0.2\nx,y,z\n")
    res = runner.invoke(app, ["ingest", str(bad), "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert "line 3" in res.stderr and "bad.csv" in res.stderr

    assert runner.invoke(app, ["ingest", str(bad), "--store", str(store), "--format", "xml"]).exit_code == 2
    assert runner.invoke(app, ["ingest", "--store", str(store)]).exit_code == 2
    missing = runner.invoke(app, ["ingest", str(tmp_path / "nope.csv"), "--store", str(store)])
    assert missing.exit_code == 1 and "No such file" in missing.stderr


def test_clean_canonical_rows_convert_exactly_as_schema_from_output(source_store: Store) -> None:
    """The validating reader and the schema's own interchange -> store conversion agree on clean data."""
    import numpy as np

    from flowpivot.ingest.tabular import canonical_batch
    from flowpivot.schema import from_output

    out = to_output(source_store.query())
    extra = pa.table(
        {
            "start": out.column("start")[:2],
            "end": out.column("end")[:2],
            "src_addr": ["::ffff:192.0.2.1", "2001:db8::1"],
            "dst_addr": ["2001:db8::2", "10.1.2.3"],
            "sampling_rate": pa.array([1, 100], pa.uint32()),
        }
    )
    mixed = pa.concat_tables([out, extra], promote_options="default")
    rep = ReadReport("t")
    ours = canonical_batch(mixed, np.arange(mixed.num_rows), rep, "row")
    theirs = from_output(mixed)
    assert rep.bad == 0
    for name in (
        "src_addr_v4",
        "src_addr_v6",
        "dst_addr_v4",
        "dst_addr_v6",
        "start",
        "end",
        "packets",
        "tcp_flags",
        "history",
    ):
        assert ours.column(name).equals(theirs.column(name)), name

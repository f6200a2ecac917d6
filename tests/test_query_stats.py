"""``flows -s FIELD/ORDER -n N``: top-N statistics, checked against ``nfdump -s`` on the same files.

The files and stores are those of test_query_filter (a real nfcapd's file of the recorded exports,
and the Stratosphere nfdump file). nfdump's statistic is read from its CSV output; rows that tie
on the ordering value may come in either order, so the check is: the same sequence of ordering
values, and for every value flowpivot lists, the flows, packets and bytes nfdump has for it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import defaultdict
from pathlib import Path

import maxminddb
import pytest
from conftest import need_tool, shared
from test_query_filter import ASN_DB
from test_query_filter import files as files  # noqa: F401, PLC0414  (a module fixture)
from test_query_filter import nfcapd_file as nfcapd_file  # noqa: F401, PLC0414
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.query import parse_stat
from flowpivot.schema import to_output
from flowpivot.store import Store

STATS = [
    "srcip/bytes", "dstip/packets", "ip/flows", "ip/bytes", "srcport/flows", "dstport/bytes", "port/packets",
    "proto/flows", "proto/bytes", "srcas/bytes", "dstas/flows", "as/packets", "router/flows",
]  # fmt: skip


def _nfdump_stat(path: Path, stat: str, n: int, expr: str = "any") -> list[tuple[str, int, int, int, str, str, str]]:
    """(value, flows, packets, bytes, flows%, packets%, bytes%) rows of ``nfdump -s stat -n n -o csv``."""
    res = subprocess.run(
        [need_tool("nfdump"), "-r", str(path), "-q", "-6", "-s", stat, "-n", str(n), "-o", "csv", expr],
        capture_output=True, env={**os.environ, "TZ": "UTC"}, check=True, text=True,
    )  # fmt: skip
    rows = []
    for line in res.stdout.splitlines():
        f = line.split(",")
        if len(f) < 11 or f[0] == "ts":
            continue
        rows.append((f[4].strip(), int(f[5]), int(f[7]), int(f[9]), f[6].strip(), f[8].strip(), f[10].strip()))
    return rows


def _ours(store: Store, stat: str, n: int, *extra: str) -> list[dict]:
    res = CliRunner().invoke(
        app, ["flows", "--store", str(store.root), "-s", stat, "-n", str(n), "-o", "jsonl", *extra]
    )
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.stdout.splitlines()]


@pytest.mark.parametrize("stat", STATS)
def test_top_n_is_nfdumps(files: dict[str, tuple[Path, Store]], stat: str) -> None:
    order = parse_stat(stat).order
    idx = {"flows": 1, "packets": 2, "bytes": 3}[order]
    for name, (path, store) in files.items():
        every = {r[0]: r for r in _nfdump_stat(path, stat, 0)}
        top = _nfdump_stat(path, stat, 10)
        ours = _ours(store, stat, 10)
        assert [r[order] for r in ours] == [r[idx] for r in top], f"{name} {stat}"
        for r in ours:
            nf = every[str(r["value"])]
            assert (r["flows"], r["packets"], r["bytes"]) == nf[1:4], f"{name} {stat} {r['value']}"


def test_text_table_percentages_are_nfdumps(files: dict[str, tuple[Path, Store]]) -> None:
    path, store = files["stratosphere"]
    res = CliRunner().invoke(
        app, ["flows", "--store", str(store.root), "-s", "srcip/bytes", "-n", "5", "-f", "proto tcp"]
    )
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "Top 5 Src IP Addr ordered by bytes:"
    ours = {}
    for line in lines[2:]:
        if line.startswith("Summary"):
            break
        parts = line.replace("(", " ").replace(")", " ").split()
        ours[parts[3]] = tuple(int(parts[i]) for i in (4, 6, 8)) + tuple(parts[i] for i in (5, 7, 9))
    theirs = {r[0]: r[1:] for r in _nfdump_stat(path, "srcip/bytes", 5, "proto tcp")}
    assert ours == theirs and len(ours) >= 3


def test_filter_and_statistics_together(files: dict[str, tuple[Path, Store]]) -> None:
    path, store = files["nfcapd"]
    expr = "proto tcp and src port 443"
    ours = _ours(store, "dstip/bytes", 0, "-f", expr)
    theirs = {r[0]: r[1:4] for r in _nfdump_stat(path, "dstip/bytes", 0, expr)}
    assert {r["value"]: (r["flows"], r["packets"], r["bytes"]) for r in ours} == theirs and len(theirs) > 5


def test_as_statistics_through_an_asn_database(files: dict[str, tuple[Path, Store]]) -> None:
    """With --asn-db the AS of each address comes from the database; the oracle is the maxminddb reader."""
    db = shared(ASN_DB)
    reader = maxminddb.open_database(str(db))

    def asn_of(a: str) -> int:
        rec = reader.get(a)
        return int(rec.get("autonomous_system_number", 0)) if isinstance(rec, dict) else 0

    _, store = files["nfcapd"]
    want: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in to_output(store.query()).to_pylist():
        for side in ("src_addr", "dst_addr"):
            w = want[asn_of(r[side])]
            w[0] += 1
            w[1] += r["packets"] + (r["rev_packets"] or 0)  # ordered by bytes: both directions of a biflow
            w[2] += r["bytes"] + (r["rev_bytes"] or 0)
    ours = _ours(store, "as/bytes", 0, "--asn-db", str(db))
    assert {r["value"]: [r["flows"], r["packets"], r["bytes"]] for r in ours} == dict(want)
    assert [r["bytes"] for r in ours] == sorted((w[2] for w in want.values()), reverse=True)
    assert len(want) > 5


def test_ordered_output_formats(files: dict[str, tuple[Path, Store]]) -> None:
    _, store = files["stratosphere"]
    res = CliRunner().invoke(
        app, ["flows", "--store", str(store.root), "-s", "dstport/packets", "-n", "3", "-o", "csv"]
    )
    assert res.exit_code == 0, res.output
    rows = res.stdout.splitlines()
    assert rows[0] == "stat,order,value,first,last,flows,packets,bytes" and len(rows) == 4
    res = CliRunner().invoke(app, ["flows", "--store", str(store.root), "-s", "srcip", "-o", "parquet"])
    assert res.exit_code == 2


def test_several_orders_of_one_statistic(files: dict[str, tuple[Path, Store]]) -> None:
    """``-s srcport/flows/bytes`` is two tables, as nfdump prints them."""
    path, store = files["nfcapd"]
    res = subprocess.run(
        [need_tool("nfdump"), "-r", str(path), "-q", "-s", "srcport/flows/bytes", "-n", "3", "-o", "csv"],
        capture_output=True, env={**os.environ, "TZ": "UTC"}, check=True, text=True,
    )  # fmt: skip
    tables = [[line.split(",") for line in block.splitlines()[1:]] for block in res.stdout.strip().split("\n\n")]
    ours = _ours(store, "srcport/flows/bytes", 3)
    assert [r["order"] for r in ours] == ["flows"] * 3 + ["bytes"] * 3
    for order, table, rows in (("flows", tables[0], ours[:3]), ("bytes", tables[1], ours[3:])):
        i = 5 if order == "flows" else 9
        assert [r[order] for r in rows] == [int(f[i]) for f in table]


def test_a_filter_that_matches_nothing_gives_an_empty_table(files: dict[str, tuple[Path, Store]]) -> None:
    path, store = files["stratosphere"]
    assert _nfdump_stat(path, "srcip", 10, "port 1") == []
    res = CliRunner().invoke(app, ["flows", "--store", str(store.root), "-s", "srcip", "-f", "port 1"])
    assert res.exit_code == 0, res.output
    assert "Summary: total flows: 0, total bytes: 0, total packets: 0" in res.stdout
    assert _ours(store, "ip/bytes", 10, "-f", "port 1") == []

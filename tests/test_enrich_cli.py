"""``flowpivot enrich``: JSON keys, --file with bad lines, layering flags, the table, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.enrich.mmdbwrite import write_mmdb

WHOIS = Path(__file__).parent / "fixtures" / "whois"
KEYS = {"ip", "asn", "as_name", "country", "prefix", "source", "status", "allocation"}


def test_json_on_the_real_database(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    db = shared("asn/iptoasn-asn-2026-09-16.mmdb")
    ips = tmp_path / "ips.txt"
    ips.write_text(
        "# peers\n5.133.76.1\n91.199.147.152:443\n\nnot-an-ip\n2a09:7c40::1, seen twice\n86.104.72.16  # Stark 2024\n"
    )
    res = CliRunner().invoke(
        app,
        [
            "enrich",
            "--file",
            str(ips),
            "--asn-db",
            str(db),
            "--json",
            "--cache-dir",
            str(tmp_path_factory.getbasetemp() / "enrich-cache"),
        ],
        env={"COLUMNS": "1000"},
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert all(KEYS <= set(d) for d in data)
    assert [(d["ip"], d["asn"], d["status"]) for d in data] == [
        ("5.133.76.1", 12494, "routed"),
        ("2a09:7c40::1", 44477, "routed"),
        ("86.104.72.16", None, "unrouted"),
    ]
    assert "line 3" in res.stderr and "line 5" in res.stderr  # ip:port and garbage reported with where


def test_table_with_whois_and_layering(tmp_path: Path) -> None:
    old = tmp_path / "old.tsv"
    old.write_text("198.18.5.0\t198.18.5.255\t64501\tRU\tOLD-CUSTOMER-AS\n")
    cur = write_mmdb(
        tmp_path / "cur.mmdb",
        [("198.18.0.0/15", {"autonomous_system_number": 64500, "autonomous_system_organization": "EXAMPLE-HOSTING"})],
    )
    args = [
        "enrich",
        "198.18.5.7",
        "198.18.9.1",
        "--asn-db",
        str(old),
        "--asn-db",
        str(cur),
        "--whois",
        str(WHOIS),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    res = CliRunner().invoke(app, [*args, "--json"])
    a, b = json.loads(res.stdout)
    assert (a["asn"], a["source"], b["asn"], b["source"]) == (64501, "old.tsv", 64500, "cur.mmdb")
    assert a["allocation"][1]["status"] == "SUB-ALLOCATED PA" and a["reseller"]["org_name"] == "Resale Servers LLC"
    res = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    for text in (
        "AS64501",
        "OLD-CUSTOMER-AS",
        "Resale Servers LLC",
        "abuse@resale-servers.test",
        "old.tsv",
        "cur.mmdb",
    ):
        assert text in res.stdout
    assert "source: cur.mmdb (mmdb" in res.stderr  # provenance on stderr


def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["enrich", "--asn-db", str(tmp_path / "missing.mmdb"), "1.2.3.4", "--cache-dir", str(tmp_path)]
    )
    assert res.exit_code == 2 and "missing.mmdb" in res.stderr
    res = CliRunner().invoke(app, ["enrich", "1.2.3.4"], env={"FLOWPIVOT_ASN_DB": ""})
    assert res.exit_code == 2 and "--asn-db" in res.stderr
    res = CliRunner().invoke(app, ["enrich", "--asn-db", str(tmp_path)])
    assert res.exit_code == 2 and "addresses" in res.stderr


def test_the_installed_command_reads_stdin(tmp_path: Path) -> None:
    db = write_mmdb(
        tmp_path / "a.mmdb",
        [("192.0.2.0/24", {"autonomous_system_number": 64500, "autonomous_system_organization": "X"})],
    )
    p = subprocess.run(
        [
            str(Path(sys.executable).parent / "flowpivot"),
            "enrich",
            "--file",
            "-",
            "--asn-db",
            str(db),
            "--json",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        input="192.0.2.1\n198.51.100.1\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert [(d["asn"], d["status"]) for d in json.loads(p.stdout)] == [(64500, "routed"), (None, "unrouted")]


def test_cache_dir_from_the_environment(tmp_path: Path) -> None:
    db = write_mmdb(tmp_path / "a.mmdb", [("192.0.2.0/24", {"autonomous_system_number": 64500})])
    res = CliRunner().invoke(
        app, ["enrich", "192.0.2.1", "--asn-db", str(db), "--json"], env={"FLOWPIVOT_CACHE_DIR": str(tmp_path / "env")}
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["asn"] == 64500
    assert list((tmp_path / "env").glob("asn-mmdb-*.npz"))

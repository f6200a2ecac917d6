"""`flowpivot ip`: an address's profile from the analyst's flows, checked against nfdump on the
same real file, and its hunt status against a real hunt result."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest
from conftest import need_tool, shared
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.enrich.special import special_purpose
from flowpivot.hunt import hunt
from flowpivot.ingest import ingest_paths
from flowpivot.profile import canonical_ip, flag_letters, profile
from flowpivot.store import Store

NFDUMP = "stratosphere/test1-malicious.nfdump"
ZEEK = "stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"
C2 = "147.32.82.62"  # the target of the 33-second SYN burst
SCANNER = "147.32.80.119"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ip") / "store"
    assert all(r.status == "ingested" for r in ingest_paths([shared(NFDUMP), shared(ZEEK)], Store(root)))
    return root


def _nfdump(expr: str) -> list[dict[str, str]]:
    text = subprocess.run(
        [need_tool("nfdump"), "-r", str(shared(NFDUMP)), "-o", "csv", expr], check=True, capture_output=True, text=True
    ).stdout
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r.get("ts") and r["ts"][:2] == "20"]
    return rows


@pytest.mark.parametrize("addr", [C2, SCANNER, "147.32.80.9"])
def test_activity_and_peers_match_nfdump(store: Path, addr: str) -> None:
    rows = _nfdump(f"host {addr}")
    (p,) = profile(store, [addr], since="2018-01-01", until="2018-01-13")
    a = p["activity"]
    assert a["flows"] == len(rows)
    assert a["packets"] == sum(int(r["ipkt"]) + int(r["opkt"]) for r in rows)
    assert a["bytes"] == sum(int(r["ibyt"]) + int(r["obyt"]) for r in rows)
    assert a["first_seen"][:19].replace("T", " ") == min(r["ts"] for r in rows)[:19]
    peers = {r["da"] if r["sa"] == addr else r["sa"] for r in rows}
    assert a["peers"] == p["peers_total"] == len(peers)
    assert {q["ip"] for q in p["peers"]} <= peers
    # the listed peers are the top ones by bytes, as nfdump counts them
    by_peer: dict[str, int] = {}
    for r in rows:
        other = r["da"] if r["sa"] == addr else r["sa"]
        by_peer[other] = by_peer.get(other, 0) + int(r["ibyt"]) + int(r["obyt"])
    assert [q["bytes"] for q in p["peers"]] == sorted(by_peer.values(), reverse=True)[: len(p["peers"])]


def test_session_state_flags_and_direction_of_the_burst(store: Path) -> None:
    (p,) = profile(store, [C2], since="2018-01-01", until="2018-01-13")
    q = next(q for q in p["peers"] if q["ip"] == SCANNER)
    # nfdump prints the scanner's records as ......S. and the answers as ...A.R..
    flags = {r["flg"] for r in _nfdump(f"src host {SCANNER} and dst host {C2}")}
    answers = {r["flg"] for r in _nfdump(f"src host {C2} and dst host {SCANNER}")}
    assert q["flags_in"] in flags or set(q["flags_in"]) >= set("".join(flags)) - {"."}
    assert q["session"] == "rejected" and q["direction"] == "in"
    assert q["rejected_flows"] > 0
    assert flag_letters(2) in flags and flag_letters(16 | 4) in answers
    assert q["ports"][0]["port"] == 902 and q["ports"][0]["side"] == "anchor"


def test_special_purpose_addresses_are_labelled(store: Path) -> None:
    (p,) = profile(store, ["192.168.1.107"])
    assert p["owner"]["special"] == {"range": "192.168.0.0/16", "name": "private-use", "rfc": "RFC 1918"}
    assert p["activity"] is not None and p["activity"]["flows"] > 0  # a host of the labelled Zeek log
    for ip, name in (("100.64.0.1", "shared"), ("2001:db8::1", "documentation"), ("198.51.100.7", "documentation"),
                     ("fe80::1", "link-local"), ("8.8.8.8", None)):  # fmt: skip
        sp = special_purpose(ip)
        assert (sp is None) if name is None else (sp is not None and name in sp["name"]), (ip, sp)


def test_hunt_status_comes_from_the_result(store: Path, tmp_path: Path) -> None:
    seeds = tmp_path / "s.txt"
    seeds.write_text(C2 + "\n")
    r = hunt(store, [seeds], since="2018-01-01")
    (p,) = profile(store, [SCANNER], result=r)
    roles = {x["role"] for x in p["hunt"]["roles"]}
    assert "probe" in roles  # the burst is a probe (issue 11), and the profile says so
    (s,) = profile(store, [C2], result=r)
    assert {x["role"] for x in s["hunt"]["roles"]} >= {"seed"}


def test_cli_text_json_and_refusals(store: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["ip", C2, "--store", str(store), "--json"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["format"] == "flowpivot-ip/1" and doc["ip"] == C2
    res = CliRunner().invoke(app, ["ip", C2, "--store", str(store)], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "rejected" in res.stdout and SCANNER in res.stdout
    res = CliRunner().invoke(app, ["ip", "fe80::6%eth0", "--store", str(store)])
    assert res.exit_code == 2 and "scope id" in res.output
    res = CliRunner().invoke(app, ["ip", "203.0.113.9", "--store", str(store)])
    assert res.exit_code == 3  # nothing to show: no flow has it
    assert canonical_ip("::ffff:10.0.0.4") == "10.0.0.4"


def test_enrich_takes_the_store(store: Path) -> None:
    mmdb = next(shared("asn").glob("*.mmdb"))
    res = CliRunner().invoke(
        app, ["enrich", C2, "192.168.1.107", "--asn-db", str(mmdb), "--store", str(store), "--json"]
    )
    assert res.exit_code == 0, res.output
    c2, lan = json.loads(res.stdout)
    assert c2["flows"] == len(_nfdump(f"host {C2}")) and c2["first_seen"].startswith("2018-01-12")
    assert lan["special"]["name"] == "private-use" and lan["flows"] > 0

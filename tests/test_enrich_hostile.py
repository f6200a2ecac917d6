"""Hostile whois and database strings stay data: HTML, control characters, invalid UTF-8 and a
1 MB line neither crash the readers nor get interpreted (by the parser, JSON or the terminal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.enrich import Enricher, WhoisIndex
from flowpivot.enrich.mmdbwrite import write_mmdb
from flowpivot.enrich.textio import MAX_LINE

HTML = '<script>alert("owned")</script><img src=x onerror=alert(1)>'
CONTROL = "bell\x07 esc\x1b[31mRED\x1b[0m nul\x00 del\x7f"
MARKUP = "[bold red]not markup[/] [link=http://evil.test]x[/link]"
BIG = "A" * (1 << 20)
INVALID = b"caf\xe9 \xff\xfe \xc3("  # Latin-1 bytes and broken UTF-8 sequences


def _hostile_dump(path: Path) -> Path:
    lines = [
        b"inetnum:        198.51.100.0 - 198.51.100.255",
        b"netname:        " + HTML.encode(),
        b"descr:          " + CONTROL.encode(),
        b"descr:          second descr is ignored",
        b"country:        " + INVALID,
        b"org:            ORG-EVIL1-TEST",
        b"status:         SUB-ALLOCATED PA",
        b"remarks:        " + BIG.encode(),
        b"source:         TEST",
        b"",
        b"organisation:   ORG-EVIL1-TEST",
        b"org-name:       " + MARKUP.encode(),
        b"abuse-c:        EVIL-AR",
        b"",
        b"role:           evil",
        b"nic-hdl:        EVIL-AR",
        b"abuse-mailbox:  " + HTML.encode() + b"@evil.test",
        b"",
        b"garbage line without a colon " + bytes(range(1, 32)).replace(b"\n", b"").replace(b"\r", b""),
        b"",
        b"remarks:        " + b"B" * (MAX_LINE + 10),  # over the line limit: reported, skipped
        b"",
        b"inetnum:        198.51.100.128 - 198.51.100.191",
        b"netname:        AFTER-THE-STORM",
        b"descr:          " + BIG.encode(),
        b"status:         ASSIGNED PA",
        b"source:         TEST",
        b"",
    ]
    path.write_bytes(b"\n".join(lines))
    return path


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    dump = _hostile_dump(tmp_path / "evil.db")
    tsv = tmp_path / "evil.tsv"
    tsv.write_bytes(
        b"198.51.100.0\t198.51.100.255\t64511\tZZ\t" + HTML.encode() + b"\n"
        b"203.0.113.0\t203.0.113.127\t64512\t\x1b[31m\t" + CONTROL.encode().replace(b"\t", b" ") + b"\n"
        b"203.0.113.128\t203.0.113.255\t64513\tXX\t" + INVALID + b"\n"
        b"192.0.2.0\t192.0.2.255\t64514\tYY\t" + BIG.encode() + b"\n"
        b"192.0.2.0\t192.0.2.255\t" + b"9" * 200 + b"\n"
    )
    return dump, tsv


def test_whois_strings_are_kept_verbatim(hostile: tuple[Path, Path], tmp_path: Path) -> None:
    idx = WhoisIndex.open(hostile[0], cache_dir=tmp_path / "c")
    outer = idx.chain("198.51.100.7")
    assert len(outer) == 1
    link = outer[0]
    assert link["netname"] == HTML
    assert link["descr"] == CONTROL.strip()
    assert link["country"] == INVALID.decode("latin-1")  # every byte kept, nothing dropped or replaced
    assert link["org_name"] == MARKUP
    assert link["abuse_mailbox"] == HTML + "@evil.test"
    inner = idx.chain("198.51.100.130")
    assert [x["netname"] for x in inner] == ["AFTER-THE-STORM", HTML]  # the object after the garbage is read
    assert inner[0]["descr"] == BIG and len(inner[0]["descr"]) == 1 << 20
    reasons = " | ".join(p.reason for p in idx.problems)
    assert "not an `attribute: value` line" in reasons and f"longer than {MAX_LINE}" in reasons
    back = json.loads(json.dumps(outer))
    assert back == outer


def test_database_strings_are_kept_verbatim(hostile: tuple[Path, Path], tmp_path: Path) -> None:
    mmdb = write_mmdb(
        tmp_path / "evil.mmdb",
        [
            (
                "198.18.0.0/16",
                {
                    "autonomous_system_number": 64600,
                    "autonomous_system_organization": MARKUP + CONTROL,
                    "country": {"iso_code": HTML},
                },
            ),
            ("198.19.0.0/16", {"autonomous_system_number": "not a number", "autonomous_system_organization": 12345}),
            ("198.20.0.0/16", {"autonomous_system_number": -5, "country": "not a dict"}),
        ],
    )
    enr = Enricher.open([hostile[1], mmdb], cache_dir=tmp_path / "c")
    a = {
        x["ip"]: x
        for x in enr.lookup(
            ["198.51.100.1", "203.0.113.1", "203.0.113.200", "192.0.2.1", "198.18.0.1", "198.19.0.1", "198.20.0.1"]
        )
    }
    assert a["198.51.100.1"]["as_name"] == HTML and a["198.51.100.1"]["country"] is None  # ZZ = unknown
    assert (
        a["203.0.113.1"]["as_name"] == CONTROL.replace("\t", " ").strip() and a["203.0.113.1"]["country"] == "\x1b[31m"
    )
    assert a["203.0.113.200"]["as_name"] == INVALID.decode("latin-1")
    assert a["192.0.2.1"]["as_name"] == BIG
    assert a["198.18.0.1"]["as_name"] == MARKUP + CONTROL and a["198.18.0.1"]["country"] == HTML
    assert a["198.19.0.1"]["status"] == "unrouted"  # an ASN that is not a number is no ASN
    assert a["198.20.0.1"]["status"] == "unrouted"
    assert [p.where for p in enr.problems] == ["line 5"]  # the 200-digit AS number


def test_cli_prints_hostile_strings_as_data(hostile: tuple[Path, Path], tmp_path: Path) -> None:
    args = [
        "enrich",
        "198.51.100.7",
        "203.0.113.1",
        "--asn-db",
        str(hostile[1]),
        "--whois",
        str(hostile[0]),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data[0]["allocation"][0]["netname"] == HTML and data[0]["reseller"]["org_name"] == MARKUP
    assert data[1]["as_name"] == CONTROL.replace("\t", " ").strip()
    res = CliRunner().invoke(app, args, env={"COLUMNS": "2000"})
    assert res.exit_code == 0, res.output
    assert (
        "\x1b" not in res.stdout and "\x07" not in res.stdout and "\x00" not in res.stdout
    )  # escaped, not sent to the terminal
    assert MARKUP in res.stdout and HTML in res.stdout  # shown as text, not taken as markup
    assert "\\x1b[31mRED" in res.stdout  # the escape sequence shown escaped

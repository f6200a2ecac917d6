"""Allocation chains from RPSL whois dumps (RIPE split-dump format), the reseller and abuse mailbox."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from flowpivot.enrich import Enricher, WhoisIndex, parse_objects
from flowpivot.enrich import rpsl as rpsl_mod
from flowpivot.enrich.mmdbwrite import write_mmdb
from flowpivot.errors import EnrichError

FIXTURES = Path(__file__).parent / "fixtures" / "whois"


@pytest.fixture
def index(tmp_path: Path) -> WhoisIndex:
    return WhoisIndex.open(FIXTURES, cache_dir=tmp_path)


def test_three_level_chain_in_order_with_reseller_and_abuse(index: WhoisIndex) -> None:
    chain = index.chain("198.18.5.7")
    assert [(c["range"], c["status"], c["netname"], c["org"], c["org_name"]) for c in chain] == [
        ("198.18.5.0 - 198.18.5.255", "ASSIGNED PA", "CUSTOMER-VPS-5", "ORG-CSC3-RIPE", "Customer Shell Co"),
        ("198.18.4.0 - 198.18.7.255", "SUB-ALLOCATED PA", "RESALE-SERVERS-NET", "ORG-RSL2-RIPE", "Resale Servers LLC"),
        ("198.18.0.0 - 198.19.255.255", "ALLOCATED PA", "EXAMPLE-HOSTING-NET", "ORG-EHL1-RIPE", "Example Hosting Ltd"),
    ]
    assert [c["country"] for c in chain] == ["RU", "NL", "GB"]
    # abuse-c on the inetnum (reseller) and through the organisation (hosting company); none for the customer.
    assert [c["abuse_mailbox"] for c in chain] == [None, "abuse@resale-servers.test", "abuse@example-hosting.test"]
    assert chain[1]["descr"] == "Resale Servers LLC virtual servers, resold"  # continuation line joined
    assert chain[1]["source"] == "whois:RIPE"  # "# Filtered" comment dropped
    assert {c["source"] for c in chain} == {"whois:RIPE"}


def test_enricher_names_the_reseller(tmp_path: Path) -> None:
    db = write_mmdb(
        tmp_path / "asn.mmdb",
        [("198.18.0.0/15", {"autonomous_system_number": 64500, "autonomous_system_organization": "EXAMPLE-HOSTING"})],
    )
    enr = Enricher.open([db], FIXTURES, cache_dir=tmp_path)
    cust, sibling, direct, outside, v6 = enr.lookup(
        ["198.18.5.7", "198.18.6.1", "198.18.9.9", "192.0.2.1", "2001:db8:100:5::1"]
    )
    assert cust["reseller"] == {
        "org": "ORG-RSL2-RIPE",
        "org_name": "Resale Servers LLC",
        "netname": "RESALE-SERVERS-NET",
        "range": "198.18.4.0 - 198.18.7.255",
    }
    assert cust["abuse_mailbox"] == "abuse@resale-servers.test"  # most specific link that has one
    assert cust["asn"] == 64500 and [c["status"] for c in cust["allocation"]] == [
        "ASSIGNED PA",
        "SUB-ALLOCATED PA",
        "ALLOCATED PA",
    ]
    assert sibling["reseller"]["org_name"] == "Resale Servers LLC" and sibling["allocation"][0]["org"] is None
    assert direct["reseller"] is None and direct["abuse_mailbox"] == "abuse@example-hosting.test"
    assert outside["allocation"] == [] and outside["reseller"] is None and outside["status"] == "unrouted"
    assert enr.lookup(["::ffff:198.18.5.7"])[0]["allocation"] == cust["allocation"]  # IPv4-mapped
    assert [c["range"] for c in v6["allocation"]] == ["2001:db8:100:5::/64", "2001:db8:100::/40", "2001:db8::/32"]
    assert v6["reseller"]["org"] == "ORG-RSL2-RIPE"  # ALLOCATED-BY-LIR is the IPv6 sub-allocation
    assert any(s["kind"] == "rpsl" for s in enr.sources)


def test_gzip_dumps_and_the_index_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    for f in FIXTURES.glob("ripe.db.*"):
        with open(f, "rb") as src, gzip.open(dumps / (f.name + ".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    first = WhoisIndex.open(dumps, cache_dir=tmp_path / "c")
    assert first.meta["objects.inetnum"] == "6" and first.meta["objects.role"] == "2"

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("index rebuilt")

    monkeypatch.setattr(rpsl_mod, "build_index", boom)
    again = WhoisIndex.open(dumps, cache_dir=tmp_path / "c")
    assert again.path == first.path and again.chain("198.18.5.7") == first.chain("198.18.5.7")
    # The index file itself can be given.
    assert WhoisIndex.open(first.path).chain("2001:db8:100:6::1")[0]["netname"] == "RESALE-SERVERS-V6"


def test_whole_dump_with_classes_mixed_and_objects_we_do_not_need(tmp_path: Path) -> None:
    text = "".join(f.read_text() + "\n" for f in sorted(FIXTURES.glob("ripe.db.*")))
    text += "\nroute:          198.18.0.0/15\norigin:         AS64500\nsource:         RIPE\n"
    text += "\ninetnum:        198.18.5.0 - 198.18.5.255\nnetname:        DUPLICATE\nstatus:         ASSIGNED PA\nsource:         RIPE\n"
    text += "\ninetnum:        not a range\nnetname:        BROKEN\n"
    text += (
        "\ninetnum:        0.0.0.0 - 255.255.255.255\nnetname:        IANA-BLK\nstatus:         ALLOCATED UNSPECIFIED\n"
    )
    text += "\ninet6num:       ::/0\nnetname:        ROOT\nstatus:         ALLOCATED-BY-RIR\n"
    dump = tmp_path / "ripe.db"
    dump.write_text(text)
    idx = WhoisIndex.open(dump, cache_dir=tmp_path)
    assert [c["netname"] for c in idx.chain("198.18.5.7")] == [
        "CUSTOMER-VPS-5",
        "RESALE-SERVERS-NET",
        "EXAMPLE-HOSTING-NET",
    ]
    assert idx.meta["duplicates"] == "1"
    assert idx.meta["objects.whole-space placeholders"] == "2"  # IANA-BLK and ROOT hold nothing: not in chains
    assert idx.chain("192.0.2.1") == [] and [c["netname"] for c in idx.chain("2001:db8::1")] == ["EXAMPLE-HOSTING-V6"]
    assert [(p.where, p.reason) for p in idx.problems] == [
        (f"line {text[: text.index('not a range')].count(chr(10)) + 1}", "inetnum value is not an address range")
    ]


def test_parse_objects_streams_continuations_and_skips_comments(tmp_path: Path) -> None:
    f = tmp_path / "x.db"
    f.write_bytes(
        b"% comment\n# comment\n\ninetnum: 10.0.0.0 - 10.0.0.255\ndescr: a\n+ b\n\tc\nnetname: N # note\n\n\n\nrole: R\nnic-hdl: R1\n"
    )
    problems: list = []
    objs = list(parse_objects(f, problems))
    assert [(o.cls, o.line) for o in objs] == [("inetnum", 4), ("role", 12)]
    assert objs[0].first("descr") == "a b c" and objs[0].first("netname") == "N # note"
    assert problems == []


def test_missing_whois_input_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EnrichError, match="no such"):
        WhoisIndex.open(tmp_path / "nope", cache_dir=tmp_path)
    with pytest.raises(EnrichError, match="no whois dump files"):
        WhoisIndex.open(tmp_path, cache_dir=tmp_path / "c")


def test_truncated_gzip_dump_keeps_what_came_before(tmp_path: Path) -> None:
    text = (FIXTURES / "ripe.db.inetnum").read_bytes() * 1 + b"\n" + b"remarks: padding\n" * 20000
    whole = gzip.compress(text)
    cut = tmp_path / "ripe.db.inetnum.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    idx = WhoisIndex.open(cut, cache_dir=tmp_path)
    assert [c["netname"] for c in idx.chain("198.18.5.7")] == [
        "CUSTOMER-VPS-5",
        "RESALE-SERVERS-NET",
        "EXAMPLE-HOSTING-NET",
    ]
    assert any("truncated or corrupt" in p.reason for p in idx.problems)

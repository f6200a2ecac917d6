"""ASN/country enrichment: the real IPtoASN database, vectorised answers against maxminddb.get,
ip2asn TSV, pfx2as + as2org, GeoLite2 schemas, layering and the cache."""

from __future__ import annotations

import bisect
import gzip
import ipaddress
import os
import socket
import struct
from pathlib import Path

import maxminddb
import numpy as np
import pyarrow as pa
import pytest
from conftest import shared

from flowpivot.enrich import Enricher, open_source
from flowpivot.enrich import asn as asn_mod
from flowpivot.enrich.mmdbwrite import write_mmdb
from flowpivot.errors import EnrichError

MMDB = "asn/iptoasn-asn-2026-09-16.mmdb"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the test session (test_enrich_cli.py uses it too): the real database is flattened once."""
    return tmp_path_factory.getbasetemp() / "enrich-cache"


@pytest.fixture(scope="module")
def real(cache: Path) -> Enricher:
    return Enricher.open([shared(MMDB)], cache_dir=cache)


@pytest.fixture(scope="module")
def reader() -> maxminddb.Reader:
    return maxminddb.open_database(str(shared(MMDB)))


def test_real_database_knows_the_report_networks(real: Enricher) -> None:
    post, smartape, stark6, stark4 = real.lookup(["5.133.76.1", "91.199.147.152", "2a09:7c40::1", "86.104.72.16"])
    assert (post["asn"], post["as_name"], post["status"]) == (12494, "ASN-POSTLTD", "routed")
    assert (smartape["asn"], smartape["as_name"]) == (62212, "EE - SmartApe OU")
    assert stark6["asn"] == 44477 and stark6["status"] == "routed"
    # Stark's 2024 IPv4 space is no longer announced in the 2026 database: unrouted, not guessed.
    assert (
        stark4["status"] == "unrouted"
        and stark4["asn"] is None
        and stark4["as_name"] is None
        and stark4["prefix"] is None
    )
    for a in (post, smartape, stark6):
        assert a["source"] == "iptoasn-asn-2026-09-16.mmdb"
        assert a["country"] is None  # this database has no country
    assert post["prefix"] == "5.133.76.0/22"  # maxminddb.get_with_prefix_len says /22 as well
    mapped = real.lookup(["::ffff:5.133.76.1"])[0]
    assert (mapped["ip"], mapped["asn"]) == (
        str(ipaddress.ip_address("::ffff:5.133.76.1")),
        12494,
    )  # looked up as the IPv4 address it carries
    src = real.sources[0]
    assert src["kind"] == "mmdb" and src["build_date"] == "2026-09-16" and src["entries"] > 700_000


def test_prefix_lengths_match_maxminddb(real: Enricher, reader: maxminddb.Reader) -> None:
    rng = np.random.default_rng(7)
    addrs = rng.integers(0, 1 << 32, 5000, dtype=np.uint64).astype(np.uint32)
    ans = real.lookup([str(ipaddress.IPv4Address(int(a))) for a in addrs])
    checked = 0
    for a in ans:
        rec, plen = reader.get_with_prefix_len(a["ip"])
        if rec:
            assert a["prefix"] == str(ipaddress.ip_network(f"{a['ip']}/{plen}", strict=False)), a
            checked += 1
        else:
            assert a["status"] == "unrouted"
    assert checked > 1000


def test_vectorised_ipv4_equals_maxminddb_get_on_1m_random(real: Enricher, reader: maxminddb.Reader) -> None:
    rng = np.random.default_rng(2026)
    addrs = rng.integers(0, 1 << 32, 1_000_000, dtype=np.uint64).astype(np.uint32)
    cols = real.lookup_v4(addrs)
    get = reader.get
    pack = struct.Struct(">I").pack
    ntoa = socket.inet_ntoa
    recs = [get(ntoa(pack(a))) for a in addrs.tolist()]
    exp_asn = np.fromiter(((r or {}).get("autonomous_system_number", 0) for r in recs), np.uint32, len(recs))
    assert np.array_equal(cols["asn"], exp_asn)
    names = real.as_names
    got_names = [names[i] if i >= 0 else None for i in cols["name_index"].tolist()]
    exp_names = [(r or {}).get("autonomous_system_organization") for r in recs]
    assert got_names == exp_names
    assert (exp_asn > 0).sum() > 300_000  # a real share of the space is routed


def test_vectorised_ipv6_equals_maxminddb_get_on_100k_random(real: Enricher, reader: maxminddb.Reader) -> None:
    rng = np.random.default_rng(6)
    n = 100_000
    hi = rng.integers(0, 1 << 63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n, dtype=np.uint64)
    lo = rng.integers(0, 1 << 63, n, dtype=np.uint64) * np.uint64(2)
    # Uniform 128-bit addresses are almost never routed: aim half at 2000::/3 (global unicast) and
    # a quarter into the /32s that hold the networks the table starts (low bits random).
    hi[: n // 2] = (hi[: n // 2] >> np.uint64(3)) | np.uint64(0x2000 << 48)
    starts = real._v6.start_hi
    pick = starts[rng.integers(0, len(starts), n // 4)]
    hi[n // 2 : 3 * n // 4] = (pick & np.uint64(0xFFFFFFFF00000000)) | (hi[n // 2 : 3 * n // 4] & np.uint64(0xFFFFFFFF))
    cols = real.lookup_v6(hi, lo)
    get = reader.get
    recs = [get(ipaddress.IPv6Address((h << 64) | lw)) for h, lw in zip(hi.tolist(), lo.tolist(), strict=True)]
    exp_asn = np.fromiter(((r or {}).get("autonomous_system_number", 0) for r in recs), np.uint32, n)
    assert np.array_equal(cols["asn"], exp_asn)
    got_names = [real.as_names[i] if i >= 0 else None for i in cols["name_index"].tolist()]
    assert got_names == [(r or {}).get("autonomous_system_organization") for r in recs]
    assert (exp_asn > 0).sum() > 1000
    # The same answers through the store's 16-byte layout.
    b = np.empty((n, 2), ">u8")
    b[:, 0], b[:, 1] = hi, lo
    assert np.array_equal(real.lookup_v6_bytes(b.view("S16").ravel())["asn"], exp_asn)
    col = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(b.tobytes())]).slice(
        10
    )  # with an offset
    assert np.array_equal(real.lookup_v6_bytes(col)["asn"], exp_asn[10:])


def test_arrow_table_has_dictionary_names(real: Enricher) -> None:
    t = real.table_v4(
        np.array([int(ipaddress.IPv4Address("5.133.76.1")), int(ipaddress.IPv4Address("86.104.72.16"))], np.uint32)
    )
    rows = t.to_pylist()
    assert (
        rows[0]["asn"] == 12494
        and rows[0]["as_name"] == "ASN-POSTLTD"
        and rows[0]["source"] == "iptoasn-asn-2026-09-16.mmdb"
    )
    assert rows[1] == {"asn": None, "as_name": None, "country": None, "source": None}


def test_second_open_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = write_mmdb(
        tmp_path / "a.mmdb",
        [("192.0.2.0/24", {"autonomous_system_number": 64500, "autonomous_system_organization": "ONE"})],
    )
    first = Enricher.open([db], cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").glob("asn-mmdb-*.npz"))

    def boom(_p: Path) -> None:
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(asn_mod, "read_mmdb", boom)
    second = Enricher.open([db], cache_dir=tmp_path / "c")
    assert second.lookup(["192.0.2.9"])[0]["asn"] == first.lookup(["192.0.2.9"])[0]["asn"] == 64500
    # A changed file is not answered from the old cache.
    monkeypatch.undo()
    write_mmdb(db, [("192.0.2.0/24", {"autonomous_system_number": 64501, "autonomous_system_organization": "TWO"})])
    os.utime(db, ns=(1, 1))
    assert Enricher.open([db], cache_dir=tmp_path / "c").lookup(["192.0.2.9"])[0]["asn"] == 64501


# ----------------------------------------------------------------------------- ip2asn TSV

IP2ASN_ROWS = [
    ("1.0.0.0", "1.0.0.255", 13335, "US", "CLOUDFLARENET"),
    ("1.0.1.0", "1.0.3.255", 0, "None", "Not routed"),
    ("5.133.76.0", "5.133.79.255", 12494, "RU", "ASN-POSTLTD"),
    ("86.104.72.0", "86.104.75.255", 44477, "GB", "STARK-INDUSTRIES"),
    ("91.199.147.0", "91.199.147.255", 62212, "EE", "EE - SmartApe OU"),
    ("223.255.255.0", "255.255.255.255", 64496, "ZZ", "END-OF-SPACE"),
    ("2a09:7c40::", "2a09:7c41:ffff:ffff:ffff:ffff:ffff:ffff", 44477, "GB", "THE-HOSTING"),
    ("2001:db8::", "2001:db8::ffff", 64497, "NL", "SMALL-V6"),
]


def _write_ip2asn(
    path: Path, rows: list[tuple[str, str, int, str, str]], gz: bool = False, header: bool = False
) -> Path:
    text = "range_start\trange_end\tAS_number\tcountry_code\tAS_description\n" if header else ""
    text += "".join(f"{a}\t{b}\t{asn}\t{cc}\t{d}\n" for a, b, asn, cc, d in rows)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_ip2asn_tsv_against_a_plain_range_search(tmp_path: Path, gz: bool) -> None:
    tsv = _write_ip2asn(tmp_path / ("ip2asn.tsv.gz" if gz else "ip2asn.tsv"), IP2ASN_ROWS, gz, header=gz)
    enr = Enricher.open([tsv], cache_dir=tmp_path / "c")
    assert enr.problems == []
    ranges = sorted(
        (int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b)), asn, cc, d, ":" in a)
        for a, b, asn, cc, d in IP2ASN_ROWS
    )
    starts = [r[0] for r in ranges]

    def oracle(ip: str) -> tuple[int | None, str | None]:
        x = ipaddress.ip_address(ip)
        i = bisect.bisect_right(starts, int(x)) - 1
        if i >= 0 and ranges[i][5] == (x.version == 6) and ranges[i][1] >= int(x) and ranges[i][2]:
            return ranges[i][2], ranges[i][3]
        return None, None

    rng = np.random.default_rng(3)
    probes = [str(ipaddress.IPv4Address(int(v))) for v in rng.integers(0, 1 << 32, 2000)]
    for a, b, *_ in IP2ASN_ROWS:  # every boundary and its neighbours
        for v in (
            int(ipaddress.ip_address(a)) - 1,
            int(ipaddress.ip_address(a)),
            int(ipaddress.ip_address(b)),
            int(ipaddress.ip_address(b)) + 1,
        ):
            if 0 <= v < (1 << 128 if ":" in a else 1 << 32):
                probes.append(str(ipaddress.ip_address(v) if ":" not in a else ipaddress.IPv6Address(v)))
    ans = enr.lookup(probes)
    for p, a in zip(probes, ans, strict=True):
        asn, cc = oracle(p)
        assert a["asn"] == asn, p
        assert a["status"] == ("routed" if asn else "unrouted")
        if asn:
            assert a["country"] == (None if cc == "ZZ" else cc) and a["source"] == tsv.name
    one = enr.lookup(["1.0.2.9", "5.133.77.1", "2a09:7c41::5"])
    assert one[0]["status"] == "unrouted"  # AS 0 / Not routed
    assert one[1]["prefix"] == "5.133.76.0/22" and one[1]["as_name"] == "ASN-POSTLTD" and one[1]["country"] == "RU"
    assert one[2]["prefix"] == "2a09:7c40::/31"


def test_ip2asn_bad_rows_are_reported_and_the_rest_kept(tmp_path: Path) -> None:
    tsv = tmp_path / "bad.tsv"
    tsv.write_bytes(
        b"1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n"
        b"not-an-ip\t1.2.3.4\t1\tUS\tX\n"
        b"1.0.0.128\t1.0.1.10\t99\tUS\tOVERLAPS\n"
        b"9.9.9.0\t9.9.9.255\tAS19281\tUS\tQUAD9\n"
        b"8.8.8.8\t8.8.8.0\t15169\tUS\tREVERSED\n"
        b"7.7.7.0\n"
        b"1.2.3\x00.4\t1.2.3.5\t1\tUS\tNUL\n"
    )
    enr = Enricher.open([tsv], cache_dir=tmp_path / "c")
    a = enr.lookup(["1.0.0.200", "9.9.9.9", "8.8.8.8"])
    assert [x["asn"] for x in a] == [13335, 19281, None]
    where = {(p.where, p.reason.split()[0]) for p in enr.problems}
    assert {w for w, _ in where} == {"line 2", "line 3", "line 5", "line 6", "line 7"}


def test_layering_first_database_wins_and_each_answer_names_its_source(tmp_path: Path) -> None:
    historical = _write_ip2asn(
        tmp_path / "ip2asn-2024.tsv",
        [
            ("86.104.72.0", "86.104.75.255", 44477, "GB", "STARK-INDUSTRIES"),
            ("5.133.76.0", "5.133.76.255", 64999, "XX", "OLD-HOLDER"),
        ],
    )
    current = write_mmdb(
        tmp_path / "current.mmdb",
        [
            ("5.133.76.0/22", {"autonomous_system_number": 12494, "autonomous_system_organization": "ASN-POSTLTD"}),
            (
                "91.199.147.0/24",
                {"autonomous_system_number": 62212, "autonomous_system_organization": "EE - SmartApe OU"},
            ),
        ],
    )
    country = write_mmdb(
        tmp_path / "GeoLite2-Country.mmdb",
        [
            (
                "91.199.147.0/24",
                {"country": {"iso_code": "EE", "names": {"en": "Estonia"}}, "continent": {"code": "EU"}},
            ),
            ("86.104.72.0/22", {"registered_country": {"iso_code": "GB"}}),
        ],
        database_type="GeoLite2-Country",
    )
    enr = Enricher.open([historical, current, country], cache_dir=tmp_path / "c")
    stark, post_old, post_new, smart, none = enr.lookup(
        ["86.104.72.16", "5.133.76.9", "5.133.77.9", "91.199.147.152", "192.0.2.1"]
    )
    assert (stark["asn"], stark["source"], stark["country"], stark["country_source"]) == (
        44477,
        "ip2asn-2024.tsv",
        "GB",
        "ip2asn-2024.tsv",
    )
    assert (post_old["asn"], post_old["source"]) == (64999, "ip2asn-2024.tsv")  # historical wins where it covers
    assert (post_new["asn"], post_new["source"], post_new["prefix"]) == (12494, "current.mmdb", "5.133.76.0/22")
    assert (smart["asn"], smart["country"], smart["country_source"]) == (62212, "EE", "GeoLite2-Country.mmdb")
    assert none["status"] == "unrouted" and none["source"] == "ip2asn-2024.tsv+current.mmdb+GeoLite2-Country.mmdb"
    assert [s["name"] for s in enr.sources] == ["ip2asn-2024.tsv", "current.mmdb", "GeoLite2-Country.mmdb"]
    # A second open reads the merged arrays from the cache and answers the same.
    assert list((tmp_path / "c").glob("asn-merged-*.npz"))
    probes = ["86.104.72.16", "5.133.76.9", "5.133.77.9", "91.199.147.152", "192.0.2.1", "86.104.75.255", "86.104.76.0"]
    again = Enricher.open([historical, current, country], cache_dir=tmp_path / "c")
    assert again.lookup(probes) == enr.lookup(probes)
    # Reversed order: the current database now wins on 5.133.76.0/24.
    rev = Enricher.open([current, historical], cache_dir=tmp_path / "c")
    assert rev.lookup(["5.133.76.9"])[0]["asn"] == 12494


def test_geolite2_city_and_asn_schemas_match_maxminddb(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    nets_asn, nets_city = [], []
    for i, v in enumerate(rng.integers(0, 1 << 32, 300)):
        plen = int(rng.integers(12, 29))
        net = ipaddress.IPv4Network((int(v) >> (32 - plen) << (32 - plen), plen))
        nets_asn.append(
            (str(net), {"autonomous_system_number": 64512 + i, "autonomous_system_organization": f"ORG {i}"})
        )
        cc = ["EE", "RU", "GB", "NL", "DE"][i % 5]
        nets_city.append(
            (
                str(net),
                {"city": {"names": {"en": "Somewhere"}}, "country": {"iso_code": cc}, "location": {"latitude": 1.5}},
            )
        )
    for i in range(50):
        net = ipaddress.IPv6Network((0x2A00 << 112 | int(rng.integers(0, 1 << 62)) << 50, 46 + i % 20), strict=False)
        nets_asn.append(
            (str(net), {"autonomous_system_number": 4200000000 + i, "autonomous_system_organization": f"V6 ORG {i}"})
        )
        nets_city.append((str(net), {"registered_country": {"iso_code": "SE"}}))
    a_db = write_mmdb(tmp_path / "GeoLite2-ASN.mmdb", nets_asn, database_type="GeoLite2-ASN")
    c_db = write_mmdb(tmp_path / "GeoLite2-City.mmdb", nets_city, database_type="GeoLite2-City")
    enr = Enricher.open([a_db, c_db], cache_dir=tmp_path / "c")
    ra, rc = maxminddb.open_database(str(a_db)), maxminddb.open_database(str(c_db))
    probes = [str(ipaddress.ip_network(n).network_address + 1) for n, _ in nets_asn]
    probes += [str(ipaddress.IPv4Address(int(v))) for v in rng.integers(0, 1 << 32, 3000)]
    for a in enr.lookup(probes):
        ea, ec = ra.get(a["ip"]) or {}, rc.get(a["ip"]) or {}
        assert a["asn"] == ea.get("autonomous_system_number"), a
        assert a["as_name"] == ea.get("autonomous_system_organization")
        assert a["country"] == (ec.get("country") or ec.get("registered_country") or {}).get("iso_code")


# ----------------------------------------------------------------------------- pfx2as + as2org

AS2ORG = """# name: AS Org
# format:org_id|changed|org_name|country|source
ORG-POST|20240101|Post Ltd|RU|RIPE
ORG-SMART|20240101|SmartApe OU|EE|RIPE
# format:aut|changed|aut_name|org_id|opaque_id|source
12494|20240101|ASN-POSTLTD|ORG-POST|x|RIPE
62212|20240101|SMARTAPE|ORG-SMART|x|RIPE
"""


def test_pfx2as_most_specific_prefix_wins_with_as2org_names(tmp_path: Path) -> None:
    rows = [
        ("5.0.0.0", 8, "3356"),
        ("5.133.0.0", 16, "1299"),
        ("5.133.76.0", 22, "12494"),
        ("5.133.77.0", 24, "62212_12494"),
        ("91.199.147.0", 24, "62212,64500"),
        ("0.0.0.0", 0, "65000"),
        ("2a09:7c40::", 31, "44477"),
        ("2a09:7c40:1::", 48, "62212"),
    ]
    pfx = tmp_path / "routeviews-rv2-20240601-1200.pfx2as.gz"
    with gzip.open(pfx, "wt") as fh:
        fh.write("".join(f"{a}\t{n}\t{s}\n" for a, n, s in rows) + "garbage line\n")
    org = tmp_path / "20240101.as-org2info.txt"
    org.write_text(AS2ORG)
    enr = Enricher.open([pfx, org], cache_dir=tmp_path / "c")
    nets = [(ipaddress.ip_network(f"{a}/{n}"), int(s.replace(",", "_").split("_")[0])) for a, n, s in rows]

    def oracle(ip: str) -> int | None:
        x = ipaddress.ip_address(ip)
        best = max(
            (n for n in nets if n[0].version == x.version and x in n[0]), key=lambda n: n[0].prefixlen, default=None
        )
        return best[1] if best else None

    rng = np.random.default_rng(5)
    probes = [
        "5.133.77.1",
        "5.133.78.1",
        "5.133.1.1",
        "5.1.1.1",
        "91.199.147.152",
        "8.8.8.8",
        "2a09:7c40:1::1",
        "2a09:7c41::1",
        "2a0a::1",
    ]
    probes += [str(ipaddress.IPv4Address(int(v))) for v in rng.integers(0x05000000, 0x06000000, 500)]
    ans = enr.lookup(probes)
    assert [a["asn"] for a in ans] == [oracle(p) for p in probes]
    by = {a["ip"]: a for a in ans}
    assert by["5.133.78.1"]["as_name"] == "ASN-POSTLTD Post Ltd" and by["5.133.78.1"]["country"] == "RU"
    assert by["5.133.77.1"]["asn"] == 62212 and by["5.133.77.1"]["prefix"] == "5.133.77.0/24"
    assert by["2a0a::1"]["status"] == "unrouted"
    assert [p.where for p in enr.problems] == ["line 9"]
    with pytest.raises(EnrichError, match="as2org"):
        Enricher.open([org], cache_dir=tmp_path / "c")


# ----------------------------------------------------------------------------- bad databases


def test_unreadable_databases_raise_with_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(EnrichError, match="junk.bin"):
        Enricher.open([junk], cache_dir=tmp_path)
    with pytest.raises(EnrichError, match="no such"):
        Enricher.open([tmp_path / "missing.mmdb"], cache_dir=tmp_path)
    good = write_mmdb(tmp_path / "g.mmdb", [("192.0.2.0/24", {"autonomous_system_number": 1})]).read_bytes()
    trunc = tmp_path / "trunc.mmdb"
    trunc.write_bytes(good[:40] + good[-300:])  # tree cut, metadata kept
    with pytest.raises(EnrichError, match="trunc.mmdb"):
        open_source(trunc, cache_dir=tmp_path, use_cache=False)


def test_mmdb_whose_tree_loops_is_refused_quickly(tmp_path: Path) -> None:
    good = write_mmdb(
        tmp_path / "g.mmdb", [("192.0.2.0/24", {"autonomous_system_number": 1}), ("2001:db8::/32", {"x": 1})]
    )
    raw = bytearray(good.read_bytes())
    node_count = maxminddb.open_database(str(good)).metadata().node_count
    # Point every record of the tree back at the root: every path is infinite.
    for i in range(node_count):
        raw[i * 7 : i * 7 + 7] = b"\x00" * 7
    bad = tmp_path / "loop.mmdb"
    bad.write_bytes(bytes(raw))
    with pytest.raises(EnrichError, match="loop"):
        open_source(bad, cache_dir=tmp_path, use_cache=False)


def test_lenient_record_decoder_agrees_with_maxminddb(reader: maxminddb.Reader) -> None:
    """The fallback decoder (used only where maxminddb refuses a record) against maxminddb itself,
    on records of the real database, which uses pointers for shared strings."""
    path = shared(MMDB)
    m = reader.metadata()
    children, n = asn_mod._mmdb_children(path, reader)
    H, L, D, V = asn_mod._walk(children, n, 0, 128, path)
    data = np.nonzero(V > n)[0]
    raw = path.read_bytes()
    rng = np.random.default_rng(9)
    for i in rng.choice(data, 300, replace=False).tolist():
        addr = ipaddress.IPv6Address((int(H[i]) << 64) | int(L[i]))
        got = asn_mod._decode_leniently(raw, n, m.record_size, int(V[i]) - n - 16)
        assert got == reader.get(addr)


def test_mmdb_text_that_is_not_utf8_is_kept(tmp_path: Path) -> None:
    rec = {
        "autonomous_system_number": 64500,
        "autonomous_system_organization": "caf\udce9 \udcff<b>",
        "country": {"iso_code": "EE"},
        "extra": [1, 2.5, True, -3, 2**70, {"k": b"\x00\x01"}],
    }
    db = write_mmdb(
        tmp_path / "bad.mmdb", [("192.0.2.0/24", rec), ("198.51.100.0/24", {"autonomous_system_number": 64501})]
    )
    with pytest.raises(UnicodeDecodeError):
        maxminddb.open_database(str(db)).get("192.0.2.1")  # the library refuses it
    enr = Enricher.open([db], cache_dir=tmp_path)
    a, b = enr.lookup(["192.0.2.1", "198.51.100.1"])
    assert (a["asn"], a["as_name"], a["country"]) == (64500, b"caf\xe9 \xff<b>".decode("latin-1"), "EE")
    assert b["asn"] == 64501
    assert ["Latin-1" in p.reason for p in enr.problems] == [True]

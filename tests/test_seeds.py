"""Seed readers: text (defanged, CIDR, ip:port), CSV, STIX 2.1, MISP, maltrail; bad lines reported, never fatal."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest
from conftest import shared

from flowpivot.hunt import read_seeds, refang
from flowpivot.hunt.seeds import detect_format, parse_indicator

FIX = Path(__file__).parent / "fixtures" / "seeds"


def test_defanged_text_with_comments_cidrs_and_bad_lines() -> None:
    s = read_seeds(FIX / "defanged.txt")
    assert set(s.ips()) == {
        "86.104.72.16",
        "86.104.72.17",
        "1.2.3.4",
        "2001:db8::7",
        "185.162.131.25",
        "10.9.8.0",
        "10.9.8.1",
        "10.9.8.2",
        "10.9.8.3",
        "2001:db8::1",
        "198.51.100.9",
    }
    where = {p.where: p.reason for p in s.problems}
    # "this is not an address" is line 9 (first token 'this'), 300.1.2.3 is line 11
    assert set(where) == {"line 9", "line 11"}
    assert s.skipped == {"domain": 1}
    by_ip = {x.ip: x for x in s.seeds}
    assert by_ip["185.162.131.25"].port == 222
    assert by_ip["10.9.8.2"].network == "10.9.8.0/30"
    assert by_ip["86.104.72.17"].where == "line 3"


@pytest.mark.parametrize(
    ("text", "ip"),
    [
        ("86.104.72[.]16", "86.104.72.16"),
        ("86[.]104[.]72[.]16", "86.104.72.16"),
        ("86.104.72{.}16", "86.104.72.16"),
        ("86.104.72[dot]16", "86.104.72.16"),
        ("hxxp://1.2.3[.]4/x", "1.2.3.4"),
        ("hXXps://1.2.3.4:8443/a?b", "1.2.3.4"),
        ("2001:db8[:]:5", "2001:db8::5"),
        ("[2001:db8::5]:443", "2001:db8::5"),
        ("1.2.3.4/32", "1.2.3.4"),
    ],
)
def test_refang_forms(text: str, ip: str) -> None:
    found, why = parse_indicator(text)
    assert why is None, why
    assert [f[0] for f in found] == [ip]


def test_refang_keeps_plain_text() -> None:
    assert refang("1.2.3.4") == "1.2.3.4"


def test_cidr_too_large_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    p = tmp_path / "s.txt"
    p.write_text("10.0.0.0/8\n192.0.2.1\n")
    s = read_seeds(p)
    assert s.ips() == ["192.0.2.1"]
    assert s.problems[0].where == "line 1" and "more than" in s.problems[0].reason


def test_csv_with_ip_column() -> None:
    assert detect_format((FIX / "seeds.csv").read_text()) == "csv"
    s = read_seeds(FIX / "seeds.csv")
    assert set(s.ips()) == {"86.104.72.16", "5.133.76.10", "2a06:1280:ae01::10"}
    assert [(p.where, "not-an-ip" in p.reason) for p in s.problems] == [("line 4", True)]


def test_stix_bundle_built_with_stix2(tmp_path: Path) -> None:
    import stix2

    objs = [
        stix2.Indicator(
            pattern="[ipv4-addr:value = '86.104.72.16']", pattern_type="stix", valid_from="2024-04-01T00:00:00Z"
        ),
        stix2.Indicator(
            pattern="[ipv4-addr:value = '5.133.76.10' OR ipv6-addr:value = '2a06:1280:ae01::10']",
            pattern_type="stix",
            valid_from="2024-04-01T00:00:00Z",
        ),
        stix2.Indicator(
            pattern="[domain-name:value = 'evil.example']", pattern_type="stix", valid_from="2024-04-01T00:00:00Z"
        ),
        stix2.Indicator(
            pattern="[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '85.137.164.5']",
            pattern_type="stix",
            valid_from="2024-04-01T00:00:00Z",
        ),
        stix2.IPv4Address(value="91.199.147.56"),
        stix2.IPv6Address(value="2001:db8::99"),
    ]
    p = tmp_path / "bundle.json"
    p.write_text(stix2.Bundle(objects=objs).serialize())
    s = read_seeds(p)
    assert s.sources[0]["format"] == "stix"
    assert set(s.ips()) == {
        "86.104.72.16",
        "5.133.76.10",
        "2a06:1280:ae01::10",
        "85.137.164.5",
        "91.199.147.56",
        "2001:db8::99",
    }
    assert s.skipped == {"indicator-without-address": 1}


def test_misp_event_built_with_pymisp(tmp_path: Path) -> None:
    from pymisp import MISPEvent, MISPObject

    ev = MISPEvent()
    ev.info = "FIN7 infrastructure"
    ev.add_attribute("ip-src", "5.133.76.10")
    ev.add_attribute("ip-dst", "86.104.72.16")
    ev.add_attribute("ip-dst|port", "86.104.72.17|443")
    ev.add_attribute("ip-dst|port", "2a06:1280:ae01::10|8443")
    ev.add_attribute("domain", "evil.example")
    obj = MISPObject("ip-port")
    obj.add_attribute("ip", value="85.137.164.5", type="ip-dst")
    ev.add_object(obj)
    p = tmp_path / "event.json"
    p.write_text(ev.to_json())
    s = read_seeds(p)
    assert s.sources[0]["format"] == "misp"
    assert set(s.ips()) == {"5.133.76.10", "86.104.72.16", "86.104.72.17", "2a06:1280:ae01::10", "85.137.164.5"}
    by_ip = {x.ip: x for x in s.seeds}
    assert by_ip["86.104.72.17"].port == 443 and by_ip["2a06:1280:ae01::10"].port == 8443
    # also the API's {"response": [{"Event": ...}]} wrapping
    p2 = tmp_path / "response.json"
    p2.write_text(json.dumps({"response": [json.loads(ev.to_json())]}))
    assert set(read_seeds(p2).ips()) == set(s.ips())


def test_misp_bad_attribute_reported(tmp_path: Path) -> None:
    p = tmp_path / "e.json"
    p.write_text(
        json.dumps(
            {
                "Event": {
                    "Attribute": [{"type": "ip-dst", "value": "1.2.3.999"}, {"type": "ip-src", "value": "192.0.2.7"}]
                }
            }
        )
    )
    s = read_seeds(p)
    assert s.ips() == ["192.0.2.7"]
    assert s.problems and s.problems[0].where.startswith("event 0 attribute 0")


def test_maltrail_fin7_matches_an_independent_regex() -> None:
    path = shared("iocs/maltrail-fin7.txt")
    text = path.read_text()
    # oracle: every IPv4 in an ip:port line or as a URL host, by a plain regex
    expect = set()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+):\d+", line.strip()) or re.match(
            r"(?:https?://)?(\d+\.\d+\.\d+\.\d+)(?:[:/]|$)", line.strip()
        )
        if m:
            expect.add(str(ipaddress.ip_address(m.group(1))))
    port_ips = {ln.split(":")[0] for ln in text.splitlines() if re.fullmatch(r"\d+\.\d+\.\d+\.\d+:\d+", ln.strip())}
    assert len(port_ips) == 162  # the data README's count
    s = read_seeds(path)
    assert set(s.ips()) == expect
    assert port_ips <= set(s.ips())
    assert not s.problems
    assert s.skipped["domain"] > 1000


def test_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    from flowpivot.errors import InputError

    with pytest.raises(InputError, match="cannot read seed file"):
        read_seeds(tmp_path / "missing.txt")


def test_binary_garbage_never_crashes(tmp_path: Path) -> None:
    p = tmp_path / "junk.txt"
    p.write_bytes(bytes(range(256)) * 4 + b"\n192.0.2.55\n")
    s = read_seeds(p)
    assert "192.0.2.55" in s.ips()


# ---- seed sets ------------------------------------------------------------------------------------------


def test_named_sets_keep_every_row_and_count_distinct_addresses(tmp_path: Path) -> None:
    a = tmp_path / "fin7-a.txt"
    a.write_text("192.0.2.1\n192.0.2.2\n192.0.2.2:443\n")
    b = tmp_path / "fin7-b.csv"
    b.write_text("ip,comment\n192.0.2.3,x\n")
    c = tmp_path / "stark.txt"
    c.write_text("192.0.2.2\n198.51.100.7\n")
    s = read_seeds([f"fin7={a}", f"fin7={b}", c])
    assert s.ips() == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.7"]
    # the address in two sets is known to be in both; a repeat inside one set is one row
    assert s.sets_of("192.0.2.2") == ["fin7", "stark"]
    assert s.sets_of("198.51.100.7") == ["stark"] and s.sets_of("203.0.113.1") == []
    assert [(x.ip, x.set) for x in s.seeds if x.ip == "192.0.2.2"] == [("192.0.2.2", "fin7"), ("192.0.2.2", "stark")]
    assert s.sets() == {
        "fin7": {"files": [str(a), str(b)], "count": 3},
        "stark": {"files": [str(c)], "count": 2},
    }
    # the file each row came from is kept, and the first row stands for the address
    assert s.first()["192.0.2.2"].source == str(a) and s.first()["192.0.2.2"].where == "line 2"
    d = s.as_dict()
    assert d["count"] == 4 and d["sets"] == s.sets()
    assert [(x["path"], x["set"], x["seeds"]) for x in d["sources"]] == [
        (str(a), "fin7", 2),
        (str(b), "fin7", 1),
        (str(c), "stark", 2),
    ]


def test_set_name_rules_and_paths_with_an_equals_sign(tmp_path: Path) -> None:
    odd = tmp_path / "a=b.txt"  # an existing path with '=' stays a path: set = its stem
    odd.write_text("192.0.2.9\n")
    s = read_seeds([odd])
    assert s.sets() == {"a=b": {"files": [str(odd)], "count": 1}}
    plain = tmp_path / "iocs.txt"
    plain.write_text("192.0.2.10\n")
    s = read_seeds([f"APT.x_1-b={plain}", ("tuple-set", plain)], extra=["192.0.2.11"])
    assert list(s.sets()) == ["APT.x_1-b", "tuple-set", "argument"]
    assert s.sets_of("192.0.2.10") == ["APT.x_1-b", "tuple-set"]
    # before the '=' is not a set name: the whole entry is a path, which does not exist
    from flowpivot.errors import InputError

    with pytest.raises(InputError, match="cannot read seed file"):
        read_seeds([f"no good={plain}"])
    with pytest.raises(InputError, match="seed set name"):
        read_seeds([("bad name", plain)])


def test_an_empty_file_still_names_its_set(tmp_path: Path) -> None:
    p = tmp_path / "empty.txt"
    p.write_text("# nothing yet\n")
    assert read_seeds([f"later={p}"]).sets() == {"later": {"files": [str(p)], "count": 0}}

"""NetFlow v5/v9 and IPFIX decoding of hand-built datagrams: every value checked is one the test wrote.

The builders here write the wire format straight from RFC 3954 / RFC 7011 with struct, so the
expected values are the inputs, not flowpivot's output.
"""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pyarrow as pa
import pytest

from flowpivot.decode import FlowDecoder
from flowpivot.schema import to_output

NOW_S = 1_700_000_000


# ----- wire builders (RFC 3954 / RFC 7011) -----------------------------------------------------


def field_spec(fields: list[tuple[int, int] | tuple[int, int, int]], ipfix: bool) -> bytes:
    out = b""
    for f in fields:
        eid, length, pen = (f[0], f[1], f[2] if len(f) > 2 else 0)  # type: ignore[misc]
        if pen:
            assert ipfix
            out += struct.pack(">HHI", eid | 0x8000, length, pen)
        else:
            out += struct.pack(">HH", eid, length)
    return out


def template_set(tid: int, fields: list, ipfix: bool = True) -> bytes:
    body = struct.pack(">HH", tid, len(fields)) + field_spec(fields, ipfix)
    return struct.pack(">HH", 2 if ipfix else 0, 4 + len(body)) + body


def options_template_set(tid: int, scope: list, options: list, ipfix: bool = True) -> bytes:
    if ipfix:
        body = struct.pack(">HHH", tid, len(scope) + len(options), len(scope)) + field_spec(scope + options, True)
        body += b"\0" * ((-len(body)) % 4)
        return struct.pack(">HH", 3, 4 + len(body)) + body
    body = struct.pack(">HHH", tid, 4 * len(scope), 4 * len(options)) + field_spec(scope + options, False)
    body += b"\0" * ((-len(body)) % 4)
    return struct.pack(">HH", 1, 4 + len(body)) + body


def data_set(tid: int, records: list[bytes]) -> bytes:
    body = b"".join(records)
    body += b"\0" * ((-len(body)) % 4)
    return struct.pack(">HH", tid, 4 + len(body)) + body


def ipfix(sets: list[bytes], seq: int = 0, domain: int = 1, export_s: int = NOW_S) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_s, seq, domain) + body


def v9(sets: list[bytes], seq: int = 0, source_id: int = 0, uptime_ms: int = 1_000_000, unix_s: int = NOW_S) -> bytes:
    return struct.pack(">HHIIII", 9, len(sets), uptime_ms, unix_s, seq, source_id) + b"".join(sets)


def v5(records: list[dict], seq: int = 0, uptime_ms: int = 1_000_000, unix_s: int = NOW_S, nsecs: int = 0,
       engine_id: int = 0, sampling: int = 0) -> bytes:  # fmt: skip
    hdr = struct.pack(">HHIIIIBBH", 5, len(records), uptime_ms, unix_s, nsecs, seq, 0, engine_id, sampling)
    body = b""
    for r in records:
        body += struct.pack(
            ">4s4s4sHHIIIIHHBBBBHHBBH",
            ipaddress.IPv4Address(r["src"]).packed, ipaddress.IPv4Address(r["dst"]).packed, b"\0" * 4,
            r.get("in_if", 0), r.get("out_if", 0), r.get("packets", 1), r.get("bytes", 100),
            r.get("first", uptime_ms), r.get("last", uptime_ms), r.get("sport", 0), r.get("dport", 0), 0,
            r.get("flags", 0), r.get("proto", 6), 0, r.get("src_as", 0), r.get("dst_as", 0), 0, 0, 0,
        )  # fmt: skip
    return hdr + body


def ip4(s: str) -> bytes:
    return ipaddress.IPv4Address(s).packed


def ip6(s: str) -> bytes:
    return ipaddress.IPv6Address(s).packed


def rows(dec: FlowDecoder, *datagrams: bytes, exporter: str = "192.0.2.1") -> list[dict]:
    batches = []
    for i, d in enumerate(datagrams):
        res = dec.decode(d, exporter, NOW_S * 1000 + i)
        if res.batch is not None:
            batches.append(res.batch)
    if not batches:
        return []
    return to_output(pa.Table.from_batches(batches)).to_pylist()


def ms(row: dict, key: str) -> int:
    return int(row[key].timestamp() * 1000)


BASIC = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4)]


def basic_record(src: str, dst: str, sport: int, dport: int, proto: int, pkts: int, octets: int) -> bytes:
    return ip4(src) + ip4(dst) + struct.pack(">HHBII", sport, dport, proto, pkts, octets)


# ----- tests ------------------------------------------------------------------------------------


def test_v5_header_fields_sampling_and_uptime_times() -> None:
    dec = FlowDecoder()
    d = v5(
        [{"src": "10.0.0.1", "dst": "10.0.0.2", "sport": 1234, "dport": 80, "proto": 6, "flags": 0x1B,
          "packets": 7, "bytes": 900, "first": 990_000, "last": 999_500, "in_if": 3, "out_if": 4,
          "src_as": 64500, "dst_as": 64501}],
        uptime_ms=1_000_000, nsecs=250_000_000, engine_id=7, sampling=(1 << 14) | 512,
    )  # fmt: skip
    (r,) = rows(dec, d)
    export_ms = NOW_S * 1000 + 250
    assert ms(r, "start") == export_ms - 10_000 and ms(r, "end") == export_ms - 500
    assert (r["src_addr"], r["dst_addr"], r["src_port"], r["dst_port"]) == ("10.0.0.1", "10.0.0.2", 1234, 80)
    assert (r["protocol"], r["tcp_flags"], r["packets"], r["bytes"]) == (6, 0x1B, 7, 900)
    assert (r["in_if"], r["out_if"], r["src_as"], r["dst_as"]) == (3, 4, 64500, 64501)
    assert r["sampling_rate"] == 512  # low 14 bits; the top 2 are the sampling mode
    assert r["observation_domain"] == 7 and r["exporter"] == "192.0.2.1"


def test_v5_icmp_type_code_from_destination_port() -> None:
    (r,) = rows(FlowDecoder(), v5([{"src": "10.0.0.1", "dst": "10.0.0.2", "proto": 1, "dport": 3 * 256 + 13}]))
    assert (r["icmp_type"], r["icmp_code"]) == (3, 13)


def test_v5_sequence_gap_counts_lost_flows() -> None:
    dec = FlowDecoder()
    rec = [{"src": "10.0.0.1", "dst": "10.0.0.2"}] * 3
    rows(dec, v5(rec, seq=100), v5(rec, seq=103), v5(rec, seq=110))
    assert dec.stats["192.0.2.1"].lost_seq == 4 and dec.stats["192.0.2.1"].flows == 9


def test_v9_uptime_wraparound() -> None:
    """FIRST_SWITCHED just before the 32-bit uptime counter wrapped, header uptime just after."""
    dec = FlowDecoder()
    fields = BASIC + [(22, 4), (21, 4)]
    rec = basic_record("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 10) + struct.pack(">II", 0xFFFFFF00, 0x10)
    (r,) = rows(dec, v9([template_set(300, fields, False), data_set(300, [rec])], uptime_ms=0x20))
    assert ms(r, "start") == NOW_S * 1000 - (0x20 + 0x100) and ms(r, "end") == NOW_S * 1000 - 0x10


def test_v9_sequence_counts_lost_packets() -> None:
    dec = FlowDecoder()
    t = template_set(300, BASIC, False)
    recs = [basic_record("10.0.0.1", "10.0.0.2", 1, 2, 17, 1, 10)] * 4
    rows(
        dec, v9([t, data_set(300, recs)], seq=10), v9([data_set(300, recs)], seq=11), v9([data_set(300, recs)], seq=14)
    )
    st = dec.stats["192.0.2.1"]
    assert st.lost_seq_packets == 2 and st.lost_seq == 8  # 2 packets x 4 flows per packet seen so far


def test_data_before_template_is_held_then_decoded() -> None:
    dec = FlowDecoder()
    rec = basic_record("198.51.100.1", "203.0.113.9", 53, 5353, 17, 2, 300)
    assert rows(dec, ipfix([data_set(400, [rec, rec])])) == []
    assert dec.stats["192.0.2.1"].pending == 1
    got = rows(dec, ipfix([template_set(400, BASIC)]))
    assert [(r["src_addr"], r["dst_port"], r["bytes"]) for r in got] == [("198.51.100.1", 5353, 300)] * 2
    assert dec.stats["192.0.2.1"].pending == 0 and dec.stats["192.0.2.1"].pending_lost == 0


def test_held_data_expires_and_is_counted_lost() -> None:
    dec = FlowDecoder(pending_timeout_ms=1000)
    dec.decode(ipfix([data_set(400, [b"\0" * 17])]), "192.0.2.1", 5_000)
    assert dec.expire(5_500).problems == []
    res = dec.expire(6_001)
    assert dec.stats["192.0.2.1"].pending_lost == 1 and dec.stats["192.0.2.1"].pending == 0
    assert "template never arrived" in res.problems[0].reason


def test_held_data_is_bounded() -> None:
    dec = FlowDecoder(max_pending=3)
    for i in range(5):
        dec.decode(ipfix([data_set(400 + i, [b"\0" * 17])]), "192.0.2.1", i)
    st = dec.stats["192.0.2.1"]
    assert st.pending == 3 and st.pending_lost == 2


def test_templates_are_scoped_per_exporter_and_domain() -> None:
    """The same template id means different layouts for two exporters and two domains."""
    dec = FlowDecoder()
    a = [(8, 4), (12, 4), (2, 4)]
    b = [(12, 4), (8, 4), (1, 4)]
    rec = ip4("10.0.0.1") + ip4("10.0.0.2") + struct.pack(">I", 77)
    dec.decode(ipfix([template_set(256, a)], domain=1), "192.0.2.1", 0)
    dec.decode(ipfix([template_set(256, b)], domain=2), "192.0.2.1", 0)
    dec.decode(ipfix([template_set(256, b)], domain=1), "192.0.2.2", 0)
    r1 = to_output(dec.decode(ipfix([data_set(256, [rec])], domain=1), "192.0.2.1", 0).batch).to_pylist()[0]
    r2 = to_output(dec.decode(ipfix([data_set(256, [rec])], domain=2), "192.0.2.1", 0).batch).to_pylist()[0]
    r3 = to_output(dec.decode(ipfix([data_set(256, [rec])], domain=1), "192.0.2.2", 0).batch).to_pylist()[0]
    assert (r1["src_addr"], r1["packets"], r1["bytes"], r1["observation_domain"]) == ("10.0.0.1", 77, None, 1)
    assert (r2["src_addr"], r2["packets"], r2["bytes"], r2["observation_domain"]) == ("10.0.0.2", None, 77, 2)
    assert (r3["src_addr"], r3["exporter"]) == ("10.0.0.2", "192.0.2.2")


@pytest.mark.parametrize(
    "fields,values,start,end",
    [
        ([(150, 4), (151, 4)], struct.pack(">II", NOW_S - 20, NOW_S - 10), (NOW_S - 20) * 1000, (NOW_S - 10) * 1000),
        ([(152, 8), (153, 8)], struct.pack(">QQ", NOW_S * 1000 - 1234, NOW_S * 1000 - 5), NOW_S * 1000 - 1234, NOW_S * 1000 - 5),
        # NTP format: seconds since 1900 and a binary fraction; 0x80000000 is half a second
        ([(154, 8), (155, 8)], struct.pack(">IIII", NOW_S + 2_208_988_800, 0x80000000, NOW_S + 2_208_988_801, 0x40000000),
         NOW_S * 1000 + 500, NOW_S * 1000 + 1250),
        ([(156, 8), (157, 8)], struct.pack(">IIII", NOW_S + 2_208_988_800, 0x10000000, NOW_S + 2_208_988_800, 0xFFFFFFFF),
         NOW_S * 1000 + 62, NOW_S * 1000 + 999),
        ([(158, 4), (159, 4)], struct.pack(">II", 3_000_000, 1_500), NOW_S * 1000 - 3000, NOW_S * 1000 - 1),
        ([(160, 8), (22, 4), (21, 4)], struct.pack(">QII", NOW_S * 1000 - 100_000, 40_000, 90_000), NOW_S * 1000 - 60_000, NOW_S * 1000 - 10_000),
    ],
    ids=["seconds", "milliseconds", "microseconds", "nanoseconds", "delta-microseconds", "sysuptime+init"],
)  # fmt: skip
def test_ipfix_time_encodings(fields: list, values: bytes, start: int, end: int) -> None:
    dec = FlowDecoder()
    rec = ip4("10.0.0.1") + ip4("10.0.0.2") + values
    (r,) = rows(dec, ipfix([template_set(256, [(8, 4), (12, 4)] + fields), data_set(256, [rec])]))
    assert (ms(r, "start"), ms(r, "end")) == (start, end)


def test_ipfix_system_init_time_from_options_record() -> None:
    dec = FlowDecoder()
    opts = options_template_set(500, [(149, 4)], [(160, 8)])
    opt_rec = struct.pack(">IQ", 1, NOW_S * 1000 - 3_600_000)
    tmpl = template_set(256, [(8, 4), (12, 4), (22, 4), (21, 4)])
    rec = ip4("10.0.0.1") + ip4("10.0.0.2") + struct.pack(">II", 1000, 2000)
    (r,) = rows(dec, ipfix([opts, data_set(500, [opt_rec])]), ipfix([tmpl, data_set(256, [rec])]))
    assert (ms(r, "start"), ms(r, "end")) == (NOW_S * 1000 - 3_599_000, NOW_S * 1000 - 3_598_000)


def test_ipfix_variable_length_enterprise_and_reverse_elements() -> None:
    """A variable-length element (short and long form), a Juniper element, and RFC 5103 reverse counters."""
    fields = [(8, 4), (12, 4), (315, 0xFFFF), (137, 4, 2636), (1, 8), (1, 8, 29305), (2, 4), (2, 4, 29305),
              (6, 1), (6, 1, 29305), (82, 0xFFFF), (7, 2)]  # fmt: skip
    r1 = (ip4("10.0.0.1") + ip4("10.0.0.2") + bytes([3]) + b"abc" + b"JNPR" + struct.pack(">QQII", 1000, 2000, 10, 20)
          + bytes([0x12, 0x1B]) + b"\xff" + struct.pack(">H", 300) + b"x" * 300 + struct.pack(">H", 443))  # fmt: skip
    r2 = (ip4("10.0.0.3") + ip4("10.0.0.4") + bytes([0]) + b"JNPR" + struct.pack(">QQII", 5, 6, 7, 8)
          + bytes([0x02, 0x12]) + bytes([2]) + b"ab" + struct.pack(">H", 22))  # fmt: skip
    dec = FlowDecoder()
    got = rows(dec, ipfix([template_set(256, fields), data_set(256, [r1, r2])]))
    assert [(r["src_addr"], r["bytes"], r["rev_bytes"], r["packets"], r["rev_packets"], r["tcp_flags"], r["rev_tcp_flags"], r["src_port"])
            for r in got] == [("10.0.0.1", 1000, 2000, 10, 20, 0x12, 0x1B, 443), ("10.0.0.3", 5, 6, 7, 8, 2, 0x12, 22)]  # fmt: skip
    assert dec.stats["192.0.2.1"].malformed == 0


def test_ipfix_variable_length_record_past_set_end_is_malformed() -> None:
    fields = [(8, 4), (12, 4), (82, 0xFFFF)]
    bad = ip4("10.0.0.1") + ip4("10.0.0.2") + bytes([200]) + b"short"
    good_set = data_set(257, [basic_record("10.1.1.1", "10.2.2.2", 1, 2, 6, 1, 1)])
    dec = FlowDecoder()
    res = dec.decode(
        ipfix([template_set(256, fields), template_set(257, BASIC), data_set(256, [bad]), good_set]), "192.0.2.1", 0
    )
    assert res.batch is not None and to_output(res.batch).column("src_addr").to_pylist() == ["10.1.1.1"]
    assert dec.stats["192.0.2.1"].malformed == 1 and "past" in res.problems[0].reason


def test_ipv6_addresses_and_icmpv6_type_code() -> None:
    dec = FlowDecoder()
    fields = [(27, 16), (28, 16), (4, 1), (139, 2)]
    rec = ip6("2001:db8::1") + ip6("2001:db8::2") + bytes([58]) + struct.pack(">H", 128 * 256 + 0)
    (r,) = rows(dec, ipfix([template_set(256, fields), data_set(256, [rec])]))
    assert (r["src_addr"], r["dst_addr"], r["icmp_type"], r["icmp_code"]) == ("2001:db8::1", "2001:db8::2", 128, 0)


def test_reduced_size_encoding() -> None:
    """RFC 7011 section 6.2: a counter sent in 3 bytes, an address family mix in one template."""
    dec = FlowDecoder()
    fields = [(8, 4), (12, 4), (1, 3), (2, 2)]
    rec = ip4("10.0.0.1") + ip4("10.0.0.2") + (70_000).to_bytes(3, "big") + struct.pack(">H", 9)
    (r,) = rows(dec, ipfix([template_set(256, fields), data_set(256, [rec])]))
    assert (r["bytes"], r["packets"]) == (70_000, 9)


SAMPLED = BASIC + [(48, 1)]


def _sampled(sampler: int) -> bytes:
    return basic_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 1) + bytes([sampler])


def test_v9_sampling_per_sampler_and_exporter_wide() -> None:
    dec = FlowDecoder()
    opts = options_template_set(260, [(1, 4)], [(48, 1), (49, 1), (50, 4)], ipfix=False)
    orec = [struct.pack(">IBBI", 0, 1, 2, 100), struct.pack(">IBBI", 0, 2, 2, 1000)]
    wide_t = options_template_set(261, [(1, 4)], [(34, 4)], ipfix=False)
    got = rows(
        dec,
        v9([opts, data_set(260, orec), wide_t, data_set(261, [struct.pack(">II", 0, 7)])]),
        v9([template_set(300, SAMPLED, False), data_set(300, [_sampled(1), _sampled(2), _sampled(9)])]),
        v9([template_set(301, BASIC, False), data_set(301, [basic_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 1)])]),
    )  # fmt: skip
    assert [r["sampling_rate"] for r in got] == [100, 1000, 7, 7]


def test_sampling_is_per_domain() -> None:
    dec = FlowDecoder()
    opts = options_template_set(260, [(149, 4)], [(34, 4)])
    rows(dec, ipfix([opts, data_set(260, [struct.pack(">II", 1, 64)])], domain=1))
    got = rows(
        dec,
        ipfix([template_set(256, BASIC), data_set(256, [basic_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 1)])], domain=1),
        ipfix([template_set(256, BASIC), data_set(256, [basic_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 1)])], domain=2),
    )  # fmt: skip
    assert [r["sampling_rate"] for r in got] == [64, 1]


def test_ipfix_packet_interval_and_space_with_selector_id() -> None:
    """samplingPacketInterval 1 + samplingPacketSpace 99 = 1 in 100, matched by selectorId."""
    dec = FlowDecoder()
    opts = options_template_set(260, [(302, 8)], [(305, 4), (306, 4)])
    tmpl = template_set(256, BASIC + [(302, 8)])
    got = rows(
        dec,
        ipfix([opts, data_set(260, [struct.pack(">QII", 5, 1, 99), struct.pack(">QII", 6, 1, 9)])]),
        ipfix([tmpl, data_set(256, [basic_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 1) + struct.pack(">Q", s) for s in (5, 6)])]),
    )  # fmt: skip
    assert [r["sampling_rate"] for r in got] == [100, 10]


def test_sampling_change_applies_to_later_flows_only() -> None:
    dec = FlowDecoder()
    opts = options_template_set(260, [(149, 4)], [(34, 4)])
    rec = data_set(256, [basic_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 1)])
    batch = [
        (ipfix([opts, data_set(260, [struct.pack(">II", 1, 10)]), template_set(256, BASIC), rec]), "192.0.2.1", 0),
        (ipfix([data_set(260, [struct.pack(">II", 1, 20)]), rec]), "192.0.2.1", 1),
    ]
    res = dec.decode_many(batch)
    assert res.batch is not None and sorted(res.batch.column("sampling_rate").to_pylist()) == [10, 20]


def test_old_sflow_and_old_netflow_are_unsupported_not_malformed() -> None:
    dec = FlowDecoder()
    sflow4 = struct.pack(">III", 4, 1, 0x0A000001) + b"\0" * 20
    sflow5 = struct.pack(">III", 5, 1, 0x0A000001) + b"\0" * 16  # v5 (decoded: tests/test_decode_sflow.py), no samples
    old = struct.pack(">HH", 8, 0) + b"\0" * 20  # NetFlow v8 (v7 is decoded: tests/test_decode_fidelity.py)
    res = dec.decode_many([(sflow4, "192.0.2.9", 0), (old, "192.0.2.9", 0), (sflow5, "192.0.2.9", 0)])
    assert res.batch is None and res.problems == []
    assert dec.stats["192.0.2.9"].unsupported == 2 and dec.stats["192.0.2.9"].malformed == 0


def test_bad_set_length_keeps_earlier_sets() -> None:
    dec = FlowDecoder()
    good = data_set(256, [basic_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 1)])
    bad = struct.pack(">HH", 256, 900) + b"\0" * 8
    res = dec.decode_many(
        [(ipfix([template_set(256, BASIC), good, bad]), "192.0.2.1", 0)], where=lambda i: f"packet {i + 7}"
    )
    assert res.batch is not None and res.batch.num_rows == 1
    (p,) = res.problems
    assert p.source == "192.0.2.1" and p.where == f"packet 7 offset {16 + len(template_set(256, BASIC)) + len(good)}"
    assert dec.stats["192.0.2.1"].malformed == 1


def test_ipfix_template_withdrawal() -> None:
    dec = FlowDecoder()
    rec = data_set(256, [basic_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 1)])
    withdraw = struct.pack(">HHHH", 2, 8, 256, 0)
    got = rows(dec, ipfix([template_set(256, BASIC), rec]), ipfix([withdraw, rec]))
    assert len(got) == 1 and dec.stats["192.0.2.1"].pending == 1


def test_sampled_frame_sections() -> None:
    """dataLinkFrameSection: VLAN + IPv4/TCP, IPv6 in IPv6, MPLS + control word + Ethernet, and an ARP frame (no flow)."""
    eth = bytes(6) + bytes(6)
    tcp4 = (bytes([0x45, 0]) + struct.pack(">H", 1500) + bytes(5) + bytes([6]) + bytes(2) + ip4("10.0.0.1") + ip4("10.0.0.2")
            + struct.pack(">HH", 443, 50000) + bytes(9) + bytes([0x18]))  # fmt: skip
    udp6 = (
        struct.pack(">IHBB", 6 << 28, 20, 17, 64)
        + ip6("2001:db8::1")
        + ip6("2001:db8::2")
        + struct.pack(">HH", 53, 5353)
    )
    outer6 = struct.pack(">IHBB", 6 << 28, len(udp6), 41, 64) + ip6("2001:db8:f::1") + ip6("2001:db8:f::2") + udp6
    frames = [
        eth + struct.pack(">HHH", 0x8100, 10, 0x0800) + tcp4,
        eth + struct.pack(">H", 0x86DD) + outer6,
        eth
        + struct.pack(">H", 0x8847)
        + struct.pack(">I", (16 << 12) | 0x1FF)
        + bytes(4)
        + eth
        + struct.pack(">H", 0x0800)
        + tcp4,
        eth + struct.pack(">H", 0x0806) + bytes(28),
    ]
    fields = [(10, 4), (315, 0xFFFF)]
    records = [struct.pack(">I", 7) + bytes([len(f)]) + f for f in frames]
    dec = FlowDecoder()
    got = rows(dec, ipfix([template_set(256, fields), data_set(256, records)]))
    assert [(r["src_addr"], r["dst_addr"], r["protocol"], r["src_port"], r["dst_port"], r["tcp_flags"], r["bytes"], r["packets"], r["in_if"])
            for r in got] == [
        ("10.0.0.1", "10.0.0.2", 6, 443, 50000, 0x18, 1500, 1, 7),
        ("2001:db8::1", "2001:db8::2", 17, 53, 5353, 0, 60, 1, 7),  # the inner packet of the tunnel
        ("10.0.0.1", "10.0.0.2", 6, 443, 50000, 0x18, 1500, 1, 7),
    ]  # fmt: skip
    assert dec.stats["192.0.2.1"].other_records == 1 and dec.stats["192.0.2.1"].malformed == 0


def test_buffer_path_uses_system_init_time_learnt_in_the_same_batch() -> None:
    opts = options_template_set(500, [(149, 4)], [(160, 8)])
    tmpl = template_set(256, [(8, 4), (12, 4), (22, 4), (21, 4)])
    rec = ip4("10.0.0.1") + ip4("10.0.0.2") + struct.pack(">II", 1000, 2000)
    grams = [
        ipfix([opts, data_set(500, [struct.pack(">IQ", 1, NOW_S * 1000 - 3_600_000)])]),
        ipfix([tmpl]),
        ipfix([data_set(256, [rec])]),  # a datagram the buffer path would read with NumPy
    ]
    buf = b"".join(grams)
    ends = np.cumsum([len(g) for g in grams])
    batches, problems = FlowDecoder().decode_buffer(
        buf, ends - [len(g) for g in grams], ends, np.zeros(3, dtype=np.int64), ["192.0.2.1"], [0, 0, 0]
    )
    (r,) = to_output(pa.Table.from_batches(batches)).to_pylist()
    assert problems == [] and (ms(r, "start"), ms(r, "end")) == (NOW_S * 1000 - 3_599_000, NOW_S * 1000 - 3_598_000)

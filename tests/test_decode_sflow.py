"""sFlow v5: flowpivot's decode of real captures and of pmacct's sfprobe, against tshark and the packets sampled.

Oracles: tshark's sFlow dissector (and its dissection of each sampled header) for every flow
sample of the shared captures; for sfprobe, the input capture's own packets as tshark reads them
(sfprobe samples every packet at rate 1, so the flows must be those packets, one each) and
tshark's decode of the datagrams sfprobe sent. Malformed input is cut or altered from real
datagrams; what must survive is read off tshark's decode of the intact datagram.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import need_tool, shared

from flowpivot.decode import FlowDecoder
from flowpivot.ingest import ingest_paths
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.pcap import read_pcap
from flowpivot.schema import to_output
from flowpivot.store import Store

pytestmark = pytest.mark.tools

REPO = Path(__file__).resolve().parents[1]
A = "exports/akvorado/"
AKVORADO = [
    "sflow-data-1140.pcap",
    "sflow-data-discard-interface.pcap",
    "sflow-data-encap-vxlan.pcap",
    "sflow-data-icmpv4.pcap",
    "sflow-data-icmpv6.pcap",
    "sflow-data-local-interface.pcap",
    "sflow-data-multiple-interfaces.pcap",
    "sflow-data-qinq.pcap",
    "sflow-data-sflow-expanded-sample.pcap",
    "sflow-data-sflow-ipv4-data.pcap",
    "sflow-data-sflow-raw-ipv4.pcap",
]
# These three hold one sample and 964 bytes more than their header announces (akvorado's tests
# cut them from a larger datagram): flowpivot keeps the sample and reports the rest.
TRAILING = {
    "sflow-data-discard-interface.pcap",
    "sflow-data-local-interface.pcap",
    "sflow-data-multiple-interfaces.pcap",
}
PM_SFLOW = "realworld/exporters/pm-sflow.pcap"  # pmacct 1.7.7 sfprobe, sent to UDP port 43050
PM_PORT = 43050

KEY = [
    "start", "exporter", "observation_domain", "src_addr", "dst_addr", "protocol", "src_port", "dst_port",
    "tcp_flags", "icmp_type", "icmp_code", "packets", "bytes", "sampling_rate", "sample_pool", "in_if", "out_if",
    "src_as", "dst_as",
]  # fmt: skip


# ----- tshark ------------------------------------------------------------------------------------


def _one(v: Any) -> Any:
    """tshark's --no-duplicate-keys turns a repeated key into a list: the outermost comes first."""
    return v[0] if isinstance(v, list) else v


def _last(v: Any) -> Any:
    return v[-1] if isinstance(v, list) else v


def _samples_of(sflow: dict[str, Any], prefixes: tuple[str, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for k, v in sflow.items():
        if k.startswith(prefixes):
            out.extend(v if isinstance(v, list) else [v])
    return out


def _flow_row(agent: str, sub: int, start_ms: int, s: dict[str, Any]) -> dict[str, Any] | None:
    """One tshark flow sample as the flow flowpivot must store (None: no IP packet in it)."""
    if "sflow.flow_sample.input_interface_format" in s:  # expanded
        in_fmt, in_val = (
            int(s["sflow.flow_sample.input_interface_format"]),
            int(s["sflow.flow_sample.input_interface_value"]),
        )
        out_fmt = int(s["sflow.flow_sample.output_interface.format"])
        out_val = int(s["sflow.flow_sample.output_interface_value"])
    else:
        raw = int(s["sflow.flow_sample.input_interface"])
        in_fmt, in_val = raw >> 30, raw & 0x3FFFFFFF
        tree = s["sflow.flow_sample.output_interface_tree"]
        out_fmt = int(tree["sflow.flow_sample.output_interface_format"])
        out_val = int(tree["sflow.flow_sample.output_interface_value"])
    row: dict[str, Any] = {
        "start": start_ms, "exporter": agent, "observation_domain": sub, "packets": 1,
        "sampling_rate": int(s["sflow.flow_sample.sampling_rate"]) or 1,
        "sample_pool": int(s["sflow.flow_sample.sample_pool"]),
        "in_if": in_val if in_fmt == 0 else None, "out_if": out_val if out_fmt == 0 else None,
        "src_as": None, "dst_as": None,
    }  # fmt: skip
    gw = s.get("Extended gateway data")
    if gw is not None:
        row["src_as"] = int(gw["sflow_245.srcAS"])
        path = gw.get("sflow.as_type_tree")
        row["dst_as"] = int(_last(_last(path)["sflow_245.dstAS"])) if path else 0
    hdr = s.get("Raw packet header")
    if hdr is None:
        return None
    tree = hdr["sflow_245.header_tree"]
    ip, ip6 = tree.get("ip"), tree.get("ipv6")
    if ip is not None:
        ip = _one(ip)
        row.update(src_addr=ip["ip.src"], dst_addr=ip["ip.dst"], protocol=int(ip["ip.proto"]), bytes=int(ip["ip.len"]))
    elif ip6 is not None:
        ip6 = _one(ip6)
        row.update(
            src_addr=ip6["ipv6.src"], dst_addr=ip6["ipv6.dst"], protocol=int(ip6["ipv6.nxt"]),
            bytes=int(ip6["ipv6.plen"]) + 40,
        )  # fmt: skip
    else:
        return None
    if ip6 is not None and row["protocol"] in (0, 43, 60):  # extension headers: the protocol tshark found after them
        row["protocol"] = next((n for k, n in (("icmpv6", 58), ("tcp", 6), ("udp", 17)) if k in tree), row["protocol"])
    proto = row["protocol"]
    l4 = _one(tree.get({6: "tcp", 17: "udp"}.get(proto, ""), None))
    row["src_port"] = int(l4[f"{'tcp' if proto == 6 else 'udp'}.srcport"]) if l4 else 0
    row["dst_port"] = int(l4[f"{'tcp' if proto == 6 else 'udp'}.dstport"]) if l4 else 0
    row["tcp_flags"] = int(l4["tcp.flags"], 16) & 0xFF if l4 and proto == 6 else 0
    icmp = _one(tree.get({1: "icmp", 58: "icmpv6"}.get(proto, ""), None))
    p = "icmp" if proto == 1 else "icmpv6"
    row["icmp_type"] = int(icmp[f"{p}.type"]) if icmp else None
    row["icmp_code"] = int(icmp[f"{p}.code"]) if icmp else None
    return row


def tshark_sflow(pcap: Path, port: int = 6343) -> tuple[list[list[dict[str, Any] | None]], int]:
    """Per frame, tshark's flow samples as flows (None where a sample holds no IP packet), and the counter samples."""
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(pcap), "-d", f"udp.port=={port},sflow", "-T", "json", "--no-duplicate-keys",
         "-J", "frame sflow"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    frames, counters = [], 0
    for fr in json.loads(out):
        layers = fr["_source"]["layers"]
        sf = layers.get("sflow")
        if sf is None:
            frames.append([])
            continue
        start_ms = int(Decimal(layers["frame"]["frame.time_epoch"]) * 1000)
        agent = sf.get("sflow_245.agent") or sf["sflow_245.agent.v6"]
        sub = int(sf["sflow_245.sub_agent_id"])
        flows = _samples_of(sf, ("Flow sample", "Expanded flow sample"))
        frames.append([_flow_row(agent, sub, start_ms, s) for s in flows])
        counters += len(_samples_of(sf, ("Counters sample", "Expanded counters sample")))
    return frames, counters


def tshark_sflow_counters(pcap: Path, port: int, frames: int) -> int:
    """Counter samples in the first ``frames`` frames, by tshark."""
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(pcap), "-c", str(frames), "-d", f"udp.port=={port},sflow", "-T", "fields",
         "-E", "occurrence=a", "-e", "sflow_245.sampletype"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sum(t in ("2", "4") for line in out.split() for t in line.split(","))


def _keys(rows: list[dict[str, Any] | None]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r[k] for k in KEY) for r in rows if r is not None)


def _flowpivot_rows(batches: list[pa.RecordBatch]) -> list[dict[str, Any]]:
    if not batches:
        return []
    t = to_output(pa.Table.from_batches(batches))
    rows = t.to_pylist()
    for r in rows:
        r["start"] = int(r["start"].timestamp() * 1000 + 0.5)
    return rows


def read(path: Path) -> tuple[list[dict[str, Any]], ReadReport, FlowDecoder]:
    dec, rep = FlowDecoder(), ReadReport(str(path))
    return _flowpivot_rows(list(read_pcap(path, rep, dec))), rep, dec


# ----- the shared captures -----------------------------------------------------------------------


@pytest.mark.parametrize("name", AKVORADO)
def test_akvorado_captures_match_tshark(name: str) -> None:
    path = shared(A + name)
    frames, counters = tshark_sflow(path)
    expected = [r for f in frames for r in f]
    rows, rep, dec = read(path)
    assert expected and all(r is not None for r in expected)
    assert _keys(rows) == _keys(expected)
    st = dec.stats[next(iter(dec.stats))]
    assert st.sflow_counter_samples == counters
    assert st.flows == len(expected)
    if name in TRAILING:
        assert [p.reason for p in rep.problems] == [
            "exporter 192.0.2.100: 964 bytes after the last of 1 samples; ignored"
        ]
    else:
        assert rep.problems == []


@pytest.fixture(scope="module")
def pm_sflow() -> tuple[list[list[dict[str, Any] | None]], int]:
    return tshark_sflow(shared(PM_SFLOW), PM_PORT)


def test_pmacct_sfprobe_capture_matches_tshark(pm_sflow: tuple[list[list[dict[str, Any] | None]], int]) -> None:
    """pm-sflow.pcap goes to port 43050: recognised by content. Its agent and UDP source are both 127.0.0.1."""
    frames, counters = pm_sflow
    expected = [r for f in frames for r in f]
    rows, rep, dec = read(shared(PM_SFLOW))
    assert rep.problems == []
    assert len(rows) == sum(r is not None for r in expected) > 10_000
    assert _keys(rows) == _keys(expected)
    st = dec.stats["127.0.0.1"]
    assert st.sflow_counter_samples == counters >= 1
    assert st.other_records == sum(r is None for r in expected)
    assert st.lost_seq == 0 and st.malformed == 0


def test_ingest_stores_the_sflow_flows(tmp_path: Path, pm_sflow: tuple[list[list[dict[str, Any] | None]], int]) -> None:
    """`flowpivot ingest` of an sFlow capture (any port) stores one flow per IP sample, with the sample pool."""
    frames, _ = pm_sflow
    expected = [r for f in frames for r in f if r is not None]
    store = Store(tmp_path / "store")
    (rep,) = ingest_paths([shared(PM_SFLOW)], store)
    assert (rep.status, rep.records, rep.bad) == ("ingested", len(expected), 0)
    got = to_output(store.query())
    assert Counter(
        zip(got.column("src_addr").to_pylist(), got.column("sample_pool").to_pylist(), strict=True)
    ) == Counter((r["src_addr"], r["sample_pool"]) for r in expected)


# ----- bad input, cut from real datagrams --------------------------------------------------------


def _payloads(pcap: Path, port: int) -> list[tuple[bytes, int]]:
    """(UDP payload, arrival ms) of each frame, as tshark reads them."""
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(pcap), "-d", f"udp.port=={port},sflow", "-T", "fields", "-E", "occurrence=f",
         "-e", "udp.payload", "-e", "frame.time_epoch"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    res = []
    for line in out.splitlines():
        hexed, stamp = line.split("\t")
        res.append((bytes.fromhex(hexed.replace(":", "")), int(Decimal(stamp) * 1000)))
    return res


def _sample_bounds(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each sample of a well-formed IPv4-agent datagram, from the lengths it states."""
    count = struct.unpack_from(">I", data, 24)[0]
    off, out = 28, []
    for _ in range(count):
        length = struct.unpack_from(">I", data, off + 4)[0]
        out.append((off, off + 8 + length))
        off += 8 + length
    return out


def _decode(datagrams: list[tuple[bytes, int]]) -> tuple[list[dict[str, Any]], FlowDecoder, list[Any]]:
    dec = FlowDecoder()
    batches, problems = dec.decode_batches([(d, "127.0.0.1", ms) for d, ms in datagrams])
    return _flowpivot_rows(batches), dec, problems


@pytest.fixture(scope="module")
def pm_datagrams() -> list[tuple[bytes, int]]:
    return _payloads(shared(PM_SFLOW), PM_PORT)


def _count(data: bytes, ms: int) -> tuple[int, FlowDecoder, list[Any]]:
    """Flows, decoder and problems of one datagram (no conversion of the rows: for the many-case loops)."""
    dec = FlowDecoder()
    batches, problems = dec.decode_batches([(data, "127.0.0.1", ms)])
    return sum(b.num_rows for b in batches), dec, problems


def _first_with(pm_datagrams: list[tuple[bytes, int]], samples: int) -> int:
    return next(i for i, (d, _) in enumerate(pm_datagrams) if len(_sample_bounds(d)) >= samples)


def test_a_cut_datagram_keeps_its_whole_samples(
    pm_datagrams: list[tuple[bytes, int]], pm_sflow: tuple[list[list[dict[str, Any] | None]], int]
) -> None:
    i = _first_with(pm_datagrams, 6)
    data, ms = pm_datagrams[i]
    bounds = _sample_bounds(data)
    expected = pm_sflow[0][i]
    for cut in sorted({28, bounds[0][0] + 20, bounds[2][1], bounds[3][0] + 60, len(data) - 1, 10}):
        whole = sum(end <= cut for _, end in bounds)
        rows, dec, problems = _decode([(data[:cut], ms)])
        assert _keys(rows) == _keys(expected[:whole]), cut
        assert dec.stats["127.0.0.1"].malformed == 1 and len(problems) == 1, cut
        if cut >= 28:
            assert f"sample {whole + 1} of {len(bounds)}" in problems[0].reason
            assert problems[0].where.startswith("datagram 1 offset ")


def test_a_bad_sample_is_skipped_and_its_neighbours_kept(
    pm_datagrams: list[tuple[bytes, int]], pm_sflow: tuple[list[list[dict[str, Any] | None]], int]
) -> None:
    i = _first_with(pm_datagrams, 6)
    data, ms = pm_datagrams[i]
    bounds = _sample_bounds(data)
    expected = pm_sflow[0][i]
    # sample 2: its first flow record claims more bytes than the sample holds
    bad = bytearray(data)
    start = bounds[1][0] + 8 + 32  # sample header (8) + compact flow sample fields (32)
    struct.pack_into(">I", bad, start + 4, 10_000)
    # and the next datagram, intact, still decodes
    nxt = pm_datagrams[i + 1]
    rows, dec, problems = _decode([(bytes(bad), ms), nxt])
    keep = expected[:1] + expected[2:] + pm_sflow[0][i + 1]
    assert _keys(rows) == _keys(keep)
    assert [p.reason.split(":")[0] for p in problems] == [f"sample 2 of {len(bounds)} (flow sample)"]
    assert problems[0].where == f"datagram 1 offset {bounds[1][0]}"
    assert dec.stats["127.0.0.1"].malformed == 1
    # sample 3 says it is longer than the datagram: samples 1 and 2 are kept, the rest is lost
    bad = bytearray(data)
    struct.pack_into(">I", bad, bounds[2][0] + 4, 1 << 31)
    rows, dec, problems = _decode([(bytes(bad), ms)])
    assert _keys(rows) == _keys(expected[:2])
    assert "sample 3 of" in problems[0].reason and "rest of the datagram skipped" in problems[0].reason


def test_no_truncation_or_byte_flip_raises(pm_datagrams: list[tuple[bytes, int]]) -> None:
    """Every prefix of a real datagram, and every single byte of its header area set to 0xFF."""
    data, ms = pm_datagrams[_first_with(pm_datagrams, 6)]
    bounds = _sample_bounds(data)
    for cut in range(len(data)):
        n, dec, problems = _count(data[:cut], ms)
        assert n <= sum(end <= cut for _, end in bounds)
        assert dec.stats["127.0.0.1"].malformed == 1
        assert not any("undecodable" in p.reason for p in problems), problems  # a caught exception
    for k in range(bounds[1][1]):
        bad = bytearray(data)
        bad[k] ^= 0xFF
        n, dec, problems = _count(bytes(bad), ms)
        assert n <= len(bounds)
        assert not any("undecodable" in p.reason for p in problems), (k, problems)


def test_lost_datagrams_count_their_flow_samples(
    pm_datagrams: list[tuple[bytes, int]], pm_sflow: tuple[list[list[dict[str, Any] | None]], int]
) -> None:
    """Sample sequence numbers are per data source: dropping datagrams 10 and 11 loses exactly their flow samples."""
    kept = pm_datagrams[:10] + pm_datagrams[12:40]
    _, dec, problems = _decode(kept)
    assert problems == []
    assert dec.stats["127.0.0.1"].lost_seq == len(pm_sflow[0][10]) + len(pm_sflow[0][11]) > 0


def test_bytes_are_the_ip_length_or_else_the_frame_length(
    pm_datagrams: list[tuple[bytes, int]], pm_sflow: tuple[list[list[dict[str, Any] | None]], int]
) -> None:
    """An IPv4 header whose total length is 0 (segmentation offload) is counted at the frame's length:
    frame_length - stripped - the 14-byte Ethernet header; otherwise the IP length counts."""
    i = _first_with(pm_datagrams, 6)
    data, ms = pm_datagrams[i]
    start = _sample_bounds(data)[2][0] + 8 + 32  # sample 3 of this datagram: mDNS over IPv4
    rec = start + 8 + 16  # an extended switch record (8 + 16 bytes), then the raw header record
    assert struct.unpack_from(">I", data, rec)[0] == 1
    proto, frame_len, stripped, _ = struct.unpack_from(">IIII", data, rec + 8)
    header = rec + 8 + 16
    assert proto == 1 and data[header + 12 : header + 14] == b"\x08\x00"
    assert all(r is not None for r in pm_sflow[0][i][:3])  # rows 0..2 are samples 1..3
    third = pm_sflow[0][i][2]
    assert third is not None and third["bytes"] == frame_len - stripped - 14 != frame_len
    bad = bytearray(data)
    struct.pack_into(">I", bad, rec + 12, frame_len + 9000)  # frame_length, and the IP total length 0
    struct.pack_into(">H", bad, header + 14 + 2, 0)
    rows, _, problems = _decode([(bytes(bad), ms)])
    assert problems == []
    assert [r["bytes"] for r in rows][2] == frame_len + 9000 - stripped - 14
    struct.pack_into(">H", bad, header + 14 + 2, third["bytes"])  # the IP length back: it counts
    rows, _, _ = _decode([(bytes(bad), ms)])
    assert [r["bytes"] for r in rows][2] == third["bytes"]


def test_the_sampled_ipv4_record_stands_in_for_a_missing_header() -> None:
    """akvorado's sflow-ipv4-data sample carries a raw header and a sampled IPv4 record (3). With the
    header record renamed to a format flowpivot skips, the flow comes from the IPv4 record, as tshark
    decodes it, with the record's own IP length."""
    path = shared(A + "sflow-data-sflow-ipv4-data.pcap")
    ((data, ms),) = _payloads(path, 6343)
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(path), "-T", "json", "--no-duplicate-keys", "-J", "sflow"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (sample,) = _samples_of(json.loads(out)[0]["_source"]["layers"]["sflow"], ("Flow sample", "Expanded flow sample"))
    rec = sample["IPv4 data"]
    ((sample_at, _),) = _sample_bounds(data)
    first = sample_at + 8 + 44  # sample header, then the expanded flow sample's 44 bytes of fields
    assert struct.unpack_from(">I", data, first)[0] == 1  # the raw packet header record comes first
    bad = bytearray(data)
    struct.pack_into(">I", bad, first, 9999)
    rows, dec, problems = _decode([(bytes(bad), ms)])
    assert problems == [] and len(rows) == 1
    r = rows[0]
    assert (r["src_addr"], r["dst_addr"], r["protocol"], r["src_port"], r["dst_port"], r["bytes"]) == (
        rec["sflow_245.ipv4_src"], rec["sflow_245.ipv4_dst"], int(rec["sflow.ip_protocol"]),
        int(rec["sflow_245.ip.source_port"]), int(rec["sflow.ip.destination_port"]), int(rec["sflow_245.ip.length"]),
    )  # fmt: skip
    assert r["sample_pool"] == int(sample["sflow.flow_sample.sample_pool"])
    assert dec.stats["127.0.0.1"].sflow_skipped_records == 3  # the renamed header, Ethernet data, switch


def test_records_are_padded_to_four_bytes() -> None:
    """XDR pads opaque data: a raw header record of 126 header bytes states length 142 and is followed by
    2 padding bytes. Made from akvorado's sflow-ipv4-data sample (header 128 bytes, then an Ethernet,
    a switch and an IPv4 record): the flow and the three records after the header are still read."""
    path = shared(A + "sflow-data-sflow-ipv4-data.pcap")
    ((data, ms),) = _payloads(path, 6343)
    frames, _ = tshark_sflow(path)
    ((sample_at, _),) = _sample_bounds(data)
    first = sample_at + 8 + 44
    fmt, rlen, _proto, _frame, _stripped, hlen = struct.unpack_from(">IIIIII", data, first)
    assert (fmt, rlen, hlen) == (1, 144, 128)
    bad = bytearray(data)
    struct.pack_into(">I", bad, first + 4, 142)
    struct.pack_into(">I", bad, first + 20, 126)
    rows, dec, problems = _decode([(bytes(bad), ms)])
    assert problems == []
    assert _keys(rows) == _keys(frames[0])
    assert dec.stats["127.0.0.1"].sflow_skipped_records == 2  # Ethernet and switch, found at their padded offsets


def test_an_ipv6_agent_names_the_flows(
    pm_datagrams: list[tuple[bytes, int]], pm_sflow: tuple[list[list[dict[str, Any] | None]], int]
) -> None:
    """The same datagram with an IPv6 agent address (type 2, 16 bytes): the flows name that agent."""
    data, ms = pm_datagrams[0]
    assert struct.unpack_from(">I", data, 4)[0] == 1
    v6 = data[:4] + struct.pack(">I", 2) + socket.inet_pton(socket.AF_INET6, "2001:db8::7") + data[12:]
    rows, _, problems = _decode([(v6, ms)])
    assert problems == []
    expected = [dict(r, exporter="2001:db8::7") for r in pm_sflow[0][0] if r is not None]
    assert _keys(rows) == _keys(expected)


# ----- pmacct's sfprobe, live --------------------------------------------------------------------

TAIL = 64  # packets appended to the input: sfprobe does not send its last, partly filled datagram at exit


def _pcap_with_tail(src: Path, dst: Path) -> None:
    """A copy of a classic pcap with TAIL UDP packets 198.51.100.1 -> 198.51.100.2 appended."""
    raw = src.read_bytes()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1"  # little-endian microseconds
    last_sec = 0
    off = 24
    while off < len(raw):
        sec, _, caplen, _ = struct.unpack_from("<IIII", raw, off)
        last_sec, off = sec, off + 16 + caplen
    udp = struct.pack(">HHHH", 40000, 9, 8 + 4, 0) + b"tail"
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])
    )
    frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp
    tail = b"".join(struct.pack("<IIII", last_sec + 1, k, len(frame), len(frame)) + frame for k in range(TAIL))
    dst.write_bytes(raw + tail)


def _write_pcap(path: Path, datagrams: list[bytes], port: int) -> None:
    """Datagrams as Ethernet/IPv4/UDP 127.0.0.1 -> 127.0.0.1:port packets, for tshark."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for k, d in enumerate(datagrams):
        udp = struct.pack(">HHHH", 50000, port, 8 + len(d), 0) + d
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\x7f\0\0\1", b"\x7f\0\0\1")
        frame = b"\0" * 12 + b"\x08\x00" + ip + udp
        out.append(struct.pack("<IIII", 1_700_000_000 + k, 0, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def _input_packets(pcap: Path) -> Counter[tuple[Any, ...]]:
    """(src, dst, protocol, sport, dport, tcp flags, IP length) of every IP packet of a capture, by tshark."""
    fields = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "ip.proto", "ipv6.nxt", "tcp.srcport", "udp.srcport",
              "tcp.dstport", "udp.dstport", "tcp.flags", "ip.len", "ipv6.plen"]  # fmt: skip
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(pcap), "-T", "fields", "-E", "occurrence=f", *sum((["-e", f] for f in fields), [])],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    got: Counter[tuple[Any, ...]] = Counter()
    for line in out.splitlines():
        a = line.split("\t")
        if not (a[0] or a[1]):
            continue
        got[
            (
                a[0] or a[1], a[2] or a[3], int(a[4] or a[5]), int(a[6] or a[7] or 0), int(a[8] or a[9] or 0),
                int(a[10], 16) & 0xFF if a[10] else 0, int(a[11]) if a[11] else int(a[12]) + 40,
            )
        ] += 1  # fmt: skip
    return got


def test_sfprobe_from_a_real_pcap(tmp_path: Path) -> None:
    """pmacct's sfprobe samples a real capture (1 in 1) and exports sFlow v5 to a socket of the test.

    Every IP packet of the capture must come out as one flow (addresses, ports, protocol, flags,
    IP length), with the agent address pmacct was given as exporter; flowpivot's decode of the
    datagrams must equal tshark's, counter samples included.
    """
    pmacctd = need_tool("pmacctd")
    pcap = tmp_path / "in.pcap"
    _pcap_with_tail(shared("stratosphere/test-cc/test-cc-capture-2.pcap"), pcap)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    conf = tmp_path / "pmacctd.conf"
    conf.write_text(
        "daemonize: false\nplugins: sfprobe\n"
        f"sfprobe_receiver: 127.0.0.1:{port}\nsfprobe_agentip: 192.0.2.7\nsfprobe_agentsubid: 3\n"
        f"sampling_rate: 1\npcap_savefile: {pcap}\n"
    )
    datagrams: list[bytes] = []
    try:
        run = subprocess.run([pmacctd, "-f", str(conf)], capture_output=True, text=True, timeout=120)
        # pmacctd 1.7 ends a savefile run with 0 or, when its sfprobe plugin reaches the end of the
        # file first, with 1 ("connection lost to ...; no more plugins active"): both after the plugin
        # has exported everything ("Shutting down on user request"). The comparison below is the check.
        log = run.stdout + run.stderr
        assert run.returncode == 0 or (run.returncode == 1 and "Shutting down on user request" in log), log[-2000:]
        assert "ERROR" not in log, log[-2000:]
        sock.settimeout(1.0)
        try:
            while True:
                datagrams.append(sock.recv(65535))
        except TimeoutError:
            pass
    finally:
        sock.close()
    assert datagrams
    rows, dec, problems = _decode([(d, 1_700_000_000_000) for d in datagrams])
    assert problems == []
    st = dec.stats["127.0.0.1"]
    assert st.lost_seq == 0 and st.malformed == 0
    assert {(r["exporter"], r["observation_domain"], r["sampling_rate"]) for r in rows} == {("192.0.2.7", 3, 1)}

    tail = ("198.51.100.1", "198.51.100.2", 17, 40000, 9, 0, 32)
    got = Counter(
        (r["src_addr"], r["dst_addr"], r["protocol"], r["src_port"], r["dst_port"], r["tcp_flags"], r["bytes"])
        for r in rows
    )
    packets = _input_packets(pcap)
    assert 0 < got[tail] <= TAIL
    del got[tail], packets[tail]
    assert got == packets  # every packet of the real capture, once

    sent = tmp_path / "sent.pcap"
    _write_pcap(sent, datagrams, port)
    frames, counters = tshark_sflow(sent, port)
    expected = [dict(r, start=1_700_000_000_000) for f in frames for r in f if r is not None]
    assert _keys(rows) == _keys(expected)
    assert st.sflow_counter_samples == counters


# ----- the collector -----------------------------------------------------------------------------


def test_collect_decodes_sflow_by_content(
    tmp_path: Path, pm_datagrams: list[tuple[bytes, int]], pm_sflow: tuple[list[list[dict[str, Any] | None]], int]
) -> None:
    """`flowpivot collect` on an ordinary port stores the flows of sFlow datagrams sent to it."""
    store, log = tmp_path / "store", tmp_path / "collect.log"
    datagrams = [d for d, _ in pm_datagrams[:200]]
    frames = pm_sflow[0][:200]
    expected_flows = sum(r is not None for f in frames for r in f)
    counters = tshark_sflow_counters(shared(PM_SFLOW), PM_PORT, 200)
    assert counters == 1  # frame 12 holds pm-sflow's one counter sample
    fh = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from flowpivot.cli import main; main()", "collect", "--store", str(store), "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=fh, cwd=REPO,
    )  # fmt: skip
    fh.close()
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            for line in log.read_text().splitlines():
                if line.startswith("listening on "):
                    port = int(line.split()[2].rsplit(":", 1)[1])
            time.sleep(0.05)  # polling for the log line
        assert port is not None, log.read_text()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams:
                s.sendto(d, ("127.0.0.1", port))
                time.sleep(0.0005)  # pacing: the test is about decoding, not overload
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    t = to_output(Store(store).query())
    assert t.num_rows == expected_flows
    assert set(t.column("exporter").to_pylist()) == {"127.0.0.1"}
    assert t.column("sample_pool").null_count == 0
    totals = json.loads((store / "collector" / "stats.json").read_text())["totals"]
    assert totals["flows"] == expected_flows and totals["malformed"] == 0
    assert totals["sflow_counter_samples"] == counters  # the collector's counters show the samples set aside

"""read_pcap: capture formats, link types, IP versions, and bad captures (truncated, garbage).

The captures are written with scapy (an independent writer) around real export datagrams from
the shared akvorado set; what each test expects is what it put in the capture.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import shared
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapWriter, rdpcap

from flowpivot.decode import FlowDecoder
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.pcap import read_pcap

A = "exports/akvorado/"
T0 = 1_700_000_000.125


def Eth(**kw: object) -> Ether:  # noqa: N802
    """Ethernet with fixed documentation MACs (scapy would otherwise try to resolve them)."""
    return Ether(src="00:53:00:11:22:33", dst="00:53:00:44:55:66", **kw)


def payloads(*names: str) -> list[bytes]:
    return [bytes(p[UDP].payload) for n in names for p in rdpcap(str(shared(A + n)))]


@pytest.fixture(scope="module")
def exports() -> list[bytes]:
    """A v9 template, its data (4 flows) and a v5 datagram (29 flows)."""
    return payloads("netflow-template.pcap", "netflow-data.pcap", "netflow-nfv5.pcap")


class RecordingDecoder(FlowDecoder):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, str, int]] = []

    def decode_buffer(self, buf, starts, ends, exporter_index, exporters, received_ms, where=None, **kw):  # type: ignore[no-untyped-def]
        for a, b, e, t in zip(starts, ends, exporter_index, received_ms, strict=True):
            self.seen.append((bytes(buf[a:b]), exporters[e], t))
        return super().decode_buffer(buf, starts, ends, exporter_index, exporters, received_ms, where, **kw)


def read(path: Path, decoder: FlowDecoder | None = None) -> tuple[pa.Table | None, ReadReport, FlowDecoder]:
    dec = decoder or RecordingDecoder()
    report = ReadReport(str(path))
    batches = list(read_pcap(path, report, dec))
    return (pa.Table.from_batches(batches) if batches else None), report, dec


def frames(kind: str, data: list[bytes], src: str) -> list:
    out = []
    for i, d in enumerate(data):
        udp = UDP(sport=40000, dport=2055) / Raw(d)
        ip = IPv6(src=src, dst="2001:db8::fe") / udp if ":" in src else IP(src=src, dst="192.0.2.254") / udp
        pkt = {
            "ethernet": lambda ip=ip: Eth() / ip,
            "vlan": lambda ip=ip: Eth() / Dot1Q(vlan=10) / ip,
            "qinq": lambda ip=ip: Eth() / Dot1AD(vlan=100) / Dot1Q(vlan=10) / ip,
            "sll": lambda ip=ip: CookedLinux(proto=0x86DD if ":" in src else 0x0800) / ip,
            "sll2": lambda ip=ip: CookedLinuxV2(proto=0x86DD if ":" in src else 0x0800) / ip,
            "raw": lambda ip=ip: ip,
            "null": lambda ip=ip: Loopback(type=24 if ":" in src else 2) / ip,
            "ipv6-ext": lambda udp=udp: Eth() / IPv6(src=src, dst="2001:db8::fe") / IPv6ExtHdrDestOpt() / udp,
        }[kind]()
        pkt.time = T0 + i
        out.append(pkt)
    return out


CASES = [
    ("ethernet", "192.0.2.100", "pcap"),
    ("vlan", "192.0.2.100", "pcap"),
    ("qinq", "192.0.2.100", "pcap"),
    ("sll", "192.0.2.100", "pcap"),
    ("sll2", "192.0.2.100", "pcap"),
    ("raw", "192.0.2.100", "pcap"),
    ("null", "192.0.2.100", "pcap"),
    ("ethernet", "2001:db8::100", "pcap"),
    ("ipv6-ext", "2001:db8::100", "pcap"),
    ("sll", "2001:db8::100", "pcap"),
    ("ethernet", "192.0.2.100", "pcap-ns"),
    ("ethernet", "192.0.2.100", "pcap-big-endian"),
    ("vlan", "192.0.2.100", "pcapng"),
    ("ethernet", "2001:db8::100", "pcapng"),
]


def write(path: Path, pkts: list, fmt: str) -> None:
    linktype = 101 if pkts and not isinstance(pkts[0], (Ether, CookedLinux, CookedLinuxV2, Loopback)) else None
    if fmt == "pcapng":
        w = PcapNgWriter(str(path))
        for p in pkts:
            w.write(p)
        w.close()
    else:
        with PcapWriter(str(path), nano=fmt == "pcap-ns", linktype=linktype) as w:
            for p in pkts:
                w.write(p)
    if fmt == "pcap-big-endian":  # rewrite every header field big-endian; the packet bytes stay
        raw = path.read_bytes()
        magic, vmaj, vmin, zone, sig, snap, link = struct.unpack_from("<IHHiIII", raw, 0)
        out = bytearray(struct.pack(">IHHiIII", magic, vmaj, vmin, zone, sig, snap, link))
        off = 24
        while off < len(raw):
            sec, frac, cap, orig = struct.unpack_from("<IIII", raw, off)
            out += struct.pack(">IIII", sec, frac, cap, orig) + raw[off + 16 : off + 16 + cap]
            off += 16 + cap
        path.write_bytes(bytes(out))


@pytest.mark.parametrize("kind,src,fmt", CASES, ids=[f"{k}-{'v6' if ':' in s else 'v4'}-{f}" for k, s, f in CASES])
def test_formats_and_link_types(kind: str, src: str, fmt: str, exports: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / f"c.{fmt}"
    write(path, frames(kind, exports, src), fmt)
    table, report, dec = read(path)
    assert report.problems == [] and report.fmt == ("pcapng" if fmt == "pcapng" else "pcap")
    assert isinstance(dec, RecordingDecoder)
    assert [d for d, _, _ in dec.seen] == exports  # the UDP payloads, byte for byte
    assert {e for _, e, _ in dec.seen} == {src}
    assert [t for _, _, t in dec.seen] == [int(T0 * 1000) + 1000 * i for i in range(len(exports))]
    assert table is not None and table.num_rows == report.records == 4 + 29
    assert set(table.column("exporter").to_pylist()) == {src}


def test_templates_then_data_in_two_captures(tmp_path: Path) -> None:
    dec = FlowDecoder()
    _, r1, _ = read(shared(A + "netflow-template.pcap"), dec)
    table, r2, _ = read(shared(A + "netflow-data.pcap"), dec)
    assert r1.records == 0 and r2.records == 4 and table is not None and table.num_rows == 4


def test_truncated_last_packet_and_garbage_between_good_datagrams(exports: list[bytes], tmp_path: Path) -> None:
    garbage = b"\x00\x09\x00\x01" + b"\xde\xad\xbe\xef" * 10  # looks like v9, its set length is nonsense
    pkts = frames("ethernet", [exports[0], garbage, exports[1], exports[2], exports[2]], "192.0.2.100")
    path = tmp_path / "bad.pcap"
    write(path, pkts, "pcap")
    raw = path.read_bytes()
    last = len(raw) - (16 + len(pkts[-1]))  # offset of the last record header
    path.write_bytes(raw[:-100])  # the last packet loses its end
    # file offset of packet 2's data: global header + packet 1 record
    p2_data = 24 + 16 + len(pkts[0]) + 16
    table, report, dec = read(path)
    assert table is not None and table.num_rows == 4 + 29  # everything but the garbage and the cut packet
    st = dec.stats["192.0.2.100"]
    assert st.malformed == 1 and st.flows == 33
    reasons = {p.where: p.reason for p in report.problems}
    assert any(w.startswith(f"packet 2 (file offset {p2_data}) offset 20") for w in reasons), reasons
    assert f"packet 5 offset {last}" in reasons and "truncated" in reasons[f"packet 5 offset {last}"]


def test_fragments_and_other_packets_are_counted(exports: list[bytes], tmp_path: Path) -> None:
    first = (
        Eth()
        / IP(src="192.0.2.100", dst="192.0.2.254", flags="MF", frag=0)
        / UDP(sport=1, dport=2055)
        / Raw(exports[2][:600])
    )
    later = Eth() / IP(src="192.0.2.100", dst="192.0.2.254", frag=75, proto=17) / Raw(exports[2][600:])
    tcp = Eth() / IP(src="192.0.2.100", dst="192.0.2.254") / TCP()
    arp_like = Eth(type=0x0806) / Raw(b"\0" * 28)
    good = frames("ethernet", exports[:2], "192.0.2.100")
    path = tmp_path / "mixed.pcap"
    write(path, good + [first, later, tcp, arp_like], "pcap")
    table, report, dec = read(path)
    assert (
        report.counters.get("ip_fragments") == 1
        and report.counters.get("not_udp") == 1
        and report.counters.get("not_ip") == 1
    )
    # the first fragment holds a cut v5 datagram: its complete records are kept, the cut reported
    assert table is not None and table.num_rows == 4 + (600 - 24) // 48
    assert dec.stats["192.0.2.100"].malformed == 1


def test_port_filter(exports: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "p.pcap"
    write(path, frames("ethernet", exports, "192.0.2.100"), "pcap")
    report = ReadReport(str(path))
    assert sum(b.num_rows for b in read_pcap(path, report, FlowDecoder(), ports={9999})) == 0
    assert report.counters["other_ports"] == 3


@pytest.mark.parametrize(
    "content", [b"", b"\xd4\xc3\xb2\xa1\x02\x00", b"not a capture at all", b"\x0a\x0d\x0d\x0a" + b"\xff" * 20]
)
def test_unreadable_files_are_problems_not_errors(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(content)
    table, report, _ = read(path)
    assert table is None and len(report.problems) == 1 and report.problems[0].where.startswith("offset 0")


def test_progress_adds_up_to_file_size(exports: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "p.pcap"
    write(path, frames("ethernet", exports * 3, "192.0.2.100"), "pcap")
    seen: list[int] = []
    report = ReadReport(str(path), progress=seen.append)
    list(read_pcap(path, report, FlowDecoder()))
    assert sum(seen) == path.stat().st_size

"""Read flow export datagrams (NetFlow v5/v9, IPFIX) out of pcap and pcapng captures.

Formats: classic pcap in both byte orders with micro- or nanosecond timestamps, and pcapng
(section header, interface description with ``if_tsresol``, enhanced and simple packet blocks).
Link types: Ethernet (with 802.1Q / 802.1ad / QinQ tags), Linux cooked SLL and SLL2, raw IPv4/IPv6,
BSD loopback (null and loop). Network: IPv4 (fragments after the first are skipped and counted)
and IPv6 (extension headers walked), then UDP. The exporter is the UDP source address and the
datagram's receive time is the packet's timestamp. The UDP source port goes to the decoder with
each datagram: templates are scoped per transport session (address, port, observation domain).
"""

from __future__ import annotations

import mmap
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..decode import FlowDecoder
from ..decode.packets import ethernet_type, ip_header
from ..timerange import TimeRange
from .base import ReadReport

__all__ = ["read_pcap", "BATCH_DATAGRAMS"]

BATCH_DATAGRAMS = 16384
MAX_CAPLEN = 1 << 18

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000),
}
PCAPNG_SHB = 0x0A0D0D0A

LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LOOP, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2 = (
    0,
    1,
    101,
    108,
    113,
    228,
    229,
    276,
)
LINK_RAW_ALIASES = {12, 14}  # DLT_RAW on some BSDs
AF_INET6_BSD = {24, 28, 30, 10}

_H = struct.Struct(">H")


class _Skip(Exception):
    """Packet that carries no UDP datagram (reason in the counter name)."""


def _ip_payload(buf: bytes | mmap.mmap, off: int, end: int, link: int) -> tuple[int, int]:
    """(offset of the IP header, IP version) for a packet of the given link type."""
    if link == LINK_ETHERNET:
        found = ethernet_type(buf, off, end)
        if found is None:
            raise _Skip("short_link")
        etype, off = found
    elif link == LINK_SLL:
        if end - off < 16:
            raise _Skip("short_link")
        etype = _H.unpack_from(buf, off + 14)[0]
        off += 16
    elif link == LINK_SLL2:
        if end - off < 20:
            raise _Skip("short_link")
        etype = _H.unpack_from(buf, off)[0]
        off += 20
    elif link in (LINK_NULL, LINK_LOOP):
        if end - off < 4:
            raise _Skip("short_link")
        family = int.from_bytes(buf[off : off + 4], "big" if link == LINK_LOOP else "little")
        if family > 0xFFFF:  # captured on a big-endian host
            family = int.from_bytes(buf[off : off + 4], "little" if link == LINK_LOOP else "big")
        off += 4
        etype = 0x0800 if family == 2 else 0x86DD if family in AF_INET6_BSD else 0
    elif link in (LINK_RAW, LINK_IPV4, LINK_IPV6) or link in LINK_RAW_ALIASES:
        if end - off < 1:
            raise _Skip("short_link")
        v = buf[off] >> 4
        etype = 0x0800 if v == 4 else 0x86DD if v == 6 else 0
    else:
        raise _Skip(f"linktype_{link}")
    if etype == 0x0800:
        return off, 4
    if etype == 0x86DD:
        return off, 6
    raise _Skip("not_ip")


def _udp(buf: bytes | mmap.mmap, off: int, end: int, link: int) -> tuple[str, int, int, int, int]:
    """(exporter address, payload start, payload end, destination port, source port) of a UDP packet."""
    off, _ = _ip_payload(buf, off, end, link)
    found = ip_header(buf, off, end)  # the walker the decoder uses for sampled packet headers
    if found is None:
        raise _Skip("short_ip")
    version, src_b, _dst, proto, length, l4, first_fragment = found
    if not first_fragment:
        raise _Skip("ip_fragments")  # only the first fragment has the UDP header
    if l4 < 0:
        raise _Skip("short_ip")
    if proto != 17:
        raise _Skip("not_udp")
    if version == 4:
        src = socket.inet_ntoa(src_b)
        if length >= l4 - off:
            end = min(end, off + length)
    else:
        src = socket.inet_ntop(socket.AF_INET6, src_b)
        if length > 40:
            end = min(end, off + length)
    off = l4
    if end - off < 8:
        raise _Skip("short_udp")
    sport, dport, ulen = struct.unpack_from(">HHH", buf, off)
    if ulen >= 8:
        end = min(end, off + ulen)
    return src, off + 8, end, dport, sport


@dataclass
class _Batch:
    """Packets of a capture: number, file offsets of each packet's data, link type, timestamp."""

    numbers: list[int]
    starts: list[int]
    ends: list[int]
    links: list[int]
    stamps: list[int]
    snapped: int = 0  # packets captured shorter than they were


def _packets(mm: mmap.mmap | bytes, report: ReadReport) -> Iterator[_Batch]:
    size = len(mm)
    head = bytes(mm[:4])
    if head in PCAP_MAGIC:
        yield from _pcap_packets(mm, size, report, *PCAP_MAGIC[head])
    elif size >= 4 and struct.unpack_from("<I", mm, 0)[0] == PCAPNG_SHB:
        b = _Batch([], [], [], [], [])
        for n, start, end, link, ts, origlen in _pcapng_packets(mm, size, report):
            b.numbers.append(n)
            b.starts.append(start)
            b.ends.append(end)
            b.links.append(link)
            b.stamps.append(ts)
            b.snapped += origlen > end - start
            if len(b.numbers) >= BATCH_DATAGRAMS:
                yield b
                b = _Batch([], [], [], [], [])
        if b.numbers:
            yield b
    else:
        report.problem("offset 0", f"not a pcap or pcapng file (starts with {head.hex() or 'nothing'})")


def _pcap_packets(mm: mmap.mmap | bytes, size: int, report: ReadReport, bo: str, per_ms: int) -> Iterator[_Batch]:
    report.fmt = "pcap"
    if size < 24:
        report.problem("offset 0", f"pcap file header truncated ({size} of 24 bytes)")
        return
    link = struct.unpack_from(bo + "I", mm, 20)[0] & 0x0FFFFFFF
    caplen_at = struct.Struct(bo + "I").unpack_from
    n = 0
    u8 = np.frombuffer(mm, dtype=np.uint8)
    rec = np.dtype([("sec", bo + "u4"), ("frac", bo + "u4"), ("caplen", bo + "u4"), ("origlen", bo + "u4")])
    off = 24
    while off < size:
        # The walk from record to record is sequential; only the lengths are read here, the
        # rest of each record header is gathered with NumPy for the whole batch.
        heads: list[int] = []
        append = heads.append
        stop = None
        while off < size and len(heads) < BATCH_DATAGRAMS:
            if size - off < 16:
                stop = (f"offset {off}", f"packet record header truncated ({size - off} of 16 bytes); file ends here")
                break
            caplen = caplen_at(mm, off + 8)[0]
            if caplen > MAX_CAPLEN:
                stop = (
                    f"packet {n + len(heads) + 1} offset {off}",
                    f"captured length {caplen} is impossible; rest of the file skipped",
                )
                break
            if off + 16 + caplen > size:
                stop = (
                    f"packet {n + len(heads) + 1} offset {off}",
                    f"packet truncated: {caplen} bytes announced, {size - off - 16} in the file; file ends here",
                )
                break
            append(off)
            off += 16 + caplen
        if heads:
            h = np.asarray(heads, dtype=np.int64)
            fields = u8[h[:, None] + np.arange(16)].copy().view(rec).reshape(-1)
            starts = h + 16
            ends = starts + fields["caplen"].astype(np.int64)
            stamps = fields["sec"].astype(np.int64) * 1000 + fields["frac"].astype(np.int64) // per_ms
            origlen = fields["origlen"].astype(np.int64)
            snapped = int((origlen > ends - starts).sum())
            yield _Batch(
                list(range(n + 1, n + 1 + len(heads))),
                starts.tolist(),
                ends.tolist(),
                [link] * len(heads),
                stamps.tolist(),
                snapped,
            )
            n += len(heads)
        if stop is not None:
            report.problem(*stop)
            return


def _pcapng_packets(
    mm: mmap.mmap | bytes, size: int, report: ReadReport
) -> Iterator[tuple[int, int, int, int, int, int]]:
    report.fmt = "pcapng"
    off, n = 0, 0
    bo = "<"
    ifaces: list[tuple[int, float]] = []  # (link type, ms per tick)
    while off < size:
        if size - off < 12:
            report.problem(f"offset {off}", f"pcapng block header truncated ({size - off} bytes); file ends here")
            return
        btype = struct.unpack_from(bo + "I", mm, off)[0]
        if btype == PCAPNG_SHB or struct.unpack_from("<I", mm, off)[0] == PCAPNG_SHB:
            magic = bytes(mm[off + 8 : off + 12])
            if magic == b"\x4d\x3c\x2b\x1a":
                bo = "<"
            elif magic == b"\x1a\x2b\x3c\x4d":
                bo = ">"
            else:
                report.problem(f"offset {off}", "pcapng section header has a bad byte-order magic; file skipped")
                return
            btype = PCAPNG_SHB
            ifaces = []
        blen = struct.unpack_from(bo + "I", mm, off + 4)[0]
        if blen < 12 or blen % 4:
            report.problem(f"offset {off}", f"pcapng block length {blen} is invalid; rest of the file skipped")
            return
        if off + blen > size:
            report.problem(
                f"offset {off}",
                f"pcapng block truncated: {blen} bytes announced, {size - off} in the file; file ends here",
            )
            return
        body = off + 8
        if btype == 1 and blen >= 20:  # interface description
            link = struct.unpack_from(bo + "H", mm, body)[0]
            ifaces.append((link, _tsresol_ms(mm, body + 8, off + blen - 4, bo)))
        elif btype == 6 and blen >= 32:  # enhanced packet
            iface, tsh, tsl, caplen, origlen = struct.unpack_from(bo + "IIIII", mm, body)
            n += 1
            if iface >= len(ifaces) or body + 20 + caplen > off + blen - 4:
                report.problem(
                    f"packet {n} offset {off}",
                    f"enhanced packet block names interface {iface} or overruns its block; skipped",
                )
            else:
                link, ms_per_tick = ifaces[iface]
                yield n, body + 20, body + 20 + caplen, link, int(((tsh << 32) | tsl) * ms_per_tick), origlen
        elif btype == 3 and blen >= 16:  # simple packet: no timestamp
            origlen = struct.unpack_from(bo + "I", mm, body)[0]
            n += 1
            if ifaces:
                caplen = min(origlen, blen - 16)
                yield n, body + 4, body + 4 + caplen, ifaces[0][0], 0, origlen
        off += blen


def _tsresol_ms(mm: mmap.mmap | bytes, off: int, end: int, bo: str) -> float:
    """Milliseconds per timestamp tick from the IDB options (if_tsresol, code 9); default microseconds."""
    while end - off >= 4:
        code, length = struct.unpack_from(bo + "HH", mm, off)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = mm[off + 4]
            return 1000.0 * (2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v)
        off += 4 + length + (-length) % 4
    return 1e-3


def read_pcap(
    path: Path, report: ReadReport, decoder: FlowDecoder, *, ports: set[int] | None = None,
    time_range: TimeRange | None = TimeRange(),  # noqa: B008 (frozen dataclass)
) -> Iterator[pa.RecordBatch]:  # fmt: skip
    """Decode every NetFlow/IPFIX datagram in a pcap or pcapng file with ``decoder``.

    The same decoder carries templates from one file to the next, so a capture of templates
    can be read before a capture of data. ``ports`` (optional) keeps only UDP datagrams sent to
    those destination ports. Bad packets are counted in ``report`` with their file offset.
    A record dated outside ``time_range`` (1970 to the file's modification time plus a day by
    default; None: no check) is left out and reported with its packet.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        size = path.stat().st_size
        mm: mmap.mmap | bytes = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        try:
            # the plausible flow times run to the file's own time plus the slack (see timerange.py):
            # a capture's packet times may be those of a replay, not of the export
            yield from _read(mm, report, decoder, ports, int(path.stat().st_mtime * 1000), time_range)
        finally:
            if isinstance(mm, mmap.mmap):
                try:
                    mm.close()
                except BufferError:  # a view is still referenced (e.g. the reader was abandoned): the GC closes it
                    pass


def _udp_batch(
    mm: mmap.mmap | bytes,
    u8: np.ndarray,
    starts: list[int],
    ends: list[int],
    links: list[int],
    counters: dict[str, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Payload bounds, exporter (index into names, -1: skipped), names, destination and source port
    of a batch of packets.

    Untagged Ethernet + IPv4 (no options, not fragmented) + UDP, the usual capture of an export
    stream, is parsed with NumPy for the whole batch; every other packet goes through :func:`_udp`.
    """
    n = len(starts)
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    fast = (np.asarray(links) == LINK_ETHERNET) & (e - s >= 42)
    idx = np.flatnonzero(fast)
    if len(idx):
        b = s[idx]
        ok = (u8[b + 12] == 8) & (u8[b + 13] == 0) & (u8[b + 14] == 0x45) & (u8[b + 23] == 17)
        ok &= ((u8[b + 20] & 0x3F) == 0) & (u8[b + 21] == 0)  # neither more fragments nor an offset
        fast[idx[~ok]] = False
        idx = idx[ok]
    pay_a = np.zeros(n, dtype=np.int64)
    pay_b = np.zeros(n, dtype=np.int64)
    dport = np.zeros(n, dtype=np.int64)
    sport = np.zeros(n, dtype=np.int64)
    index = np.full(n, -1, dtype=np.int64)  # into names; -1: skipped
    names: list[str] = []
    if len(idx):
        ip = s[idx] + 14
        be16 = lambda k: (u8[ip + k].astype(np.int64) << 8) | u8[ip + k + 1]  # noqa: E731
        total, ulen = be16(2), be16(24)
        end = e[idx]
        end = np.where(total >= 28, np.minimum(end, ip + total), end)
        end = np.where(ulen >= 8, np.minimum(end, ip + 20 + ulen), end)
        pay_a[idx], pay_b[idx], dport[idx], sport[idx] = ip + 28, end, be16(22), be16(20)
        src = (be16(12) << 16) | be16(14)
        uniq, inv = np.unique(src, return_inverse=True)
        names = [socket.inet_ntoa(int(x).to_bytes(4, "big")) for x in uniq]
        index[idx] = inv.reshape(-1)
    known = {name: k for k, name in enumerate(names)}
    for k in np.flatnonzero(~fast).tolist():
        try:
            name, pay_a[k], pay_b[k], dport[k], sport[k] = _udp(mm, starts[k], ends[k], links[k])
        except _Skip as why:
            counters[why.args[0]] = counters.get(why.args[0], 0) + 1
            continue
        if name not in known:
            known[name] = len(names)
            names.append(name)
        index[k] = known[name]
    return pay_a, pay_b, index, names, dport, sport


def _read(
    mm: mmap.mmap | bytes, report: ReadReport, decoder: FlowDecoder, ports: set[int] | None, reference_ms: int,
    time_range: TimeRange | None,
) -> Iterator[pa.RecordBatch]:  # fmt: skip
    u8 = np.frombuffer(mm, dtype=np.uint8) if len(mm) else np.zeros(0, dtype=np.uint8)
    counters: dict[str, int] = {}
    before = _decoder_counts(decoder)
    last_end = 0
    for b in _packets(mm, report):
        pay_a, pay_b, index, names, dports, sports = _udp_batch(mm, u8, b.starts, b.ends, b.links, counters)
        if b.snapped:
            counters["snapped"] = counters.get("snapped", 0) + b.snapped
        udp = index >= 0
        wanted = udp if ports is None else udp & np.isin(dports, sorted(ports))
        if ports is not None:
            counters["other_ports"] = counters.get("other_ports", 0) + int(udp.sum() - wanted.sum())
        keep = np.flatnonzero(wanted)
        if not len(keep):
            continue
        numbers, starts, stamps = b.numbers, b.starts, b.stamps

        def where(i: int, keep: np.ndarray = keep, numbers: list[int] = numbers, starts: list[int] = starts) -> str:
            return f"packet {numbers[keep[i]]} (file offset {starts[keep[i]]})"

        # the datagrams stay in the mapped file: the decoder copies each record once, into its column
        batches, problems = decoder.decode_buffer(
            u8, pay_a[keep], pay_b[keep], index[keep], names, [stamps[k] for k in keep.tolist()], where=where,
            source_ports=sports[keep], reference_ms=reference_ms, time_range=time_range,
        )  # fmt: skip
        for p in problems:
            report.problem(p.where, f"exporter {p.source}: {p.reason}")
        report.advance(b.ends[-1] - last_end)
        last_end = b.ends[-1]
        for batch in batches:
            report.records += batch.num_rows
            yield batch
    report.advance(len(mm) - last_end)
    for k, v in _decoder_counts(decoder).items():
        if v - before.get(k, 0):
            counters[k] = counters.get(k, 0) + v - before.get(k, 0)
    for k, v in counters.items():
        report.count(k, v)


#: The decoder's per-exporter counters an ingest report shows (the collector shows them all).
_REPORTED = ("sflow_counter_samples", "sflow_skipped_records", "other_records", "unsupported")


def _decoder_counts(decoder: FlowDecoder) -> dict[str, int]:
    out: dict[str, int] = {}
    for st in getattr(decoder, "stats", {}).values():
        for k in _REPORTED:
            out[k] = out.get(k, 0) + int(getattr(st, k, 0))
    return out

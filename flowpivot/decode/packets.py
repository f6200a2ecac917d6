"""Flow fields from a sampled packet header: IPFIX dataLinkFrameSection (315) and ipHeaderPacketSection (313).

Packet-sampling exporters (Juniper inline monitoring, Cisco, ...) send the first bytes of each
sampled frame instead of flow fields. flowpivot reads them as a flow of one packet: Ethernet with
802.1Q/802.1ad tags, MPLS label stacks (with a pseudowire control word and an inner Ethernet
frame), then IPv4/IPv6. Tunnels (IP in IP, IPv6 with a segment routing header carrying IPv4 or
IPv6) are unwrapped: the flow describes the innermost packet, the traffic being carried, not the
provider's tunnel endpoints. Bytes are that packet's IP length.

This runs once per sampled packet (sampled exporters send few records); it never raises.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

import numpy as np

__all__ = ["section_roles", "ethernet_type", "ip_header"]

_VLAN = (0x8100, 0x88A8, 0x9100, 0x9200)
_MPLS = (0x8847, 0x8848)
_IPV6_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options (fragment 44 is handled apart)


def ethernet_type(b: bytes | memoryview | mmap.mmap, off: int, end: int) -> tuple[int, int] | None:
    """(EtherType, offset of the payload) of an Ethernet frame at ``off``, past any 802.1Q /
    802.1ad / QinQ tags; None when the frame is cut short."""
    if end - off < 14:
        return None
    etype = b[off + 12] << 8 | b[off + 13]
    off += 14
    while etype in _VLAN:
        if end - off < 4:
            return None
        etype = b[off + 2] << 8 | b[off + 3]
        off += 4
    return etype, off


def ip_header(b: bytes | memoryview | mmap.mmap, off: int, end: int) -> tuple | None:
    """The IP header at ``off`` (IPv4, or IPv6 with its extension headers walked):
    (version, src bytes, dst bytes, protocol, IP length, l4 offset, first fragment).

    The l4 offset is -1 when the extension headers run past ``end``. None: not IPv4/IPv6, or its
    fixed header is cut short (an IPv4 header length under 20 counts as cut). This walker serves
    both the pcap reader (the UDP datagram of an export packet) and the sampled headers here.
    """
    if end - off < 1:
        return None
    version = b[off] >> 4
    if version == 4:
        ihl = (b[off] & 0x0F) * 4
        if end - off < 20 or ihl < 20:
            return None
        proto = b[off + 9]
        length = b[off + 2] << 8 | b[off + 3]
        first_fragment = (b[off + 6] & 0x1F) == 0 and b[off + 7] == 0
        return (
            version,
            bytes(b[off + 12 : off + 16]),
            bytes(b[off + 16 : off + 20]),
            proto,
            length,
            off + ihl,
            first_fragment,
        )
    if version != 6 or end - off < 40:
        return None
    proto = b[off + 6]
    length = (b[off + 4] << 8 | b[off + 5]) + 40
    src, dst = bytes(b[off + 8 : off + 24]), bytes(b[off + 24 : off + 40])
    inner = off + 40
    first_fragment = True
    while proto in _IPV6_EXT or proto == 44:
        if end - inner < 8:
            return version, src, dst, proto, length, -1, first_fragment
        if proto == 44:
            first_fragment = (b[inner + 2] << 8 | b[inner + 3]) & 0xFFF8 == 0
            proto, inner = b[inner], inner + 8
        else:
            proto, inner = b[inner], inner + (b[inner + 1] + 1) * 8
    return version, src, dst, proto, length, inner, first_fragment


def _ethernet(b: bytes | memoryview, off: int, depth: int) -> tuple | None:
    found = ethernet_type(b, off, len(b))
    if found is None:
        return None
    etype, off = found
    if etype in _MPLS:
        while len(b) - off >= 4:
            bottom = b[off + 2] & 1
            off += 4
            if bottom:
                break
        else:
            return None
        if len(b) - off < 1:
            return None
        nibble = b[off] >> 4
        if nibble in (4, 6):
            return _ip(b, off, depth)
        if nibble == 0 and depth < 2:  # pseudowire control word, then the customer's Ethernet frame
            return _ethernet(b, off + 4, depth + 1)
        return None
    if etype == 0x0800 or etype == 0x86DD:
        return _ip(b, off, depth)
    return None


def _ip(b: bytes | memoryview, off: int, depth: int) -> tuple | None:
    """(version, src bytes, dst bytes, protocol, ip length, l4 offset or -1) of the innermost packet."""
    found = ip_header(b, off, len(b))
    if found is None:
        return None
    version, src, dst, proto, length, inner, first_fragment = found
    if inner < 0:
        return version, src, dst, proto, length, -1
    if proto in (4, 41) and depth < 4:  # IPv4 / IPv6 carried inside: the flow is the inner packet
        found = _ip(b, inner, depth + 1)
        if found is not None:
            return found
    return version, src, dst, proto, length, inner if first_fragment else -1


def _fields(section: bytes | memoryview, l2: bool) -> tuple | None:
    found = _ethernet(section, 0, 0) if l2 else _ip(section, 0, 0)
    if found is None:
        return None
    version, src, dst, proto, length, l4 = found
    sport = dport = flags = icmp = 0
    if l4 >= 0:
        rest = len(section) - l4
        if proto in (6, 17, 132) and rest >= 4:
            sport = section[l4] << 8 | section[l4 + 1]
            dport = section[l4 + 2] << 8 | section[l4 + 3]
            if proto == 6 and rest >= 14:
                flags = section[l4 + 13]
        elif proto in (1, 58) and rest >= 2:
            icmp = section[l4] << 8 | section[l4 + 1]
    return version, src, dst, proto, length, sport, dport, flags, icmp


def section_roles(sections: Sequence[bytes | memoryview], l2: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Role arrays (as a template would give them) for sampled headers, and which headers held an IP packet."""
    n = len(sections)
    ok = np.zeros(n, dtype=bool)
    ver = np.zeros(n, dtype=np.uint8)
    src4 = np.zeros(n, dtype=np.uint32)
    dst4 = np.zeros(n, dtype=np.uint32)
    src6 = np.zeros((n, 16), dtype=np.uint8)
    dst6 = np.zeros((n, 16), dtype=np.uint8)
    proto = np.zeros(n, dtype=np.uint8)
    length = np.zeros(n, dtype=np.uint64)
    sport = np.zeros(n, dtype=np.uint16)
    dport = np.zeros(n, dtype=np.uint16)
    flags = np.zeros(n, dtype=np.uint16)
    icmp = np.zeros(n, dtype=np.uint16)
    for i, s in enumerate(sections):
        try:
            f = _fields(s, l2)
        except IndexError:  # a header cut short in a way the length checks did not foresee
            f = None
        if f is None:
            continue
        ok[i] = True
        ver[i], src, dst, proto[i], length[i], sport[i], dport[i], flags[i], icmp[i] = f
        if ver[i] == 4:
            src4[i], dst4[i] = int.from_bytes(src, "big"), int.from_bytes(dst, "big")
        else:
            src6[i], dst6[i] = np.frombuffer(src, np.uint8), np.frombuffer(dst, np.uint8)
    roles: dict[str, np.ndarray] = {
        "ip_version": ver, "src_v4": src4, "dst_v4": dst4, "src_v6": src6, "dst_v6": dst6, "protocol": proto,
        "bytes": length, "packets": np.ones(n, dtype=np.uint64), "src_port": sport, "dst_port": dport,
        "tcp_flags": flags, "icmp_type_code_v4": icmp, "icmp_type_code_v6": icmp,
    }  # fmt: skip
    return roles, ok

"""sFlow version 5 datagrams (https://sflow.org/sflow_version_5.txt) -> flow records.

Pure: bytes in, columns out. :class:`SflowDecoder` keeps only the sequence numbers of each data
source (to count lost samples) and the rows decoded since the last :meth:`SflowDecoder.flush`.

* A flow sample (format 1) or expanded flow sample (format 3) becomes one flow record of one
  packet. Its addresses, ports, protocol, TCP flags and ICMP type/code come from the raw packet
  header record (flow record 1: Ethernet with 802.1Q/802.1ad tags and MPLS, IPv4, IPv6; read by
  :func:`flowpivot.decode.packets.section_roles`, the same walker as IPFIX packet sections), else
  from the sampled IPv4 / IPv6 record (3 / 4). A sample with neither, or whose header holds no IP
  packet (ARP, another header protocol), is no flow: it is counted in ``other_records``.
* ``bytes`` is the layer-3 length, as the schema defines it: the total length in the sampled IP
  header. Not ``frame_length`` minus ``stripped`` minus the link header (sflowtool's NetFlow
  output): that counts Ethernet padding (46 bytes for every 40-byte TCP segment in a minimum
  frame; akvorado's capture has one) and trusts ``stripped``, which some agents fill with the
  bytes left out of the header (``frame_length - header_length``; another akvorado capture). The
  frame is used only when the IP header gives no length (IPv4 total length under 20, IPv6 payload
  length 0: segmentation offload, jumbograms). The sampled IPv4/IPv6 records carry the length.
* ``sampling_rate`` is the sample's ``sampling_rate``, ``sample_pool`` its ``sample_pool``;
  ``in_if``/``out_if`` the input/output interface when its format is 0 (an ifIndex; null for a
  discarded packet or several output interfaces); ``src_as``/``dst_as`` the extended gateway
  record's ``src_as`` and the last AS of its destination AS path (as sflowtool and nfdump read it).
  Other flow records (switch, router, Ethernet, user, URL, MPLS, ...) are counted in
  ``sflow_skipped_records``.
* ``start`` = ``end`` = the arrival time of the datagram: sFlow carries no time per sample.
  ``exporter`` is the agent address of the datagram (not the UDP source),
  ``observation_domain`` its sub-agent id.
* Counter samples (formats 2 and 4) are counted (``sflow_counter_samples``) and set aside.
* Sample sequence numbers are followed per (agent, sub-agent, data source): a gap counts the
  flow samples lost in ``lost_seq``.

Nothing here raises on bad input: a sample that overruns its datagram or holds a record that
overruns the sample is a problem naming the sample (index and offset); the samples before and
after it in the datagram are kept.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..schema import STORE_SCHEMA
from .packets import section_roles
from .records import Context, build_batch

__all__ = ["SFLOW_PORT", "SFLOW_V5", "SflowDecoder", "SflowWalk", "is_sflow_v5"]

SFLOW_V5 = b"\x00\x00\x00\x05"
SFLOW_PORT = 6343  # sFlow's usual collector port (datagrams are recognised by content on any port)

_I = struct.Struct(">I")
_II = struct.Struct(">II")
_FLOW = struct.Struct(">IIIIIIII")  # seq source_id rate pool drops input output nrecords
_FLOW_X = struct.Struct(">IIIIIIIIIII")  # seq type index rate pool drops in_fmt in_val out_fmt out_val nrecords
_HEADER = struct.Struct(">IIII")  # protocol frame_length stripped header_length
_IPV4 = struct.Struct(">II4s4sIII")  # length protocol src dst sport dport tcp_flags
_IPV6 = struct.Struct(">II16s16sIII")
_GATEWAY_AS = struct.Struct(">IIII")  # as src_as src_peer_as n_segments

_VLAN = (0x8100, 0x88A8, 0x9100, 0x9200)
_MPLS = (0x8847, 0x8848)

# kinds of a decoded sample
_ETH, _IP, _STRUCT = 0, 1, 2


def is_sflow_v5(data: bytes | memoryview) -> bool:
    """Whether a datagram is sFlow v5, by content (any port)."""
    return len(data) >= 4 and data[:4] == SFLOW_V5


@dataclass
class SflowWalk:
    """What one datagram gave, besides its rows: problems as (offset, reason) and counters."""

    problems: list[tuple[int, str]] = field(default_factory=list)
    flow_samples: int = 0
    counter_samples: int = 0
    other_samples: int = 0  # samples of other formats or enterprises
    skipped_records: int = 0  # flow records flowpivot does not store (switch, router, Ethernet, ...)
    no_flow: int = 0  # flow samples without a header or IP record flowpivot reads
    lost: int = 0  # flow samples lost to sequence gaps


class _Rows:
    """Decoded flow samples waiting to become a record batch."""

    def __init__(self) -> None:
        self.source: list[str] = []  # the exporter string the datagram came with (counters are kept per source)
        self.received: list[int] = []
        self.agent: list[str] = []
        self.domain: list[int] = []
        self.rate: list[int] = []
        self.pool: list[int] = []
        self.in_if: list[int] = []  # -1: null
        self.out_if: list[int] = []
        self.src_as: list[int] = []  # -1: null (no gateway record)
        self.dst_as: list[int] = []
        self.kind: list[int] = []
        self.header: list[bytes] = []  # _ETH / _IP: the sampled header; _STRUCT: b""
        self.wire_bytes: list[int] = []  # L3 length from frame_length, -1: take the IP length
        # _STRUCT rows: (version, src, dst, protocol, length, sport, dport, tcp_flags)
        self.struct: list[tuple[int, bytes, bytes, int, int, int, int, int] | None] = []

    def __len__(self) -> int:
        return len(self.kind)


def _l3_offset(h: bytes) -> int:
    """Offset of the first IP header in a sampled Ethernet header, -1 when there is none."""
    if len(h) < 14:
        return -1
    etype = h[12] << 8 | h[13]
    off = 14
    while etype in _VLAN and len(h) - off >= 4:
        etype = h[off + 2] << 8 | h[off + 3]
        off += 4
    if etype in _MPLS:
        while len(h) - off >= 4:
            bottom = h[off + 2] & 1
            off += 4
            if bottom:
                return off if len(h) > off and h[off] >> 4 in (4, 6) else -1
        return -1
    return off if etype in (0x0800, 0x86DD) else -1


class SflowDecoder:
    """Decodes sFlow v5 datagrams; call :meth:`walk` per datagram, then :meth:`flush` for the batch."""

    def __init__(self) -> None:
        self._next_seq: dict[tuple[str, int, int, int], int] = {}
        self._rows = _Rows()

    def pending(self) -> int:
        return len(self._rows)

    # ----- one datagram ---------------------------------------------------------------------

    def walk(self, data: bytes | memoryview, exporter: str, received_ms: int) -> SflowWalk:
        """Decode one datagram: its flow samples are kept for :meth:`flush`; returns problems and counts.

        ``exporter`` (the UDP source) names the agent when the datagram gives no agent address.
        """
        w = SflowWalk()
        n = len(data)
        if n < 28:
            w.problems.append((0, f"sFlow v5 datagram of {n} bytes is shorter than its header (28 bytes)"))
            return w
        kind = _I.unpack_from(data, 4)[0]
        if kind == 1:
            agent, off = str(ipaddress.IPv4Address(bytes(data[8:12]))), 12
        elif kind == 2:
            if n < 40:
                w.problems.append((0, f"sFlow v5 datagram of {n} bytes is shorter than its header (40 bytes)"))
                return w
            agent, off = str(ipaddress.IPv6Address(bytes(data[8:24]))), 24
        else:
            agent, off = exporter, 8 if kind == 0 else -1
            if off < 0:
                w.problems.append((4, f"sFlow agent address type {kind} is unknown (1 IPv4, 2 IPv6); datagram skipped"))
                return w
        sub_agent, _seq, _uptime, count = struct.unpack_from(">IIII", data, off)
        off += 16
        for k in range(1, count + 1):
            if n - off < 8:
                w.problems.append(
                    (off, f"sample {k} of {count}: datagram ends ({n - off} bytes left); the rest is missing")
                )
                return w
            fmt, length = _II.unpack_from(data, off)
            body = off + 8
            if length > n - body:
                w.problems.append(
                    (
                        off,
                        f"sample {k} of {count} (format {fmt >> 12}:{fmt & 0xFFF}) has length {length} "
                        f"but {n - body} bytes remain; rest of the datagram skipped",
                    )
                )
                return w
            enterprise, f = fmt >> 12, fmt & 0xFFF
            if enterprise == 0 and f in (1, 3):
                why = self._flow_sample(data, body, body + length, f == 3, agent, sub_agent, exporter, received_ms, w)
                if why:
                    w.problems.append((off, f"sample {k} of {count} (flow sample): {why}; sample skipped"))
            elif enterprise == 0 and f in (2, 4):
                w.counter_samples += 1
            else:
                w.other_samples += 1
            off = min(body + ((length + 3) & ~3), n)  # XDR pads opaque data to 4 bytes (sflowtool skips so too)
        if off != n:
            w.problems.append((off, f"{n - off} bytes after the last of {count} samples; ignored"))
        return w

    def _flow_sample(
        self, data: bytes | memoryview, off: int, end: int, expanded: bool, agent: str, sub_agent: int,
        source_name: str, received_ms: int, w: SflowWalk,
    ) -> str | None:  # fmt: skip
        """Decode one flow sample into a row; returns why it is malformed, or None."""
        if expanded:
            if end - off < _FLOW_X.size:
                return f"{end - off} bytes, shorter than the expanded flow sample header ({_FLOW_X.size})"
            seq, s_type, s_index, rate, pool, _drops, in_fmt, in_val, out_fmt, out_val, nrec = _FLOW_X.unpack_from(
                data, off
            )
            off += _FLOW_X.size
        else:
            if end - off < _FLOW.size:
                return f"{end - off} bytes, shorter than the flow sample header ({_FLOW.size})"
            seq, source, rate, pool, _drops, inp, outp, nrec = _FLOW.unpack_from(data, off)
            s_type, s_index = source >> 24, source & 0xFFFFFF
            in_fmt, in_val, out_fmt, out_val = inp >> 30, inp & 0x3FFFFFFF, outp >> 30, outp & 0x3FFFFFFF
            off += _FLOW.size
        header: bytes | None = None
        hkind, wire = _ETH, -1
        ipst: tuple[int, bytes, bytes, int, int, int, int, int] | None = None
        src_as = dst_as = -1
        skipped = 0
        for r in range(1, nrec + 1):
            if end - off < 8:
                return f"record {r} of {nrec}: sample ends ({end - off} bytes left)"
            rfmt, rlen = _II.unpack_from(data, off)
            rb = off + 8
            rend, off = rb + rlen, min(rb + ((rlen + 3) & ~3), end)
            if rlen > end - rb:
                return f"record {r} of {nrec} (format {rfmt >> 12}:{rfmt & 0xFFF}) has length {rlen} but {end - rb} bytes remain"
            if rfmt == 1:  # raw packet header
                if rlen < 16:
                    return f"record {r} (raw packet header) of {rlen} bytes, shorter than its 16-byte header"
                proto, frame_len, stripped, hlen = _HEADER.unpack_from(data, rb)
                if hlen > rlen - 16:
                    return f"record {r} (raw packet header) announces {hlen} header bytes but holds {rlen - 16}"
                if proto not in (1, 11, 12):
                    skipped += 1  # a header protocol flowpivot does not read (token ring, FDDI, PPP, ...)
                    continue
                header = bytes(data[rb + 16 : rb + 16 + hlen])
                hkind = _ETH if proto == 1 else _IP
                l3 = _l3_offset(header) if proto == 1 else 0
                wire = frame_len - stripped - l3 if l3 >= 0 and frame_len - stripped - l3 >= 20 else -1
            elif rfmt in (3, 4):  # sampled IPv4 / IPv6
                st, ver = (_IPV4, 4) if rfmt == 3 else (_IPV6, 6)
                if rlen < st.size:
                    return f"record {r} (sampled IPv{ver}) of {rlen} bytes, shorter than {st.size}"
                length, protocol, src, dst, sport, dport, flags = st.unpack_from(data, rb)
                ipst = (ver, src, dst, protocol & 0xFF, length, sport & 0xFFFF, dport & 0xFFFF, flags & 0xFF)
            elif rfmt == 1003:  # extended gateway: source AS and the destination AS path
                p = rb
                at = _I.unpack_from(data, p)[0] if rlen >= 4 else 0
                if at not in (0, 1, 2):
                    return f"record {r} (extended gateway): next hop address type {at} is unknown"
                p += (4, 8, 20)[at]
                if p + 16 > rend:
                    return f"record {r} (extended gateway) of {rlen} bytes is cut short"
                _as, s_as, _peer, nseg = _GATEWAY_AS.unpack_from(data, p)
                p += 16
                last = 0
                for _ in range(nseg):
                    if p + 8 > rend:
                        return f"record {r} (extended gateway): AS path cut short"
                    _stype, slen = _II.unpack_from(data, p)
                    p += 8
                    if slen > (rend - p) // 4:
                        return f"record {r} (extended gateway): AS path segment of {slen} ASes cut short"
                    if slen:
                        last = _I.unpack_from(data, p + 4 * (slen - 1))[0]
                    p += 4 * slen
                src_as, dst_as = s_as, last
            else:
                skipped += 1
        w.skipped_records += skipped
        w.flow_samples += 1
        key = (agent, sub_agent, s_type, s_index)
        expected = self._next_seq.get(key)
        self._next_seq[key] = (seq + 1) & 0xFFFFFFFF
        if expected is not None:
            gap = (seq - expected) & 0xFFFFFFFF
            if 0 < gap < 1 << 31:  # larger: reordered or restarted, not lost
                w.lost += gap
        if header is None and ipst is None:
            w.no_flow += 1
            return None
        rows = self._rows
        rows.source.append(source_name)
        rows.received.append(received_ms)
        rows.agent.append(agent)
        rows.domain.append(sub_agent)
        rows.rate.append(rate)
        rows.pool.append(pool)
        rows.in_if.append(in_val if in_fmt == 0 else -1)
        rows.out_if.append(out_val if out_fmt == 0 else -1)
        rows.src_as.append(src_as)
        rows.dst_as.append(dst_as)
        if header is not None:
            rows.kind.append(hkind)
            rows.header.append(header)
            rows.wire_bytes.append(wire)
            rows.struct.append(None)
        else:
            rows.kind.append(_STRUCT)
            rows.header.append(b"")
            rows.wire_bytes.append(-1)
            rows.struct.append(ipst)
        return None

    # ----- rows to a batch ------------------------------------------------------------------

    def flush(self) -> tuple[pa.RecordBatch | None, dict[str, int], dict[str, int]]:
        """The rows decoded since the last flush as one STORE_SCHEMA batch (None if none); per
        source (the exporter string given to :meth:`walk`), the flows in it and the samples
        dropped because their header held no IP packet."""
        rows, self._rows = self._rows, _Rows()
        n = len(rows)
        if n == 0:
            return None, {}, {}
        kind = np.asarray(rows.kind, dtype=np.int8)
        roles: dict[str, np.ndarray] = {
            "ip_version": np.zeros(n, dtype=np.uint8),
            "src_v4": np.zeros(n, dtype=np.uint32),
            "dst_v4": np.zeros(n, dtype=np.uint32),
            "src_v6": np.zeros((n, 16), dtype=np.uint8),
            "dst_v6": np.zeros((n, 16), dtype=np.uint8),
            "protocol": np.zeros(n, dtype=np.uint8),
            "bytes": np.zeros(n, dtype=np.uint64),
            "packets": np.ones(n, dtype=np.uint64),
            "src_port": np.zeros(n, dtype=np.uint16),
            "dst_port": np.zeros(n, dtype=np.uint16),
            "tcp_flags": np.zeros(n, dtype=np.uint16),
            "icmp_type_code_v4": np.zeros(n, dtype=np.uint16),
            "icmp_type_code_v6": np.zeros(n, dtype=np.uint16),
        }
        ok = np.zeros(n, dtype=bool)
        for k, l2 in ((_ETH, True), (_IP, False)):
            idx = np.flatnonzero(kind == k)
            if not len(idx):
                continue
            got, good = section_roles([rows.header[i] for i in idx.tolist()], l2)
            ok[idx] = good
            for role, arr in roles.items():
                arr[idx] = got[role]
        icmp_known = kind != _STRUCT
        for i in np.flatnonzero(kind == _STRUCT).tolist():
            ver, src, dst, proto, length, sport, dport, flags = rows.struct[i]  # type: ignore[misc]
            ok[i] = True
            roles["ip_version"][i] = ver
            if ver == 4:
                roles["src_v4"][i], roles["dst_v4"][i] = int.from_bytes(src, "big"), int.from_bytes(dst, "big")
            else:
                roles["src_v6"][i] = np.frombuffer(src, np.uint8)
                roles["dst_v6"][i] = np.frombuffer(dst, np.uint8)
            roles["protocol"][i], roles["bytes"][i] = proto, length
            roles["src_port"][i], roles["dst_port"][i], roles["tcp_flags"][i] = sport, dport, flags
        wire = np.asarray(rows.wire_bytes, dtype=np.int64)
        ip_len = roles["bytes"].astype(np.int64)
        v = roles["ip_version"]
        no_length = ((v == 4) & (ip_len < 20)) | ((v == 6) & (ip_len == 40) & (wire > 40))  # TSO, jumbograms
        roles["bytes"] = np.where(no_length & (wire >= 0), wire, ip_len).astype(np.uint64)
        received = np.asarray(rows.received, dtype=np.int64)
        roles["start_ms"] = roles["end_ms"] = received
        sources = np.asarray(rows.source, dtype=object)
        names, inv = np.unique(sources, return_inverse=True)
        inv = inv.reshape(-1)
        flows = dict(zip(names.tolist(), np.bincount(inv[ok], minlength=len(names)).tolist(), strict=True))
        lost = np.bincount(inv[~ok], minlength=len(names)).tolist()
        dropped = {name: c for name, c in zip(names.tolist(), lost, strict=True) if c}
        if not ok.all():
            roles = {r: v[ok] for r, v in roles.items()}
        m = int(ok.sum())
        if m == 0:
            return None, {}, dropped

        def col(values: list[int]) -> np.ndarray:
            return np.asarray(values, dtype=np.int64)[ok]

        rate = col(rows.rate).astype(np.uint64)
        ctx = Context(np.ones(m, dtype=np.int64), received[ok], received[ok], "", 0, rate)
        batch = build_batch(roles, m, 5, ctx)
        agents = np.asarray(rows.agent, dtype=object)[ok]
        extra: dict[str, pa.Array] = {
            "exporter": pa.array(agents.tolist(), pa.string()),
            "observation_domain": pa.array(col(rows.domain), pa.uint32()),
            "sample_pool": pa.array(col(rows.pool), pa.uint32()),
        }
        for name in ("in_if", "out_if", "src_as", "dst_as"):
            v = col(getattr(rows, name))
            extra[name] = pa.array(np.maximum(v, 0), pa.uint32(), mask=v < 0)
        if not icmp_known[ok].all():  # sampled IPv4/IPv6 records carry no ICMP type and code
            hide = ~icmp_known[ok]
            for name in ("icmp_type", "icmp_code"):
                c = batch.column(STORE_SCHEMA.get_field_index(name))
                extra[name] = pa.array(
                    np.asarray(c.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.uint8),
                    pa.uint8(),
                    mask=hide | np.asarray(c.is_null().to_numpy(zero_copy_only=False), dtype=bool),
                )
        arrays = [extra.get(f.name, batch.column(i)) for i, f in enumerate(STORE_SCHEMA)]
        return pa.RecordBatch.from_arrays(arrays, schema=STORE_SCHEMA), {k: v for k, v in flows.items() if v}, dropped

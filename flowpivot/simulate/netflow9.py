"""NetFlow v9 export datagrams (RFC 3954) in pcap files, built from numpy structured big-endian arrays.

Each exporter sends, per its source id, data FlowSets for an IPv4 template (256) and an IPv6 template
(257), plus an options template (258) carrying the sampler: FLOW_SAMPLER_ID (48), FLOW_SAMPLER_MODE
(49), FLOW_SAMPLER_RANDOM_INTERVAL (50), SAMPLING_INTERVAL (34) and SAMPLING_ALGORITHM (35), scoped
to the system. Templates and options are re-sent every 20 export packets and at the start of each
write (every file, and every few hours within it), so a single day's file can be decoded alone. The header's sequence number counts export packets
per source id; sysUptime and unix_secs are whole-second export times (so flow times are exact to the
millisecond when decoded as unix_secs*1000 - sysUptime + FIRST_SWITCHED).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Exporter", "V9Writer", "REC4", "REC6", "TEMPLATE_V4", "TEMPLATE_V6", "COLLECTOR_PORT"]

COLLECTOR = "192.0.2.100"
COLLECTOR_PORT = 2055
MAX_PAYLOAD = 1400  # UDP payload bytes per datagram
TEMPLATE_EVERY = 20

_TAIL = [
    ("sport", ">u2", 7, 2),
    ("dport", ">u2", 11, 2),
    ("proto", "u1", 4, 1),
    ("flags", "u1", 6, 1),
    ("sampler", "u1", 48, 1),
    ("direction", "u1", 61, 1),
    ("packets", ">u4", 2, 4),
    ("bytes", ">u4", 1, 4),
    ("in_if", ">u2", 10, 2),
    ("out_if", ">u2", 14, 2),
    ("first", ">u4", 22, 4),
    ("last", ">u4", 21, 4),
]
TEMPLATE_V4 = [("src", ">u4", 8, 4), ("dst", ">u4", 12, 4), *_TAIL]
TEMPLATE_V6 = [("src", ("u1", 16), 27, 16), ("dst", ("u1", 16), 28, 16), *_TAIL]
REC4 = np.dtype([(n, t) for n, t, _, _ in TEMPLATE_V4])
REC6 = np.dtype([(n, t) for n, t, _, _ in TEMPLATE_V6])
TID4, TID6, TID_OPT = 256, 257, 258
PER_DGRAM = {False: (MAX_PAYLOAD - 24) // REC4.itemsize, True: (MAX_PAYLOAD - 24) // REC6.itemsize}

# pcap record header, Ethernet, IPv4, UDP, NetFlow v9 header: one fixed prefix per datagram.
PREFIX = np.dtype(
    [
        ("ts_sec", "<u4"), ("ts_usec", "<u4"), ("incl_len", "<u4"), ("orig_len", "<u4"),
        ("eth_dst", "u1", 6), ("eth_src", "u1", 6), ("eth_type", ">u2"),
        ("ip_vhl", "u1"), ("ip_tos", "u1"), ("ip_len", ">u2"), ("ip_id", ">u2"), ("ip_frag", ">u2"),
        ("ip_ttl", "u1"), ("ip_proto", "u1"), ("ip_sum", ">u2"), ("ip_src", ">u4"), ("ip_dst", ">u4"),
        ("udp_sport", ">u2"), ("udp_dport", ">u2"), ("udp_len", ">u2"), ("udp_sum", ">u2"),
        ("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("unix_secs", ">u4"), ("sequence", ">u4"), ("source_id", ">u4"),
    ]
)  # fmt: skip
PCAP_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


@dataclass
class Exporter:
    address: str
    source_id: int
    boot_ms: int
    sequence: int = 0
    ip_id: int = 0

    @property
    def udp_port(self) -> int:
        return 49152 + self.source_id


def _template_body(exporter: Exporter, sampling: int) -> bytes:
    """Template FlowSet (both data templates), options template FlowSet, options data FlowSet."""
    t = b""
    for tid, fields in ((TID4, TEMPLATE_V4), (TID6, TEMPLATE_V6)):
        t += struct.pack(">HH", tid, len(fields)) + b"".join(struct.pack(">HH", fid, ln) for _, _, fid, ln in fields)
    fs0 = struct.pack(">HH", 0, 4 + len(t)) + t
    opts = [(48, 1), (49, 1), (50, 4), (34, 4), (35, 1)]
    body = struct.pack(">HHH", TID_OPT, 4, 4 * len(opts)) + struct.pack(">HH", 1, 4)
    body += b"".join(struct.pack(">HH", f, ln) for f, ln in opts)
    body += b"\0" * (-(4 + len(body)) % 4)
    fs1 = struct.pack(">HH", 1, 4 + len(body)) + body
    # scope: the system, by the exporter's address; sampler 1, random mode (2) at 1 in N
    rec = struct.pack(">IBBIIB", int(ipaddress.IPv4Address(exporter.address)), 1, 2, sampling, sampling, 2)
    rec += b"\0" * (-(4 + len(rec)) % 4)
    fs2 = struct.pack(">HH", TID_OPT, 4 + len(rec)) + rec
    return fs0 + fs1 + fs2


TEMPLATE_RECORDS = 4  # two templates, one options template, one options data record


def fill_transport(
    pre: np.ndarray,
    slot_t: np.ndarray,
    e_of: np.ndarray,
    ipid: np.ndarray,
    udp_len: np.ndarray,
    exporters: list[Exporter],
    dport: int,
) -> None:
    """The pcap record, Ethernet, IPv4 and UDP header fields of export datagrams (a prefix dtype
    of any export protocol that starts with those fields); the IP checksum is left to the caller,
    once the protocol's own header is filled."""
    n = len(slot_t)
    pre["ts_sec"] = slot_t
    rank = np.arange(n) - np.searchsorted(slot_t, slot_t)  # keep packets of one second apart, in send order
    pre["ts_usec"] = np.minimum(rank * 10, 999_999)
    pre["incl_len"] = pre["orig_len"] = 14 + 20 + udp_len
    pre["eth_dst"] = np.array([0x00, 0x00, 0x5E, 0x00, 0x53, 0x01], np.uint8)
    pre["eth_src"][:, 0] = 0x02
    pre["eth_src"][:, 5] = 1 + e_of
    pre["eth_type"] = 0x0800
    pre["ip_vhl"] = 0x45
    pre["ip_len"] = 20 + udp_len
    pre["ip_id"] = ipid & 0xFFFF
    pre["ip_frag"] = 0x4000
    pre["ip_ttl"] = 64
    pre["ip_proto"] = 17
    ex_addr = np.array([int(ipaddress.IPv4Address(e.address)) for e in exporters], np.uint32)
    pre["ip_src"] = ex_addr[e_of]
    pre["ip_dst"] = int(ipaddress.IPv4Address(COLLECTOR))
    pre["udp_sport"] = np.array([e.udp_port for e in exporters], np.uint16)[e_of]
    pre["udp_dport"] = dport
    pre["udp_len"] = udp_len


def _ip_checksum(hdr: np.ndarray) -> np.ndarray:
    """RFC 791 header checksums of n 20-byte headers (uint8 rows), checksum field zero."""
    words = hdr.reshape(len(hdr), 10, 2).astype(np.uint32)
    s = (words[:, :, 0] << 8 | words[:, :, 1]).sum(axis=1)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s & 0xFFFF).astype(np.uint16)


class V9Writer:
    """Encodes flow columns as NetFlow v9 datagrams, one pcap file per call, keeping exporter state."""

    def __init__(self, exporters: list[Exporter], sampling: int) -> None:
        self.exporters = exporters
        self.sampling = sampling
        self.template = [_template_body(e, sampling) for e in exporters]

    def write(
        self, path: Path, f: dict[str, np.ndarray], v4: np.ndarray, v6: np.ndarray, append: bool = False
    ) -> dict[str, int]:
        """Write flows ``f`` (columns incl. export, exporter; src/dst as address-book indices) to ``path``.

        Each call starts every exporter's packets with the templates; ``append`` adds to an existing file.
        """
        packets = []  # per exporter: (seconds, kind, body pieces ...)
        bodies: list[bytes] = []
        n_records = 0
        for e_ix, exp in enumerate(self.exporters):
            mine = np.flatnonzero(f["exporter"] == e_ix)
            streams = []
            for is6 in (False, True):
                ix = mine[f["v6"][mine] == is6]
                if len(ix) == 0:
                    continue
                ix = ix[np.argsort(f["export"][ix], kind="stable")]
                rec = self._records(f, ix, exp, is6, v4, v6)
                buf = rec.tobytes()
                per = PER_DGRAM[is6]
                nd = -(-len(ix) // per)
                lo = np.arange(nd) * per
                hi = np.minimum(lo + per, len(ix))
                t = -(-f["export"][ix][hi - 1] // 1000)  # whole seconds, rounded up
                streams.append((t, np.full(nd, is6), lo * rec.itemsize, hi * rec.itemsize, hi - lo, buf, rec.itemsize))
                n_records += len(ix)
            if not streams:
                continue
            t = np.concatenate([s[0] for s in streams])
            fam = np.concatenate([s[1] for s in streams])
            b0 = np.concatenate([s[2] for s in streams])
            b1 = np.concatenate([s[3] for s in streams])
            cnt = np.concatenate([s[4] for s in streams])
            src = np.concatenate([np.full(len(s[0]), len(bodies) + i) for i, s in enumerate(streams)])
            bodies.extend(s[5] for s in streams)
            order = np.lexsort((fam, t))
            t, fam, b0, b1, cnt, src = t[order], fam[order], b0[order], b1[order], cnt[order], src[order]
            # templates at slot 0, 20, 40, ... of this file's packets from this exporter
            n_data = len(t)
            n_tmpl = -(-n_data // (TEMPLATE_EVERY - 1))
            total = n_data + n_tmpl
            is_tmpl = np.zeros(total, bool)
            is_tmpl[np.arange(n_tmpl) * TEMPLATE_EVERY] = True
            slot_t = np.zeros(total, np.int64)
            slot_t[~is_tmpl] = t
            nxt = np.minimum(np.arange(n_tmpl) * TEMPLATE_EVERY + 1, total - 1)
            slot_t[is_tmpl] = slot_t[nxt]
            kind = np.full(total, -1, np.int64)  # -1 template, else index into the data arrays
            kind[~is_tmpl] = np.arange(n_data)
            seq = exp.sequence + np.arange(total, dtype=np.int64)
            exp.sequence += total
            ipid = exp.ip_id + np.arange(total, dtype=np.int64)
            exp.ip_id += total
            packets.append((slot_t, np.full(total, e_ix), kind, seq, ipid, (fam, b0, b1, cnt, src)))
        if not packets:
            if not append:
                Path(path).write_bytes(PCAP_GLOBAL)
            return {"datagrams": 0, "records": 0, "template_datagrams": 0}
        # all exporters, in time order
        slot_t = np.concatenate([p[0] for p in packets])
        e_of = np.concatenate([p[1] for p in packets])
        kind = np.concatenate([p[2] for p in packets])
        seq = np.concatenate([p[3] for p in packets])
        ipid = np.concatenate([p[4] for p in packets])
        base = np.cumsum([0] + [len(p[5][0]) for p in packets])[:-1]
        gkind = np.concatenate([np.where(p[2] >= 0, p[2] + b, -1) for p, b in zip(packets, base, strict=True)])
        fam = np.concatenate([p[5][0] for p in packets])
        b0 = np.concatenate([p[5][1] for p in packets])
        b1 = np.concatenate([p[5][2] for p in packets])
        cnt = np.concatenate([p[5][3] for p in packets])
        src = np.concatenate([p[5][4] for p in packets])
        order = np.lexsort((seq, e_of, slot_t))
        slot_t, e_of, kind, gkind, seq, ipid = (
            slot_t[order],
            e_of[order],
            kind[order],
            gkind[order],
            seq[order],
            ipid[order],
        )
        n = len(slot_t)
        tm = gkind < 0
        gk = np.where(tm, 0, gkind)
        tlen = np.array([len(b) for b in self.template], np.int64)
        payload = np.where(tm, tlen[e_of], 4 + (b1[gk] - b0[gk]))  # after the v9 header
        count = np.where(tm, TEMPLATE_RECORDS, cnt[gk])
        pre = np.zeros(n, PREFIX)
        udp_len = 8 + 20 + payload
        fill_transport(pre, slot_t, e_of, ipid, udp_len, self.exporters, COLLECTOR_PORT)
        pre["version"] = 9
        pre["count"] = count
        boot = np.array([e.boot_ms for e in self.exporters], np.int64)
        pre["uptime"] = (slot_t * 1000 - boot[e_of]) % (1 << 32)
        pre["unix_secs"] = slot_t
        pre["sequence"] = seq % (1 << 32)
        pre["source_id"] = np.array([e.source_id for e in self.exporters], np.uint32)[e_of]
        raw = pre.view(np.uint8).reshape(n, PREFIX.itemsize)
        pre["ip_sum"] = _ip_checksum(np.ascontiguousarray(raw[:, 30:50]))
        fsh = np.zeros(n, [("id", ">u2"), ("len", ">u2")])
        fsh["id"] = np.where(fam[gk], TID6, TID4)
        fsh["len"] = 4 + (b1[gk] - b0[gk])
        pview = memoryview(pre.tobytes())
        fview = memoryview(fsh.tobytes())
        bviews = [memoryview(b) for b in bodies]
        P = PREFIX.itemsize
        tm_l, e_l, gk_l = tm.tolist(), e_of.tolist(), gk.tolist()
        b0_l, b1_l, src_l = b0.tolist(), b1.tolist(), src.tolist()
        pieces: list[bytes | memoryview] = [] if append else [PCAP_GLOBAL]
        for i in range(n):  # one step per datagram (~30 flows); the bytes themselves were built above
            pieces.append(pview[i * P : (i + 1) * P])
            if tm_l[i]:
                pieces.append(self.template[e_l[i]])
            else:
                g = gk_l[i]
                pieces.append(fview[i * 4 : i * 4 + 4])
                pieces.append(bviews[src_l[g]][b0_l[g] : b1_l[g]])
        with open(path, "ab" if append else "wb") as fh:
            fh.write(b"".join(pieces))
        return {"datagrams": n, "records": n_records, "template_datagrams": int(tm.sum())}

    def _records(
        self, f: dict[str, np.ndarray], ix: np.ndarray, exp: Exporter, fam: bool, v4: np.ndarray, v6: np.ndarray
    ) -> np.ndarray:
        rec = np.zeros(len(ix), REC6 if fam else REC4)
        if fam:
            rec["src"] = v6[f["src"][ix]]
            rec["dst"] = v6[f["dst"][ix]]
        else:
            rec["src"] = v4[f["src"][ix]]
            rec["dst"] = v4[f["dst"][ix]]
        rec["sport"] = f["sport"][ix]
        rec["dport"] = f["dport"][ix]
        rec["proto"] = f["proto"][ix]
        rec["flags"] = f["flags"][ix]
        rec["sampler"] = 1
        rec["direction"] = 0
        rec["packets"] = np.minimum(f["packets"][ix], 0xFFFFFFFF)
        rec["bytes"] = np.minimum(f["bytes"][ix], 0xFFFFFFFF)
        rec["in_if"] = f["in_if"][ix]
        rec["out_if"] = f["out_if"][ix]
        rec["first"] = (f["start"][ix] - exp.boot_ms) % (1 << 32)
        rec["last"] = (f["end"][ix] - exp.boot_ms) % (1 << 32)
        return rec

"""IPFIX export messages (RFC 7011) in pcap files, built from numpy structured big-endian arrays.

Each exporter is one observation domain (its ``source_id``) sending data sets for an IPv4 template
(256) and an IPv6 template (257): addresses, ports, protocolIdentifier, tcpControlBits (2 octets,
RFC 7125), ingress/egressInterface, packetDeltaCount, octetDeltaCount, flowStart/EndMilliseconds and
the selectorId of the selection process that sampled them. An options template (258) scoped to that
selectorId announces the sampling as PSAMP does (RFC 5477, IANA selectorAlgorithm): 1, systematic
count-based, with samplingPacketInterval 1 and samplingPacketSpace N-1; or 3, random n-out-of-N,
with samplingSize 1 and samplingPopulation N. Templates and the options record are re-sent in every
20th message and at the start of each write, as UDP transport asks (RFC 7011 section 10.3.6).

The header's sequence number counts the data records (options data records included) sent in the
domain before the message; its export time is the whole second, rounded up, after the last record
was due, and is also the pcap packet time.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .netflow9 import MAX_PAYLOAD, PCAP_GLOBAL, Exporter, _ip_checksum, fill_transport

__all__ = ["IpfixWriter", "ALGORITHMS", "IPFIX_PORT", "REC4", "REC6"]

IPFIX_PORT = 4739  # IANA's port for IPFIX over UDP
TEMPLATE_EVERY = 20
HEADER = 16
#: sampling name -> IANA selectorAlgorithm and the two information elements that state its rate
ALGORITHMS = {"systematic": (1, 305, 306), "random": (3, 309, 310)}

_TAIL = [
    ("sport", ">u2", 7, 2),
    ("dport", ">u2", 11, 2),
    ("proto", "u1", 4, 1),
    ("flags", ">u2", 6, 2),
    ("in_if", ">u4", 10, 4),
    ("out_if", ">u4", 14, 4),
    ("packets", ">u8", 2, 8),
    ("bytes", ">u8", 1, 8),
    ("start", ">u8", 152, 8),
    ("end", ">u8", 153, 8),
    ("selector", ">u2", 302, 2),  # reduced-size encoding (RFC 7011 section 6.2) of an unsigned64
]
TEMPLATE_V4 = [("src", ">u4", 8, 4), ("dst", ">u4", 12, 4), *_TAIL]
TEMPLATE_V6 = [("src", ("u1", 16), 27, 16), ("dst", ("u1", 16), 28, 16), *_TAIL]
REC4 = np.dtype([(n, t) for n, t, _, _ in TEMPLATE_V4])
REC6 = np.dtype([(n, t) for n, t, _, _ in TEMPLATE_V6])
TID4, TID6, TID_OPT = 256, 257, 258
PER_MESSAGE = {False: (MAX_PAYLOAD - HEADER - 4) // REC4.itemsize, True: (MAX_PAYLOAD - HEADER - 4) // REC6.itemsize}

# pcap record header, Ethernet, IPv4, UDP, IPFIX message header: one fixed prefix per datagram.
PREFIX = np.dtype(
    [
        ("ts_sec", "<u4"), ("ts_usec", "<u4"), ("incl_len", "<u4"), ("orig_len", "<u4"),
        ("eth_dst", "u1", 6), ("eth_src", "u1", 6), ("eth_type", ">u2"),
        ("ip_vhl", "u1"), ("ip_tos", "u1"), ("ip_len", ">u2"), ("ip_id", ">u2"), ("ip_frag", ">u2"),
        ("ip_ttl", "u1"), ("ip_proto", "u1"), ("ip_sum", ">u2"), ("ip_src", ">u4"), ("ip_dst", ">u4"),
        ("udp_sport", ">u2"), ("udp_dport", ">u2"), ("udp_len", ">u2"), ("udp_sum", ">u2"),
        ("version", ">u2"), ("length", ">u2"), ("export_time", ">u4"), ("sequence", ">u4"), ("domain", ">u4"),
    ]
)  # fmt: skip


def _set(set_id: int, body: bytes) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def _template_message(selector: int, algorithm: str, sampling: int) -> bytes:
    """Template set (both data templates), options template set, options data set (one record)."""
    t = b""
    for tid, fields in ((TID4, TEMPLATE_V4), (TID6, TEMPLATE_V6)):
        t += struct.pack(">HH", tid, len(fields)) + b"".join(struct.pack(">HH", ie, ln) for _, _, ie, ln in fields)
    alg, ie1, ie2 = ALGORITHMS[algorithm]
    opts = [(302, 8), (304, 2), (ie1, 4), (ie2, 4)]  # scope first: the selectorId
    o = struct.pack(">HHH", TID_OPT, len(opts), 1) + b"".join(struct.pack(">HH", ie, ln) for ie, ln in opts)
    # systematic: 1 packet selected, N-1 skipped; random: 1 drawn out of every N
    v1, v2 = (1, sampling - 1) if alg == 1 else (1, sampling)
    rec = struct.pack(">QHII", selector, alg, v1, v2)
    return _set(2, t) + _set(3, o) + _set(TID_OPT, rec)


class IpfixWriter:
    """Encodes flow columns as IPFIX messages, one pcap file per call, keeping exporter state.

    ``sampling`` is one rate for every exporter or one per exporter; ``algorithm`` is ``"random"``
    or ``"systematic"`` (the model the flows were sampled with, see ``traffic.to_flows``).
    """

    def __init__(self, exporters: list[Exporter], sampling: int | list[int], algorithm: str = "random") -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown sampling algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
        rates = [sampling] * len(exporters) if isinstance(sampling, int) else list(sampling)
        if len(rates) != len(exporters) or min(rates, default=1) < 1:
            raise ValueError(f"sampling {sampling!r}: need a rate >= 1 for each of the {len(exporters)} exporters")
        self.exporters = exporters
        self.sampling = rates
        self.algorithm = algorithm
        self.template = [_template_message(e.source_id, algorithm, n) for e, n in zip(exporters, rates, strict=True)]

    def write(
        self, path: Path, f: dict[str, np.ndarray], v4: np.ndarray, v6: np.ndarray, append: bool = False
    ) -> dict[str, int]:
        """Write flows ``f`` (columns incl. export, exporter; src/dst as address-book indices) to ``path``.

        Each call starts every exporter's messages with the templates; ``append`` adds to an existing file.
        Returns the counts of datagrams, flow records and template datagrams written.
        """
        msgs: list[tuple[np.ndarray, ...]] = []  # per exporter: time, exporter, seq, ip id, body index, count
        bodies: list[bytes] = list(self.template)  # body i < len(exporters): that exporter's templates
        n_records = 0
        for e_ix, exp in enumerate(self.exporters):
            mine = np.flatnonzero(f["exporter"] == e_ix)
            t_parts, b_parts, c_parts = [], [], []
            for is6 in (False, True):
                ix = mine[f["v6"][mine] == is6]
                if len(ix) == 0:
                    continue
                ix = ix[np.argsort(f["export"][ix], kind="stable")]
                rec = self._records(f, ix, exp, is6, v4, v6)
                per = PER_MESSAGE[is6]
                lo = np.arange(0, len(ix), per)
                hi = np.minimum(lo + per, len(ix))
                t_parts.append(-(-f["export"][ix][hi - 1] // 1000))  # whole seconds, rounded up
                tid = TID6 if is6 else TID4
                for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
                    b_parts.append(len(bodies))
                    bodies.append(_set(tid, rec[a:b].tobytes()))
                c_parts.append(hi - lo)
                n_records += len(ix)
            if not t_parts:
                continue
            t = np.concatenate(t_parts)
            body = np.asarray(b_parts, np.int64)
            cnt = np.concatenate(c_parts)
            order = np.argsort(t, kind="stable")  # IPv4 before IPv6 within a second
            t, body, cnt = t[order], body[order], cnt[order]
            # templates at message 0, 20, 40, ... of this file's messages from this exporter
            n_tmpl = -(-len(t) // (TEMPLATE_EVERY - 1))
            total = len(t) + n_tmpl
            is_tmpl = np.zeros(total, bool)
            is_tmpl[np.arange(n_tmpl) * TEMPLATE_EVERY] = True
            slot_t = np.zeros(total, np.int64)
            slot_t[~is_tmpl] = t
            slot_t[is_tmpl] = slot_t[np.minimum(np.flatnonzero(is_tmpl) + 1, total - 1)]
            slot_body = np.full(total, e_ix, np.int64)
            slot_body[~is_tmpl] = body
            slot_cnt = np.ones(total, np.int64)  # a template message holds one options data record
            slot_cnt[~is_tmpl] = cnt
            seq = exp.sequence + np.cumsum(slot_cnt) - slot_cnt
            exp.sequence += int(slot_cnt.sum())
            ipid = exp.ip_id + np.arange(total, dtype=np.int64)
            exp.ip_id += total
            msgs.append((slot_t, np.full(total, e_ix), seq, ipid, slot_body, is_tmpl))
        if not msgs:
            if not append:
                Path(path).write_bytes(PCAP_GLOBAL)
            return {"datagrams": 0, "records": 0, "template_datagrams": 0}
        slot_t, e_of, seq, ipid, body_ix, is_tmpl = (np.concatenate(c) for c in zip(*msgs, strict=True))
        order = np.lexsort((seq, e_of, slot_t))  # all exporters, in time order
        slot_t, e_of, seq, ipid, body_ix, is_tmpl = (a[order] for a in (slot_t, e_of, seq, ipid, body_ix, is_tmpl))
        blen = np.array([len(b) for b in bodies], np.int64)[body_ix]
        pre = self._prefix(slot_t, e_of, seq, ipid, blen)
        pview = memoryview(pre.tobytes())
        size = PREFIX.itemsize
        pieces: list[bytes | memoryview] = [] if append else [PCAP_GLOBAL]
        for i, b in enumerate(body_ix.tolist()):  # one step per message (~20 flows); its bytes are built
            pieces.append(pview[i * size : (i + 1) * size])
            pieces.append(bodies[b])
        with open(path, "ab" if append else "wb") as fh:
            fh.write(b"".join(pieces))
        return {"datagrams": len(slot_t), "records": n_records, "template_datagrams": int(is_tmpl.sum())}

    def _prefix(
        self, slot_t: np.ndarray, e_of: np.ndarray, seq: np.ndarray, ipid: np.ndarray, blen: np.ndarray
    ) -> np.ndarray:
        """The pcap, Ethernet, IPv4, UDP and IPFIX headers of every message, checksums included."""
        n = len(slot_t)
        pre = np.zeros(n, PREFIX)
        udp_len = 8 + HEADER + blen
        fill_transport(pre, slot_t, e_of, ipid, udp_len, self.exporters, IPFIX_PORT)
        pre["version"] = 10
        pre["length"] = HEADER + blen
        pre["export_time"] = slot_t
        pre["sequence"] = seq % (1 << 32)
        pre["domain"] = np.array([e.source_id for e in self.exporters], np.uint32)[e_of]
        raw = pre.view(np.uint8).reshape(n, PREFIX.itemsize)
        pre["ip_sum"] = _ip_checksum(np.ascontiguousarray(raw[:, 30:50]))
        return pre

    @staticmethod
    def _records(
        f: dict[str, np.ndarray], ix: np.ndarray, exp: Exporter, fam: bool, v4: np.ndarray, v6: np.ndarray
    ) -> np.ndarray:
        rec = np.zeros(len(ix), REC6 if fam else REC4)
        book = v6 if fam else v4
        rec["src"] = book[f["src"][ix]]
        rec["dst"] = book[f["dst"][ix]]
        for col in ("sport", "dport", "proto", "flags", "in_if", "out_if", "packets", "bytes", "start", "end"):
            rec[col] = f[col][ix]
        rec["selector"] = exp.source_id
        return rec

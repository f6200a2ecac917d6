"""True sessions (packets by class, each direction) and the flows a 1:N packet-sampling router exports for them.

A session is a bidirectional conversation between an initiator ``a`` and a responder ``b``. For each
direction it holds how many packets of each class were sent: SYN (SYN-ACK going back), pure ACK,
data (PSH|ACK with payload), FIN and RST. A sampling router keeps each packet with probability 1/N,
so the sampled count of a class is Binomial(count, 1/N); a unidirectional flow record is exported
only when at least one of its packets was sampled, its tcp_flags is the OR of the sampled packets'
flags and its bytes the sum of their sizes. Sessions longer than the active timeout are cut into
several records, as a router does.

That is ``mode="random"`` (PSAMP random n-out-of-N, RFC 5475 section 5.2.1). ``mode="systematic"``
is count-based systematic sampling (every Nth packet of the exporter's packet stream, RFC 5475
section 5.1). The exporter's stream interleaves many flows, so where the counter stands when a
record's first packet arrives is, for that record, a uniform random phase r in 0..N-1: the record's
packets at positions r, r+N, r+2N, ... are kept, so a record of n packets keeps floor(n/N) or
ceil(n/N) of them (n/N on average). Packets are ordered SYN, then ACK and data mixed at random,
then FIN, then RST; the kept ones per class follow from that order, and the first and last kept
packets' times from their positions, spread evenly over the record.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Sessions", "new_sessions", "concat", "to_flows", "CLASSES", "FLAG", "TAGS"]

SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04
CLASSES = ("syn", "ack", "data", "fin", "rst")
# Flags of each class, initiator direction then responder direction.
FLAG = {
    "syn": (SYN, SYN | ACK),
    "ack": (ACK, ACK),
    "data": (PSH | ACK, PSH | ACK),
    "fin": (FIN | ACK, FIN | ACK),
    "rst": (RST, RST | ACK),
}
# Bytes on the wire (IP header and up) of each class but data, IPv4; IPv6 adds 20.
SIZE = {"syn": 60, "ack": 52, "fin": 52, "rst": 40}

# Why each session exists: stored with every flow so tests and truth can follow it.
TAGS = {
    "background": 0,
    "controller_seed": 1,
    "controller_new": 2,
    "seed_benign": 3,
    "new_benign": 4,
    "controller_benign": 5,
    "victim_beacon": 6,
    "research_scan": 7,
    "syn_scan": 8,
    "decoy": 9,
}

Sessions = dict[str, np.ndarray]
_I64 = ("t0", "dur", "a", "b")
_COUNTS = tuple(f"{c}{d}" for c in CLASSES for d in (0, 1))


def new_sessions(n: int, **cols: np.ndarray | int | float) -> Sessions:
    """A session table of length n; scalars broadcast, missing packet counts are 0."""
    s: Sessions = {}
    defaults: dict[str, tuple[type, int | float]] = {
        "t0": (np.int64, 0),
        "dur": (np.int64, 0),
        "a": (np.int64, 0),
        "b": (np.int64, 0),
        "sport": (np.uint16, 0),
        "dport": (np.uint16, 0),
        "proto": (np.uint8, 6),
        "dsz0": (np.float64, 0.0),
        "dsz1": (np.float64, 0.0),
        "tag": (np.int8, 0),
        "v6": (np.bool_, False),
    }
    defaults.update({c: (np.int64, 0) for c in _COUNTS})
    unknown = set(cols) - set(defaults)
    if unknown:
        raise KeyError(f"unknown session column(s): {sorted(unknown)}")
    for k, (dt, dv) in defaults.items():
        v = cols.get(k, dv)
        arr = np.asarray(v)
        s[k] = np.full(n, arr, dtype=dt) if arr.ndim == 0 else arr.astype(dt, copy=False)
        if len(s[k]) != n:
            raise ValueError(f"session column {k} has {len(s[k])} values, expected {n}")
    return s


def concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if p and len(next(iter(p.values()))) > 0] or parts[:1]
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def take(t: dict[str, np.ndarray], ix: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[ix] for k, v in t.items()}


def _segments(s: Sessions, timeout_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Cut sessions at the active timeout: (session index, seg start, seg end, counts per segment)."""
    dur = np.maximum(s["dur"], 1)
    nseg = ((dur + timeout_ms - 1) // timeout_ms).astype(np.int64)
    sid = np.repeat(np.arange(len(dur)), nseg)
    first_of = np.cumsum(nseg) - nseg
    i = np.arange(len(sid)) - first_of[sid]
    k = nseg[sid]
    start = s["t0"][sid] + i * timeout_ms
    end = np.minimum(s["t0"][sid] + (i + 1) * timeout_ms, s["t0"][sid] + dur[sid])
    counts: dict[str, np.ndarray] = {}
    for d in (0, 1):
        counts[f"syn{d}"] = np.where(i == 0, s[f"syn{d}"][sid], 0)
        for c in ("fin", "rst"):
            counts[f"{c}{d}"] = np.where(i == k - 1, s[f"{c}{d}"][sid], 0)
        for c in ("ack", "data"):
            n = s[f"{c}{d}"][sid]
            counts[f"{c}{d}"] = n // k + (i < n % k)
    return sid, start, end, counts


def to_flows(
    s: Sessions, sampling: int, timeout_ms: int, rng: np.random.Generator, mode: str = "random"
) -> dict[str, np.ndarray]:
    """The unidirectional flow records a 1:``sampling`` router exports for these sessions.

    ``mode`` is ``"random"`` (each packet kept with probability 1/N) or ``"systematic"`` (every Nth
    packet); see the module docstring.
    """
    if mode not in ("random", "systematic"):
        raise ValueError(f"unknown sampling mode {mode!r}; use 'random' or 'systematic'")
    sid, start, end, counts = _segments(s, timeout_ms)
    p = 1.0 / sampling
    out = []
    for d in (0, 1):
        pos: tuple[np.ndarray, np.ndarray] | None = None  # systematic: first kept position, packets
        if sampling == 1:
            sampled = {c: counts[f"{c}{d}"] for c in CLASSES}
        elif mode == "systematic":
            sampled, pos = _systematic(counts, d, sampling, rng)
        else:
            sampled = {}
            for c in CLASSES:
                n_c = counts[f"{c}{d}"]
                if c in ("syn", "fin", "rst") and (len(n_c) == 0 or n_c.max() <= 1):
                    sampled[c] = n_c * (rng.random(len(n_c)) < p)  # one packet: kept with probability 1/N
                else:
                    sampled[c] = rng.binomial(n_c, p)
        pk = sampled["syn"] + sampled["ack"] + sampled["data"] + sampled["fin"] + sampled["rst"]
        keep = np.flatnonzero(pk > 0)
        if len(keep) == 0:
            continue
        ss = sid[keep]
        v6 = s["v6"][ss]
        hdr = np.where(v6, 20, 0)
        tcp = s["proto"][ss] == 6
        sm = {c: sampled[c][keep] for c in CLASSES}
        nbytes = sm["data"] * (s[f"dsz{d}"][ss] + hdr) + sum(
            sm[c] * (SIZE[c] + hdr) for c in ("syn", "ack", "fin", "rst")
        )
        flags = np.zeros(len(keep), np.uint8)
        for c in CLASSES:
            flags |= np.where(sm[c] > 0, FLAG[c][d], 0).astype(np.uint8)
        flags = np.where(tcp, flags, 0).astype(np.uint8)
        n = pk[keep]
        st, en = start[keep], end[keep]
        span = en - st
        if d == 1:  # the reply starts one round trip later
            rtt = np.minimum(span // 2, 20 + (ss % 180))
            st = st + rtt
            span = en - st
        if sampling > 1 and pos is not None:
            # positions r and r + (k-1)N of the record's packets, spread evenly over its span
            r, total = pos[0][keep], pos[1][keep]
            step = span / np.maximum(total - 1, 1)
            last = r + (n - 1) * sampling
            en = st + (last * step).astype(np.int64)
            st = st + (r * step).astype(np.int64)
        elif sampling > 1:
            # first/last sampled packet: order statistics of n uniform draws in the segment
            gap = span / (n + 1.0)
            st2 = st + (rng.random(len(n)) * gap * 2).astype(np.int64)
            en2 = en - (rng.random(len(n)) * gap * 2).astype(np.int64)
            one = n == 1
            mid = st + (rng.random(len(n)) * span).astype(np.int64)
            st = np.where(one, mid, np.minimum(st2, en2))
            en = np.where(one, mid, np.maximum(st2, en2))
        a, b = s["a"][ss], s["b"][ss]
        sp, dp = s["sport"][ss], s["dport"][ss]
        out.append(
            {
                "start": st.astype(np.int64),
                "end": en.astype(np.int64),
                "src": a if d == 0 else b,
                "dst": b if d == 0 else a,
                "sport": sp if d == 0 else dp,
                "dport": dp if d == 0 else sp,
                "proto": s["proto"][ss],
                "flags": flags,
                "packets": n.astype(np.int64),
                "bytes": np.rint(nbytes).astype(np.int64),
                "v6": v6,
                "tag": s["tag"][ss],
                "dir": np.full(len(keep), d, np.uint8),
                "session": ss.astype(np.int64),
            }
        )
    if not out:
        return empty_flows()
    return concat(out)


def _systematic(
    counts: dict[str, np.ndarray], d: int, sampling: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Kept packets per class of direction ``d`` under 1-in-N count-based sampling with a random phase.

    Also returns (first kept position, packets in the record) for the kept packets' times.
    """
    syn, ack, data = counts[f"syn{d}"], counts[f"ack{d}"], counts[f"data{d}"]
    fin, rst = counts[f"fin{d}"], counts[f"rst{d}"]
    r = rng.integers(0, sampling, len(syn))

    def upto(x: np.ndarray) -> np.ndarray:  # kept positions r, r+N, ... below x
        return np.maximum(x - r + sampling - 1, 0) // sampling

    b1 = syn
    b2 = b1 + ack + data
    b3 = b2 + fin
    b4 = b3 + rst
    mid = upto(b2) - upto(b1)
    kept_data = rng.hypergeometric(data, ack, mid) if len(mid) else mid  # ACKs and data interleave
    sampled = {
        "syn": upto(b1),
        "ack": mid - kept_data,
        "data": kept_data,
        "fin": upto(b3) - upto(b2),
        "rst": upto(b4) - upto(b3),
    }
    return sampled, (r, b4)


def empty_flows() -> dict[str, np.ndarray]:
    return {
        "start": np.zeros(0, np.int64),
        "end": np.zeros(0, np.int64),
        "src": np.zeros(0, np.int64),
        "dst": np.zeros(0, np.int64),
        "sport": np.zeros(0, np.uint16),
        "dport": np.zeros(0, np.uint16),
        "proto": np.zeros(0, np.uint8),
        "flags": np.zeros(0, np.uint8),
        "packets": np.zeros(0, np.int64),
        "bytes": np.zeros(0, np.int64),
        "v6": np.zeros(0, bool),
        "tag": np.zeros(0, np.int8),
        "dir": np.zeros(0, np.uint8),
        "session": np.zeros(0, np.int64),
    }


# ----- session shapes ------------------------------------------------------------------------------


def tcp_established(
    rng: np.random.Generator,
    n: int,
    data0: np.ndarray,
    data1: np.ndarray,
    size0: np.ndarray | float,
    size1: np.ndarray | float,
    close: str = "fin",
) -> dict[str, np.ndarray]:
    """Packet counts of complete TCP sessions: handshake, data each way with delayed ACKs, close."""
    data0 = np.asarray(data0, np.int64)
    data1 = np.asarray(data1, np.int64)
    c = {
        "syn0": np.ones(n, np.int64),
        "syn1": np.ones(n, np.int64),
        # the handshake's final ACK plus one ACK per two data segments received
        "ack0": 1 + data1 // 2,
        "ack1": data0 // 2,
        "data0": data0,
        "data1": data1,
        "dsz0": np.broadcast_to(np.asarray(size0, np.float64), (n,)).copy(),
        "dsz1": np.broadcast_to(np.asarray(size1, np.float64), (n,)).copy(),
    }
    if close == "fin":
        c["fin0"] = np.ones(n, np.int64)
        c["fin1"] = np.ones(n, np.int64)
        c["ack0"] = c["ack0"] + 1
    else:  # the initiator aborts
        c["rst0"] = np.ones(n, np.int64)
    return c


def lognormal_int(rng: np.random.Generator, n: int, median: float, sigma: float, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.rint(rng.lognormal(np.log(median), sigma, n)), lo, hi).astype(np.int64)

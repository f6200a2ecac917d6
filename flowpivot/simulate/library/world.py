"""The world one draw builds: hosts by role inside real providers' prefixes, and true sessions with their purpose.

Behaviours add sessions through :meth:`World.add`, which also applies what a host that is down does to
everyone who calls it: a session towards a seed before it came online or after it went dark gets no
answer (the caller's SYN and its retransmissions only), whatever the caller meant to do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .. import traffic as T
from ..addresses import AddressBook
from ..core import RESOLVERS
from ..scenario import Provider, org

__all__ = ["World", "KINDS", "SEC", "MIN", "HOUR", "DAY", "iso"]

SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
START_MS = int(datetime(2024, 5, 6, tzinfo=UTC).timestamp() * 1000)

# Why a session exists; truth.json is computed from the exported records of each kind.
KINDS = (
    "background",  # ordinary clients and servers
    "benign",  # seeds', expansion hosts' and operators' own DNS, NTP, updates
    "manage",  # an operation's member -> a seed
    "manage_new",  # an operation's member -> new infrastructure (not a seed)
    "exit_manage",  # an operator behind a VPN/Tor exit -> a seed (the exit's address is seen)
    "exit_user",  # ordinary users behind a VPN/Tor exit
    "nat_user",  # other users behind an operator's NAT address
    "ordinary",  # an operator's own browsing, mail, updates
    "victim",  # victim -> seed beacons (established, refused or unanswered)
    "probe",  # SYN floods, retry storms, reset bursts
    "sweep",  # SYN scans of the seeds' provider ranges
    "research",  # research scanners completing handshakes
    "monitor",  # uptime monitors
)
KIND = {k: i for i, k in enumerate(KINDS)}

# Linux SYN retransmissions: the first SYN, then after 1, 3, 7 s (net.ipv4.tcp_syn_retries gives more).
SYN_TRIES_MS = (0, 1000, 3000, 7000)


def iso(ms: int | float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ephemeral(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(32768, 61000, n).astype(np.uint16)


@dataclass
class Seeds:
    """The seed hosts: book index, when each came online and went dark, which seed files list it."""

    ix: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    first: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dark: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sets: list[list[str]] = field(default_factory=list)
    v6: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


class World:
    """Every host and true session of one draw."""

    def __init__(self, rng: np.random.Generator, days: int) -> None:
        self.rng = rng
        self.book = AddressBook(rng)
        self.t0 = START_MS
        self.t_end = START_MS + days * DAY
        self.days = days
        self.parts: list[T.Sessions] = []
        self.kind: list[np.ndarray] = []
        self.ref: list[np.ndarray] = []
        self.oneway: list[np.ndarray] = []
        self.roles: dict[int, str] = {}  # hosts that matter to the truth: book index -> role
        self.limits: list[str] = []
        self.seeds = Seeds()
        self.services: dict[tuple[str, bool], np.ndarray] = {}
        self.truth: dict[str, Any] = {}  # behaviours' own records (operations, victims, probes ...)

    # ----- hosts -----------------------------------------------------------------------------------

    def alloc(self, role: str | None, orgs: Sequence[str | Provider], n: int, v6: bool = False) -> np.ndarray:
        """``n`` new addresses spread over the organisations that have space of that family."""
        if n <= 0:
            return np.zeros(0, np.int64)
        ps = [o if isinstance(o, Provider) else org(o) for o in orgs]
        ok = [p for p in ps if AddressBook.has_family(p, v6)]
        if not ok:
            raise ValueError(f"none of {[p.name for p in ps]} has IPv{'6' if v6 else '4'} space")
        share = np.bincount(self.rng.permutation(n) % len(ok), minlength=len(ok))
        ix = np.concatenate([self.book.allocate(p, int(k), v6) for p, k in zip(ok, share, strict=True) if k])
        if role:
            self.roles.update(dict.fromkeys(ix.tolist(), role))
        return ix

    def claim_v4(self, p: Provider, addrs: np.ndarray) -> np.ndarray:
        """Book indices for exact IPv4 addresses of ``p`` (a sweep's every address); reuses those taken."""
        v4 = self.book.v4
        fam = self.book.is_v6
        known = {int(a): i for i, a in enumerate(v4.tolist()) if not fam[i]}
        out = np.array([known.get(int(a), -1) for a in addrs.tolist()], np.int64)
        new = addrs[out < 0].astype(np.uint32)
        if len(new):
            # One append for the whole range; AddressBook.fixed checks and merges one address at a time.
            book = self.book
            ix = book._append(
                new,
                np.zeros((len(new), 16), np.uint8),
                np.zeros(len(new), bool),
                np.full(len(new), book.provider_index(p), np.int32),
            )
            c = np.concatenate([book._used4, new])
            c.sort()
            book._used4 = c
            out[out < 0] = ix
        return out

    def fixed_or_alloc(self, key: str, v6: bool, n: int = 2) -> np.ndarray:
        p = org(key)
        if not AddressBook.has_family(p, v6):
            return np.zeros(0, np.int64)
        known = RESOLVERS.get(key)
        ix = self.book.fixed(p, known[int(v6)]) if known and known[int(v6)] else self.book.allocate(p, n, v6)
        self.roles.update(dict.fromkeys(ix.tolist(), "resolver"))
        return ix

    def text(self, ix: Any) -> Any:
        return self.book.text(ix)

    def asn_of(self, ix: int) -> int:
        return self.book.providers[int(self.book.org[ix])].asn

    def prefix_of(self, ix: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        p = self.book.providers[int(self.book.org[ix])]
        ip = ipaddress.ip_address(self.text(ix))
        for x in p.prefixes:
            net = ipaddress.ip_network(x, strict=False)
            if net.version == ip.version and ip in net:
                return net
        return None

    # ----- seeds -----------------------------------------------------------------------------------

    def seed_alive(self, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        """False where ``b`` is a seed that is not up at ``t`` (not yet online, or dark)."""
        s = self.seeds
        alive = np.ones(len(b), bool)
        if len(s.ix) == 0 or len(b) == 0:
            return alive
        order = np.argsort(s.ix)
        pos = np.minimum(np.searchsorted(s.ix[order], b), len(order) - 1)
        is_seed = s.ix[order][pos] == b
        k = order[pos]
        return alive & ~(is_seed & ((t < s.first[k]) | (t >= s.dark[k])))

    # ----- sessions ---------------------------------------------------------------------------------

    def add(self, kind: str, n: int, ref: Any = -1, oneway: Any = False, **cols: Any) -> None:
        """Add n sessions of ``kind``; sessions to a seed that is down become unanswered SYN attempts."""
        if n <= 0:
            return
        cols.setdefault("sport", ephemeral(self.rng, n))
        s = T.new_sessions(n, **cols)
        keep = (s["t0"] >= self.t0) & (s["t0"] < self.t_end - MIN)
        down = ~self.seed_alive(s["b"], s["t0"]) & (s["proto"] == 6)
        if down.any():
            tries = self.rng.integers(2, len(SYN_TRIES_MS) + 1, int(down.sum()))
            for c in T.CLASSES:
                for d in (0, 1):
                    s[f"{c}{d}"][down] = 0
            s["syn0"][down] = tries
            s["dur"][down] = np.array(SYN_TRIES_MS)[tries - 1] + 1
        udp_down = ~self.seed_alive(s["b"], s["t0"]) & (s["proto"] != 6)
        s["data1"][udp_down] = 0
        ix = np.flatnonzero(keep)
        s = T.take(s, ix)
        refs = np.broadcast_to(np.asarray(ref, np.int64), (n,))[ix]
        self.parts.append(s)
        self.kind.append(np.full(len(ix), KIND[kind], np.int8))
        self.ref.append(refs.astype(np.int64))
        self.oneway.append(np.full(len(ix), oneway))

    def sessions(self) -> tuple[T.Sessions, np.ndarray, np.ndarray, np.ndarray]:
        """All sessions with their kind, reference and one-way flag, by start time."""
        s = T.concat(self.parts)
        kind, ref, one = np.concatenate(self.kind), np.concatenate(self.ref), np.concatenate(self.oneway)
        order = np.argsort(s["t0"], kind="stable")
        return T.take(s, order), kind[order], ref[order], one[order]

    # ----- time ------------------------------------------------------------------------------------

    def work_times(self, days: np.ndarray, hour: float, sd: float = 2.5) -> np.ndarray:
        """Start times on the given days around a working hour (UTC)."""
        h = np.clip(self.rng.normal(hour, sd, len(days)), 0, 23.9)
        return self.t0 + days * DAY + (h * HOUR).astype(np.int64) + self.rng.integers(0, MIN, len(days))

    def uniform_times(self, n: int, lo: int | None = None, hi: int | None = None) -> np.ndarray:
        lo = self.t0 if lo is None else lo
        hi = self.t_end - HOUR if hi is None else hi
        if hi <= lo:
            return np.zeros(0, np.int64)
        return np.sort(lo + (self.rng.random(n) * (hi - lo)).astype(np.int64))

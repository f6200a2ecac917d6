"""``simulate(scenario, out_dir)``: actors, noise and background as true sessions, sampled into NetFlow v9 pcaps."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import traffic as T
from .addresses import AddressBook
from .netflow9 import COLLECTOR, COLLECTOR_PORT, Exporter, V9Writer
from .scenario import Provider, Scenario, org

__all__ = ["simulate", "Truth"]

SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
INACTIVE_TIMEOUT_MS = 15 * SEC

# Well-known resolver addresses of the resolver organisations.
RESOLVERS = {
    "google": (["8.8.8.8", "8.8.4.4"], ["2001:4860:4860::8888", "2001:4860:4860::8844"]),
    "cloudflare": (["1.1.1.1", "1.0.0.1"], ["2606:4700:4700::1111", "2606:4700:4700::1001"]),
    "quad9": (["9.9.9.9", "149.112.112.112"], ["2620:fe::fe", "2620:fe::9"]),
    "opendns": (["208.67.222.222", "208.67.220.220"], ["2620:119:35::35"]),
}
MANAGEMENT_PORTS = (22, 3389, 443, 8443, 5985)
SEED_OPEN_PORTS = (22, 80, 443, 3389)
SCAN_PORTS = (21, 22, 23, 25, 80, 443, 445, 1433, 3306, 3389, 5900, 8080, 8443)


def iso(ms: int | float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Truth:
    """What was simulated: the contents of truth.json, plus (on request) every flow record exported."""

    data: dict[str, Any]
    book: AddressBook
    flows: dict[str, np.ndarray] | None = None
    files: list[Path] = field(default_factory=list)

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.data, indent=1) + "\n")

    def flow_addresses(self) -> tuple[list[str], list[str]]:
        """Source and destination address strings of the kept flows (tests)."""
        assert self.flows is not None
        return self.book.text(self.flows["src"]), self.book.text(self.flows["dst"])  # type: ignore[return-value]


def _ephemeral(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(32768, 61000, n).astype(np.uint16)


class _Builder:
    """Draws every actor and noise host and their sessions for the whole period."""

    def __init__(self, sc: Scenario, rng: np.random.Generator) -> None:
        self.sc = sc
        self.rng = rng
        self.book = AddressBook(rng)
        self.t0 = sc.start_ms
        self.t_end = sc.start_ms + sc.total_days * DAY
        self.v6 = sc.ipv6_seeds
        self.parts: list[T.Sessions] = []
        self.noise: dict[str, list[int]] = {}
        self.truth: dict[str, Any] = {}

    # ----- helpers ----------------------------------------------------------------------------------

    def orgs_with(self, keys: tuple[str, ...], v6: bool) -> list[Provider]:
        ps = [org(k) for k in keys]
        ok = [p for p in ps if AddressBook.has_family(p, v6)]
        if not ok:
            raise ValueError(f"none of {', '.join(keys)} has IPv{'6' if v6 else '4'} space")
        return ok

    def spread(self, providers: list[Provider], n: int, v6: bool) -> np.ndarray:
        """n addresses spread over providers (round robin, then random)."""
        if n <= 0:
            return np.zeros(0, np.int64)
        share = np.bincount(np.arange(n) % len(providers), minlength=len(providers))
        return np.concatenate([self.book.allocate(p, int(k), v6) for p, k in zip(providers, share, strict=True) if k])

    def add(self, tag: str, n: int, **cols: Any) -> None:
        if n:
            cols.setdefault("sport", _ephemeral(self.rng, n))
            self.parts.append(T.new_sessions(n, tag=T.TAGS[tag], **cols))

    def times_on_days(self, days: np.ndarray, hour_mean: float, hour_sd: float) -> np.ndarray:
        h = np.clip(self.rng.normal(hour_mean, hour_sd, len(days)), 0, 23.99)
        return self.t0 + days * DAY + (h * HOUR).astype(np.int64) + self.rng.integers(0, MIN, len(days))

    # ----- hosts ------------------------------------------------------------------------------------

    def hosts(self) -> None:
        sc, nz = self.sc, self.sc.noise
        v6 = self.v6
        self.seeds = self.book.allocate(sc.seed_provider, sc.seeds, v6)
        self.new = self.book.allocate(sc.seed_provider, sc.new_infrastructure, v6)
        self.members = [self.book.allocate(c.provider, c.members, v6) for c in sc.clusters]
        # services everybody uses
        res4, res6 = [], []
        for k in nz.resolver_orgs:
            p = org(k)
            a4, a6 = RESOLVERS.get(k, ([], []))
            res4.append(self.book.fixed(p, a4) if a4 else self.book.allocate(p, 2, False))
            if AddressBook.has_family(p, True):
                res6.append(self.book.fixed(p, a6) if a6 else self.book.allocate(p, 2, True))
        self.resolvers = {False: np.concatenate(res4), True: np.concatenate(res6) if res6 else np.zeros(0, np.int64)}
        n6 = nz.ntp_servers // 4
        self.ntp = {False: self.spread(self.orgs_with(nz.ntp_orgs, False), nz.ntp_servers - n6, False),
                    True: self.spread(self.orgs_with(nz.ntp_orgs, True), n6, True)}  # fmt: skip
        n6 = nz.update_servers // 4
        self.updates = {False: self.spread(self.orgs_with(nz.update_orgs, False), nz.update_servers - n6, False),
                        True: self.spread(self.orgs_with(nz.update_orgs, True), n6, True)}  # fmt: skip
        w6 = int(nz.web_servers * nz.ipv6_share)
        s6 = int(nz.seed_provider_web_servers * nz.ipv6_share) if AddressBook.has_family(sc.seed_provider, True) else 0
        self.web = {
            False: np.concatenate([
                self.spread(self.orgs_with(nz.hosting_orgs, False), nz.web_servers - w6, False),
                self.book.allocate(sc.seed_provider, nz.seed_provider_web_servers - s6, False),
            ]),
            True: np.concatenate([
                self.spread(self.orgs_with(nz.hosting_orgs, True), w6, True),
                self.book.allocate(sc.seed_provider, s6, True),
            ]),
        }  # fmt: skip
        self.stark_web = np.concatenate([self.web[False][nz.web_servers - w6 :], self.web[True][w6:]])
        # noise actors
        self.victims = self.spread(self.orgs_with(nz.victim_orgs, v6), nz.victims, v6)
        self.research = self.spread(self.orgs_with(nz.research_orgs, v6), nz.research_scanners, v6)
        self.synscan = self.spread(self.orgs_with(nz.syn_scanner_orgs, v6), nz.syn_scanners, v6)
        self.decoys = self.book.allocate(org(nz.decoy_org), nz.decoys, v6)

    def bulk_hosts(self) -> None:
        """The hosts whose number follows --flows: scan targets and background clients (drawn last)."""
        nz, v6 = self.sc.noise, self.v6
        target_orgs = self.orgs_with(nz.client_orgs + nz.hosting_orgs, v6)
        self.research_targets = self.spread(target_orgs, self.n_research_targets, v6)
        self.syn_targets = self.spread(target_orgs, self.n_syn_targets, v6)
        # background clients (victims are ordinary clients too)
        c6 = int(self.n_clients * nz.ipv6_share)
        self.clients = {
            False: self.spread(self.orgs_with(nz.client_orgs, False), self.n_clients - c6, False),
            True: self.spread(self.orgs_with(nz.client_orgs, True), c6, True),
        }
        self.clients[v6] = np.concatenate([self.victims, self.clients[v6]])

    # ----- actor ------------------------------------------------------------------------------------

    def actor(self) -> None:
        sc, rng = self.sc, self.rng
        n_seeds = sc.seeds
        perm = rng.permutation(n_seeds)
        shared = perm[: sc.shared_seeds]
        pos = sc.shared_seeds
        cluster_seeds = []
        for c in sc.clusters:
            own = perm[pos : pos + c.seeds - sc.shared_seeds]
            pos += c.seeds - sc.shared_seeds
            cluster_seeds.append(np.sort(np.concatenate([shared, own])))
        self.cluster_seeds = cluster_seeds
        # each seed came online early in the period and goes dark on dark_day, all within a few hours
        self.seed_first_day = rng.integers(0, max(1, min(5, sc.dark_day - 1)), n_seeds)
        dark_base = self.t0 + (sc.dark_day - 1) * DAY + 9 * HOUR
        self.seed_dark = dark_base + rng.integers(0, 4 * HOUR, n_seeds)
        self.dark_base = dark_base
        clusters_truth = []
        all_members = []
        for ci, (c, seeds_ix) in enumerate(zip(sc.clusters, cluster_seeds, strict=True)):
            m, k = c.members, len(seeds_ix)
            manage = rng.random((m, k)) < 0.7
            need_m = min(2, m)
            for j in range(k):  # every seed managed by at least two members
                if manage[:, j].sum() < need_m:
                    manage[rng.choice(m, need_m, replace=False), j] = True
            need_k = min(k, max(2, math.ceil(k / 2)))
            for i in range(m):  # every member manages at least half the cluster's seeds
                if manage[i].sum() < need_k:
                    manage[i, rng.choice(k, need_k, replace=False)] = True
            hour = 7.0 + 3 * ci  # each group keeps its own working hours (UTC)
            member_seeds: dict[int, list[int]] = {}
            for i in range(m):
                port = int(rng.choice(MANAGEMENT_PORTS))
                for j in np.flatnonzero(manage[i]).tolist():
                    s = int(seeds_ix[j])
                    self.manage_pair(
                        int(self.members[ci][i]),
                        int(self.seeds[s]),
                        port,
                        self.seed_first_day[s],
                        int(self.seed_dark[s]),
                        hour,
                        "controller_seed",
                    )
                member_seeds[i] = [int(self.seeds[seeds_ix[j]]) for j in np.flatnonzero(manage[i])]
                all_members.append((ci, i, port))
            clusters_truth.append((c, member_seeds, hour))
        # new infrastructure: set up before the suspension, managed by several members, still in use after it
        self.new_first_day = rng.integers(max(0, sc.dark_day - 13), max(1, sc.dark_day - 4), len(self.new))
        self.new_managers: list[list[int]] = []
        for h, first in zip(self.new, self.new_first_day, strict=True):
            k = min(len(all_members), int(rng.integers(2, 5)))
            who = rng.choice(len(all_members), k, replace=False)
            mgr = []
            for w in who:
                ci, i, port = all_members[int(w)]
                member = int(self.members[ci][i])
                self.manage_pair(
                    member, int(h), port, int(first), self.t_end - HOUR, clusters_truth[ci][2], "controller_new"
                )
                mgr.append(member)
            self.new_managers.append(mgr)
        self.clusters_truth = clusters_truth

    def manage_pair(
        self, member: int, host: int, port: int, first_day: int, stop_ms: int, hour: float, tag: str
    ) -> None:
        """Established management sessions on a random subset of days (about one in three), at work hours."""
        rng = self.rng
        last_day = int((stop_ms - self.t0) // DAY)
        days = np.arange(first_day, last_day + 1)
        active = days[rng.random(len(days)) < 0.33]
        if len(active) < 4:
            active = np.sort(rng.choice(days, min(4, len(days)), replace=False))
        per_day = rng.integers(1, 4, len(active))
        d = np.repeat(active, per_day)
        t0 = self.times_on_days(d, hour, 3.0)
        dur = T.lognormal_int(rng, len(d), 40 * MIN, 0.8, 2 * MIN, 4 * HOUR)
        ok = (t0 + dur < stop_ms - MIN) & (t0 < self.t_end - 2 * HOUR)
        t0, dur = t0[ok], dur[ok]
        if len(t0) == 0:  # a pair that exists has at least one session, however short its window
            begin = self.t0 + first_day * DAY
            t0 = np.array([max(begin, stop_ms - 2 * HOUR)], np.int64)
            dur = np.array([max(MIN, min(40 * MIN, stop_ms - MIN - int(t0[0])))], np.int64)
        n = len(t0)
        c = T.tcp_established(
            rng, n,
            T.lognormal_int(rng, n, 1500, 0.9, 50, 200_000), T.lognormal_int(rng, n, 6000, 1.0, 200, 1_000_000),
            rng.uniform(300, 900, n), rng.uniform(1000, 1400, n),
        )  # fmt: skip
        self.add(tag, n, t0=t0, dur=dur, a=member, b=host, dport=port, v6=self.v6, **c)

    # ----- everyday behaviour of servers and operators ------------------------------------------------

    def benign(
        self, hosts: np.ndarray, first_day: np.ndarray, stop_ms: np.ndarray, tag: str, dns_per_day: float, updates: bool
    ) -> None:
        rng, v6 = self.rng, self.v6
        res, ntp, upd = self.resolvers[v6], self.ntp[v6], self.updates[v6]
        for h, fd, stop in zip(
            hosts.tolist(),
            np.broadcast_to(first_day, hosts.shape).tolist(),
            np.broadcast_to(stop_ms, hosts.shape).tolist(),
            strict=True,
        ):
            my_res = rng.choice(res, min(2, len(res)), replace=False)
            start = self.t0 + fd * DAY
            span = stop - start
            if span <= HOUR:
                continue
            days = span / DAY
            n = rng.poisson(dns_per_day * days)
            t0 = start + (rng.random(n) * (span - MIN)).astype(np.int64)
            self.add(tag, n, t0=t0, dur=rng.integers(5, 80, n), a=h, b=rng.choice(my_res, n), dport=53, proto=17,
                     data0=1, data1=1, dsz0=rng.uniform(60, 90, n), dsz1=rng.uniform(90, 300, n), v6=v6)  # fmt: skip
            if len(ntp):
                n = rng.poisson(4 * days)
                t0 = start + (rng.random(n) * (span - MIN)).astype(np.int64)
                self.add(tag, n, t0=t0, dur=rng.integers(5, 60, n), a=h, b=rng.choice(rng.choice(ntp, 2), n), sport=123,
                         dport=123, proto=17, data0=1, data1=1, dsz0=76, dsz1=76, v6=v6)  # fmt: skip
            if updates and len(upd):
                n = rng.poisson(2 * days)
                t0 = start + (rng.random(n) * (span - HOUR)).astype(np.int64)
                c = T.tcp_established(
                    rng,
                    n,
                    T.lognormal_int(rng, n, 30, 0.7, 4, 2000),
                    T.lognormal_int(rng, n, 800, 1.2, 10, 200_000),
                    rng.uniform(150, 500, n),
                    1400.0,
                )
                self.add(tag, n, t0=t0, dur=T.lognormal_int(rng, n, 20 * SEC, 1.0, 500, 20 * MIN), a=h,
                         b=rng.choice(rng.choice(upd, min(4, len(upd)), replace=False), n), dport=443, v6=v6, **c)  # fmt: skip

    # ----- noise ------------------------------------------------------------------------------------

    def victims_beacon(self) -> None:
        rng, nz = self.rng, self.sc.noise
        self.victim_truth = []
        lo, hi = nz.beacon_interval_s
        for v in self.victims.tolist():
            k = int(rng.integers(1, 3))
            targets = rng.choice(len(self.seeds), k, replace=False)
            interval = int(rng.integers(lo, hi + 1))
            first = int(rng.integers(0, max(1, min(10, self.sc.dark_day - 2))))
            for s in targets.tolist():
                start = self.t0 + first * DAY + int(rng.integers(0, DAY))
                stop = int(self.seed_dark[s]) - MIN
                if stop <= start:
                    continue
                n = int((stop - start) // (interval * SEC)) + 1
                t0 = start + np.cumsum(rng.uniform(0.8, 1.2, n) * interval * SEC).astype(np.int64)
                t0 = t0[t0 < stop - 10 * SEC]
                n = len(t0)
                c = T.tcp_established(
                    rng,
                    n,
                    rng.integers(3, 7, n),
                    rng.integers(3, 9, n),
                    rng.uniform(150, 400, n),
                    rng.uniform(400, 1400, n),
                )
                self.add(
                    "victim_beacon",
                    n,
                    t0=t0,
                    dur=rng.integers(300, 2500, n),
                    a=v,
                    b=int(self.seeds[s]),
                    dport=443,
                    v6=self.v6,
                    **c,
                )
            self.victim_truth.append({"address": self.book.text(v), "seeds": self.book.text(self.seeds[targets]),
                                      "beacon_interval_s": interval, "jitter": 0.2, "port": 443})  # fmt: skip

    def research_scans(self) -> None:
        rng = self.rng
        # every seed, by every research scanner, every few days until it goes dark; 443 always answers
        for r in self.research.tolist():
            for s in range(len(self.seeds)):
                first = self.t0 + int(self.seed_first_day[s]) * DAY
                stop = int(self.seed_dark[s])
                n = max(1, int((stop - first) // (3 * DAY)))
                t0 = first + (rng.random(n) * (stop - first - MIN)).astype(np.int64)
                t0[0] = first + int(rng.integers(0, max(1, stop - first - MIN)))
                ports = rng.choice(SCAN_PORTS, n)
                ports[0] = 443
                self.probe(
                    r,
                    np.full(n, int(self.seeds[s])),
                    t0,
                    ports,
                    np.isin(ports, SEED_OPEN_PORTS),
                    "research_scan",
                    complete=True,
                )
        # and the many other hosts they index, once each
        tg = self.research_targets
        n = len(tg)
        who = self.research[rng.integers(0, len(self.research), n)]
        t0 = self.t0 + (rng.random(n) * (self.t_end - self.t0 - HOUR)).astype(np.int64)
        self.probe(
            who, tg, t0, rng.choice((80, 443, 22, 8080, 25, 3389), n), np.ones(n, bool), "research_scan", complete=True
        )

    def syn_scans(self) -> None:
        rng = self.rng
        for r in self.synscan.tolist():
            for s in range(len(self.seeds)):
                first = self.t0 + int(self.seed_first_day[s]) * DAY
                stop = int(self.seed_dark[s])
                n = int(rng.integers(2, 6))
                t0 = first + (rng.random(n) * (stop - first - MIN)).astype(np.int64)
                ports = rng.choice(SCAN_PORTS, n)
                self.probe(
                    r,
                    np.full(n, int(self.seeds[s])),
                    t0,
                    ports,
                    np.isin(ports, SEED_OPEN_PORTS),
                    "syn_scan",
                    complete=False,
                )
        tg = self.syn_targets
        n = len(tg)
        who = self.synscan[rng.integers(0, len(self.synscan), n)]
        t0 = self.t0 + (rng.random(n) * (self.t_end - self.t0 - HOUR)).astype(np.int64)
        u = rng.random(n)
        answers = u < 0.5  # half the address space answers at all
        self.probe(who, tg, t0, rng.choice(SCAN_PORTS, n), u < 0.3, "syn_scan", complete=False, answers=answers)

    def probe(
        self,
        a: Any,
        b: np.ndarray,
        t0: np.ndarray,
        ports: np.ndarray,
        open_: np.ndarray,
        tag: str,
        complete: bool,
        answers: np.ndarray | None = None,
    ) -> None:
        """Scanner probes: a full handshake with a short exchange then RST (complete), or SYN then RST (masscan)."""
        rng = self.rng
        n = len(b)
        a = np.broadcast_to(np.asarray(a, np.int64), (n,))
        answers = np.ones(n, bool) if answers is None else answers
        op = open_ & answers
        cl = ~open_ & answers
        if complete:
            c = T.tcp_established(
                rng,
                n,
                np.ones(n, np.int64),
                rng.integers(1, 4, n),
                rng.uniform(80, 200, n),
                rng.uniform(200, 1400, n),
                close="rst",
            )
            c = {
                k: (np.where(op, v, 0) if k in ("ack0", "ack1", "data0", "data1", "rst0") else v) for k, v in c.items()
            }
            c["syn1"] = np.where(answers, c["syn1"] * op, 0)
            c["rst1"] = cl.astype(np.int64)
            dur = np.where(op, rng.integers(200, 3000, n), rng.integers(20, 300, n))
        else:
            c = {
                "syn0": np.ones(n, np.int64),
                "syn1": op.astype(np.int64),
                "rst0": op.astype(np.int64),
                "rst1": cl.astype(np.int64),
            }
            dur = rng.integers(20, 300, n)
        self.add(tag, n, t0=t0, dur=dur, a=a, b=b, dport=ports, v6=self.v6, **c)

    def decoy_syns(self) -> None:
        rng, nz = self.rng, self.sc.noise
        # decoy targets: seeds from every cluster, so the group looks like it belongs
        pool = rng.permutation(np.unique(np.concatenate(self.cluster_seeds)))
        rest = np.setdiff1d(np.arange(len(self.seeds)), pool)
        chosen = np.concatenate([pool, rng.permutation(rest)])[: nz.decoy_seeds]
        self.decoy_targets = np.sort(chosen)
        for d in self.decoys.tolist():
            for s in self.decoy_targets.tolist():
                n = int(rng.integers(3, 9))
                first = self.t0 + int(self.seed_first_day[s]) * DAY
                stop = int(self.seed_dark[s])
                t0 = first + (rng.random(n) * (stop - first - MIN)).astype(np.int64)
                port = rng.choice((443, 22), n)
                tries = rng.integers(1, 4, n)  # SYN retransmissions
                c = {"syn0": tries, "syn1": np.where(port == 443, tries, 0), "rst1": (port != 443).astype(np.int64)}
                self.add(
                    "decoy",
                    n,
                    t0=t0,
                    dur=np.where(tries > 1, (tries - 1) * 3000, 50),
                    a=d,
                    b=int(self.seeds[s]),
                    dport=port,
                    v6=self.v6,
                    **c,
                )

    # ----- everything -------------------------------------------------------------------------------

    def build(self) -> T.Sessions:
        sc, nz = self.sc, self.sc.noise
        cap = max(1000, sc.flows // 10)
        self.n_research_targets = min(nz.research_targets, cap)
        self.n_syn_targets = min(nz.syn_scan_targets, cap)
        self.n_clients = nz.clients or int(np.clip(sc.flows // 100, 2000, 200_000))
        self.hosts()
        self.actor()
        members = np.concatenate(self.members)
        self.benign(self.seeds, self.seed_first_day, self.seed_dark - MIN, "seed_benign", 48, True)
        self.benign(self.new, self.new_first_day, np.full(len(self.new), self.t_end - HOUR), "new_benign", 48, True)
        self.benign(
            members,
            np.zeros(len(members), np.int64),
            np.full(len(members), self.t_end - HOUR),
            "controller_benign",
            12,
            False,
        )
        self.victims_beacon()
        self.decoy_syns()
        # everything above is the same whatever --flows; the bulk below grows with it
        self.bulk_hosts()
        self.research_scans()
        self.syn_scans()
        return T.concat(self.parts)


def _draw(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """n indices drawn by a cumulative distribution (rng.choice with p, without re-checking p each call)."""
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


# ----- background --------------------------------------------------------------------------------


class _Background:
    """Ordinary traffic of many clients: DNS, NTP, updates and CDNs, web sites (some at the seeds' provider)."""

    MIX = (("dns", 0.36), ("ntp", 0.04), ("cdn", 0.32), ("web", 0.28))

    def __init__(self, b: _Builder) -> None:
        self.b = b
        rng = b.rng
        self.pools: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]] = {}
        for v6 in (False, True):
            for kind, servers in (
                ("dns", b.resolvers[v6]),
                ("ntp", b.ntp[v6]),
                ("cdn", b.updates[v6]),
                ("web", b.web[v6]),
            ):
                if len(servers):
                    w = 1.0 / (np.arange(len(servers)) + 1.0) ** 0.9  # a few very popular services
                    self.pools[(kind, v6)] = (rng.permutation(servers), np.cumsum(w / w.sum()))
            cl = b.clients[v6]
            if len(cl):
                w = rng.lognormal(0, 1.2, len(cl))
                self.pools[("client", v6)] = (cl, np.cumsum(w / w.sum()))
        hours = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4], float)
        self.hour_p = hours / hours.sum()
        self.v6_share = b.sc.noise.ipv6_share if ("client", True) in self.pools else 0.0

    def sessions(self, n: int, day: int, hours: tuple[int, int] = (0, 24)) -> T.Sessions:
        """n sessions starting on ``day`` within ``hours`` (UTC), by the daily rhythm."""
        b, rng = self.b, self.b.rng
        kind = rng.choice(len(self.MIX), n, p=[p for _, p in self.MIX])
        v6 = rng.random(n) < self.v6_share
        hp = self.hour_p[hours[0] : hours[1]]
        hour = hours[0] + _draw(rng, np.cumsum(hp / hp.sum()), n)
        t0 = b.t0 + day * DAY + hour * HOUR + rng.integers(0, HOUR, n)
        parts = []
        for ki, (name, _) in enumerate(self.MIX):
            for fam in (False, True):
                ix = np.flatnonzero((kind == ki) & (v6 == fam))
                m = len(ix)
                if m == 0 or (name, fam) not in self.pools or ("client", fam) not in self.pools:
                    continue
                srv, sw = self.pools[(name, fam)]
                cli, cw = self.pools[("client", fam)]
                a = cli[_draw(rng, cw, m)]
                bb = srv[_draw(rng, sw, m)]
                c: dict[str, Any]
                if name == "dns":
                    c = dict(
                        proto=17,
                        dport=53,
                        data0=1,
                        data1=1,
                        dsz0=rng.uniform(60, 90, m),
                        dsz1=rng.uniform(90, 400, m),
                        dur=rng.integers(5, 80, m),
                    )
                elif name == "ntp":
                    c = dict(
                        proto=17, dport=123, sport=123, data0=1, data1=1, dsz0=76, dsz1=76, dur=rng.integers(5, 60, m)
                    )
                else:
                    big = 40 if name == "cdn" else 15
                    d0 = T.lognormal_int(rng, m, 6, 1.0, 1, 20_000)
                    d1 = T.lognormal_int(rng, m, big, 1.6, 1, 400_000)
                    c = T.tcp_established(rng, m, d0, d1, rng.uniform(100, 600, m), rng.uniform(800, 1400, m))
                    fail = rng.random(m)
                    for k in ("ack0", "ack1", "data0", "data1", "fin0", "fin1"):
                        c[k] = np.where(fail < 0.04, 0, c[k])
                    c["syn1"] = np.where(fail < 0.02, 0, c["syn1"])  # unanswered
                    c["rst1"] = ((fail >= 0.02) & (fail < 0.04)).astype(np.int64)  # refused
                    dur = T.lognormal_int(rng, m, 4 * SEC, 2.0, 30, 3 * HOUR)
                    c = dict(
                        c,
                        dport=np.where(rng.random(m) < 0.85, 443, 80),
                        dur=np.where(fail < 0.04, rng.integers(20, 3000, m), dur),
                    )
                parts.append(
                    T.new_sessions(
                        m, t0=t0[ix], a=a, b=bb, v6=fam, tag=0, sport=c.pop("sport", _ephemeral(rng, m)), **c
                    )
                )
        return T.concat(parts)


# ----- driver ------------------------------------------------------------------------------------


def _assign(f: dict[str, np.ndarray], n_exporters: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Exporter (by the responder's side of the network), interfaces and export time of each flow."""
    server = np.where(f["dir"] == 0, f["dst"], f["src"])
    f["exporter"] = ((server * 2654435761) >> 7) % n_exporters if n_exporters > 1 else np.zeros(len(server), np.int64)
    f["in_if"] = np.where(f["dir"] == 0, 1, 2).astype(np.uint16)
    f["out_if"] = np.where(f["dir"] == 0, 2, 1).astype(np.uint16)
    f["export"] = f["end"] + INACTIVE_TIMEOUT_MS + rng.integers(0, SEC, len(server))
    return f


def simulate(
    scenario: Scenario,
    out_dir: Path,
    keep_flows: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
) -> Truth:
    """Write ``out_dir``/exports/day-NN.pcap, seeds.txt, asn.tsv and truth.json; return the truth.

    ``progress(day, days, flows_so_far)`` is called after each day's file.
    """
    sc = scenario
    sc.validate()
    out = Path(out_dir)
    (out / "exports").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sc.seed)
    b = _Builder(sc, rng)
    sessions = b.build()
    timeout = sc.active_timeout_s * SEC
    actor = _assign(T.to_flows(sessions, sc.sampling, timeout, rng), sc.exporters, rng)
    order = np.argsort(actor["export"], kind="stable")
    actor = T.take(actor, order)
    bg = _Background(b)
    exporters = [
        Exporter(f"192.0.2.{i + 1}", source_id=i + 1, boot_ms=sc.start_ms - int(rng.integers(DAY, 3 * DAY)))
        for i in range(sc.exporters)
    ]
    writer = V9Writer(exporters, sc.sampling)
    days = sc.total_days
    # background fills the rest of --flows, and is never less than a quarter of it
    budget = max(sc.flows - len(actor["export"]), sc.flows // 4)
    # how many exported flows one background session yields at this sampling rate
    pilot = T.to_flows(bg.sessions(20_000, 0), sc.sampling, timeout, np.random.default_rng(sc.seed + 1))
    per_session = max(len(pilot["start"]) / 20_000, 1e-4)
    carry: dict[str, np.ndarray] | None = None
    kept: list[dict[str, np.ndarray]] = []
    v4, v6 = b.book.v4, b.book.v6
    files, per_day = [], []
    total_flows = 0
    day_edges = sc.start_ms + np.arange(days + 1) * DAY
    # Days are written in slices of a few hours, so memory follows the slice, not the day or the run.
    slice_h = 6
    slices = [(d, h) for d in range(days) for h in range(0, 24, slice_h)]
    share = np.array([bg.hour_p[h : h + slice_h].sum() for _, h in slices])
    cum = np.concatenate([[0.0], np.cumsum(share) / share.sum()])
    boot = np.array([e.boot_ms for e in exporters], np.int64)
    day_stats: dict[str, int] = {}
    for k, (d, h) in enumerate(slices):
        lo, hi = day_edges[d] + h * HOUR, day_edges[d] + (h + slice_h) * HOUR
        last = k == len(slices) - 1
        want = int(round(budget * cum[k + 1])) - int(round(budget * cum[k]))
        n_sess = int(round(want / per_session))
        bgf = None
        if n_sess:
            bgf = _assign(
                T.to_flows(bg.sessions(n_sess, d, (h, h + slice_h)), sc.sampling, timeout, rng), sc.exporters, rng
            )
        i0, i1 = np.searchsorted(actor["export"], [lo, hi]) if k else (0, np.searchsorted(actor["export"], hi))
        if last:
            i1 = len(actor["export"])
        parts = [p for p in (carry, bgf, T.take(actor, np.arange(i0, i1))) if p is not None]
        allf = T.concat(parts)
        now = np.ones(len(allf["export"]), bool) if last else allf["export"] < hi
        part = T.take(allf, np.flatnonzero(now))
        carry = T.take(allf, np.flatnonzero(~now))
        path = out / "exports" / f"day-{d + 1:02d}.pcap"
        stats = writer.write(path, part, v4, v6, append=h > 0)
        for key, v in stats.items():
            day_stats[key] = day_stats.get(key, 0) + v
        total_flows += stats["records"]
        if keep_flows:
            part["day"] = np.full(len(part["export"]), d + 1, np.int16)
            part["boot"] = boot[part["exporter"]]
            kept.append(part)
        if h + slice_h == 24:
            files.append(path)
            per_day.append(
                {"day": d + 1, "date": iso(day_edges[d])[:10], "file": str(path.relative_to(out)), **day_stats}
            )
            day_stats = {}
            if progress:
                progress(d + 1, days, total_flows)
    flows = T.concat(kept) if keep_flows else None
    book = b.book
    (out / "seeds.txt").write_text(
        f"# {sc.name}: {sc.seeds} seeds at AS{sc.seed_provider.asn} ({sc.seed_provider.name}), flowpivot simulate\n"
        + "".join(a + "\n" for a in book.text(b.seeds))
    )
    asn_rows = book.write_ip2asn(out / "asn.tsv")
    data = _truth(sc, b, actor, per_day, total_flows, exporters, asn_rows)
    truth = Truth(data, book, flows, files)
    truth.write(out / "truth.json")
    return truth


def _truth(
    sc: Scenario,
    b: _Builder,
    actor: dict[str, np.ndarray],
    per_day: list[dict[str, Any]],
    total: int,
    exporters: list[Exporter],
    asn_rows: int,
) -> dict[str, Any]:
    text = b.book.text
    tag_names = {v: k for k, v in T.TAGS.items()}
    counts = np.bincount(actor["tag"].astype(np.int64), minlength=len(T.TAGS))
    seeds = []
    for s in range(sc.seeds):
        member_of = [i for i, cs in enumerate(b.cluster_seeds) if s in set(cs.tolist())]
        seeds.append({
            "address": text(b.seeds[s]),
            "first_active": iso(sc.start_ms + int(b.seed_first_day[s]) * DAY),
            "dark_at": iso(int(b.seed_dark[s])),
            "clusters": member_of,
            "decoy_target": bool(s in set(b.decoy_targets.tolist())),
        })  # fmt: skip
    managed = np.isin(actor["tag"], [T.TAGS["controller_seed"], T.TAGS["controller_new"]])
    ctrl = np.where(actor["dir"][managed] == 0, actor["src"][managed], actor["dst"][managed])
    host = np.where(actor["dir"][managed] == 0, actor["dst"][managed], actor["src"][managed])
    seen: dict[tuple[int, int], int] = {}
    if managed.any():
        pairs, n_pair = np.unique(np.stack([ctrl, host], axis=1), axis=0, return_counts=True)
        seen = {(p[0], p[1]): k for p, k in zip(pairs.tolist(), n_pair.tolist(), strict=True)}
    clusters: list[dict[str, Any]] = []
    for i, ((c, member_seeds, hour), seeds_ix) in enumerate(zip(b.clusters_truth, b.cluster_seeds, strict=True)):
        clusters.append({
            "id": i,
            "provider": c.provider.as_dict(),
            "members": text(b.members[i]),
            "seeds": text(b.seeds[seeds_ix]),
            "member_seeds": {text(b.members[i][m]): text(np.array(v)) for m, v in member_seeds.items()},
            # what the exports show of each managed pair at this sampling rate (both directions)
            "exported_flows": {
                text(b.members[i][m]): {text(x): int(seen.get((int(b.members[i][m]), x), 0)) for x in v}
                for m, v in member_seeds.items()
            },
            "working_hours_utc": hour,
        })  # fmt: skip
    overlap = set(clusters[0]["seeds"])
    for other in clusters[1:]:
        overlap &= set(other["seeds"])
    pairwise = [
        {"clusters": [i, j], "count": len(s), "seeds": sorted(s)}
        for i in range(len(clusters))
        for j in range(i + 1, len(clusters))
        for s in [set(clusters[i]["seeds"]) & set(clusters[j]["seeds"])]
    ]
    new = [
        {
            "address": text(h),
            "provider": sc.seed_provider.as_dict(),
            "first_active": iso(sc.start_ms + int(fd) * DAY),
            "managed_by": text(np.array(mgr)),
            "exported_flows": {text(m): seen.get((m, int(h)), 0) for m in mgr},
        }
        for h, fd, mgr in zip(b.new, b.new_first_day, b.new_managers, strict=True)
    ]
    noise = {
        "syn_scanners": text(b.synscan),
        "research_scanners": text(b.research),
        "decoys": text(b.decoys),
        "victims": text(b.victims),
        "resolvers": text(np.concatenate([b.resolvers[False], b.resolvers[True]])),
        "ntp_servers": text(np.concatenate([b.ntp[False], b.ntp[True]])),
        "update_servers": text(np.concatenate([b.updates[False], b.updates[True]])),
        "seed_provider_web_servers": text(b.stark_web),
    }
    end_dark_day = sc.start_ms + sc.dark_day * DAY
    return {
        "generator": "flowpivot simulate",
        "scenario": sc.as_dict(),
        "period": {
            "start": iso(sc.start_ms),
            "end": iso(sc.start_ms + sc.total_days * DAY),
            "modelled_days": sc.days,
            "post_days": sc.post_days,
            "suspension": iso(b.dark_base),
        },
        "seed_provider": sc.seed_provider.as_dict(),
        "seeds": seeds,
        "clusters": clusters,
        "overlap": {"count": len(overlap), "seeds": sorted(overlap)},  # seeds every cluster manages
        "overlaps": pairwise,
        "new_infrastructure": new,
        "noise": noise,
        "victims": b.victim_truth,
        "decoy": {
            "provider": org(sc.noise.decoy_org).as_dict(),
            "members": text(b.decoys),
            "seeds": text(b.seeds[b.decoy_targets]),
            "behaviour": "SYN only (with retransmissions); answered by SYN-ACK on 443, RST on 22",
        },  # fmt: skip
        "noise_sizes": {
            "research_targets": len(b.research_targets),
            "syn_scan_targets": len(b.syn_targets),
            "background_clients": b.n_clients,
        },
        "acceptance": {
            "clusters": [
                {
                    "asn": c["provider"]["asn"],
                    "name": c["provider"]["name"],
                    "members": sorted(c["members"]),
                    "seeds": len(c["seeds"]),
                }
                for c in clusters
            ],
            "cluster_count": len(clusters),
            "overlap": len(overlap),
            "overlaps": [{"clusters": o["clusters"], "count": o["count"]} for o in pairwise],
            "expansion": sorted(x["address"] for x in new),
            "noise_never_in_clusters_or_expansion": sorted({a for v in noise.values() for a in v}),
            "every_seed_dark_after": iso(end_dark_day),
        },
        "sampling_rate": sc.sampling,
        "exporters": [
            {
                "address": e.address,
                "source_id": e.source_id,
                "boot": iso(e.boot_ms),
                "collector": f"{COLLECTOR}:{COLLECTOR_PORT}",
            }
            for e in exporters
        ],
        "flows": {
            "exported": total,
            "actor_and_noise_by_tag": {tag_names[i]: int(counts[i]) for i in range(len(counts)) if i in tag_names},
            "asn_rows": asn_rows,
            "per_day": per_day,
        },
    }

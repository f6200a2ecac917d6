"""Everything that talks to the seeds and is not the actor: range sweeps, research scanners, uptime
monitors, victims (beaconing, refused) and probes (SYN floods, retry storms, reset bursts).

How each behaves on the wire, and where that comes from:

* a range sweep (masscan, zmap) sends one SYN per address and port in random order at a fixed rate;
  most addresses are unused and never answer; a live host answers SYN-ACK (open, and the scanner's
  kernel resets it) or RST-ACK (closed);
* a research scanner (Censys, Shadowserver) completes the handshake with what answers, reads a banner
  and resets;
* an uptime monitor opens a short HTTPS check to every customer target every few minutes;
* a victim beacons to its C2 at a fixed interval with jitter; when the C2 refuses (a closed port)
  every attempt is SYN then RST-ACK and the malware retries every 0.5-1 s for minutes, as the
  RemcosRAT capture (Stratosphere test18: 719 REJ in 498 s) shows;
* a reset burst is thousands of connection attempts to one closed port in seconds (Stratosphere
  test1: 2,305 SYN -> RST-ACK in 33 s).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np

from .. import traffic as T
from ..scenario import org
from .world import DAY, HOUR, MIN, SEC, World

__all__ = ["sweeps", "research", "monitors", "victims", "probes"]

OPEN_ON_SEEDS = (22, 80, 443, 3389)
SCAN_PORTS = (21, 22, 23, 80, 443, 445, 3389, 5900, 8080, 8443)


def _twins(w: World, role: str, orgs: list[str], n: int) -> dict[bool, np.ndarray]:
    """n hosts on IPv4 and, when a seed is on IPv6 and the organisation has IPv6 space, their IPv6 twins."""
    out = {False: w.alloc(role, orgs, n, False)}
    has6 = [o for o in orgs if any(":" in x for x in org(o).prefixes)]
    out[True] = w.alloc(role, has6, n, True) if w.seeds.v6.any() and has6 else np.zeros(0, np.int64)
    return out


def _swept_ranges(w: World, spec: dict[str, Any]) -> np.ndarray:
    """Every IPv4 address of the seed provider's prefixes that hold seeds (at most /max_prefix around each), plus some others."""
    clip = int(spec.get("max_prefix", 22))
    p = org(w.truth["seed_provider"])
    nets = set()
    for s in w.seeds.ix[~w.seeds.v6].tolist():
        net = w.prefix_of(s)
        if net is not None and w.asn_of(s) == p.asn:
            ip = ipaddress.ip_address(w.text(s))
            nets.add(net if net.prefixlen >= clip else ipaddress.ip_network(f"{ip}/{clip}", strict=False))
    others = [ipaddress.ip_network(x) for x in p.prefixes if ":" not in x]
    for k in w.rng.choice(len(others), min(int(spec.get("extra_prefixes", 1)), len(others)), replace=False).tolist():
        net = others[k]
        nets.add(net if net.prefixlen >= clip else next(net.subnets(new_prefix=clip)))
    addrs = [np.arange(int(n.network_address), int(n.broadcast_address) + 1, dtype=np.int64) for n in nets]
    return np.unique(np.concatenate(addrs)) if addrs else np.zeros(0, np.int64)


def _answer(
    w: World, kind: str, a: Any, b: np.ndarray, t0: np.ndarray, port: np.ndarray, live: np.ndarray, complete: bool
) -> None:  # noqa: PLR0913
    """One probe per target: SYN; a live open port answers SYN-ACK, a live closed one RST-ACK; the dead say nothing."""
    rng, n = w.rng, len(b)
    is_seed = np.isin(b, w.seeds.ix)
    open_ = live & np.where(is_seed, np.isin(port, OPEN_ON_SEEDS), np.isin(port, (80, 443, 22)))
    closed = live & ~open_
    c: dict[str, Any] = {"syn0": np.ones(n, np.int64), "syn1": open_.astype(np.int64), "rst1": closed.astype(np.int64)}
    if complete:  # handshake, banner, reset
        c.update(ack0=open_.astype(np.int64), data0=open_.astype(np.int64), data1=open_ * rng.integers(1, 4, n),
                 rst0=open_.astype(np.int64), dsz0=rng.uniform(80, 200, n), dsz1=rng.uniform(200, 1400, n))  # fmt: skip
        dur = np.where(open_, rng.integers(200, 3000, n), rng.integers(20, 300, n))
    else:
        c["rst0"] = open_.astype(np.int64)
        dur = rng.integers(20, 300, n)
    a = np.broadcast_to(np.asarray(a, np.int64), (n,))
    w.add(kind, n, t0=t0, dur=dur, a=a, b=b, dport=port, v6=w.book.is_v6[b], **c)


def sweeps(w: World, p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """SYN sweeps of every address of the seeds' provider ranges; returns those addresses and which are in use."""
    spec = p.get("sweep") or {}
    n = int(spec.get("scanners", 0))
    if n == 0 or not (~w.seeds.v6).any():
        return np.zeros(0, np.int64), np.zeros(0, bool)
    rng = w.rng
    before = w.book.n
    targets = w.claim_v4(org(w.truth["seed_provider"]), _swept_ranges(w, spec))
    live = targets < before  # addresses something was put on; the rest of the range is unused
    scanners = w.alloc("sweep scanner", spec.get("orgs", ["ipvolume", "mevspace", "hostbaltic"]), n)
    ports = spec.get("ports", list(SCAN_PORTS))
    for sc in scanners.tolist():
        for _ in range(int(spec.get("sweeps", 2))):
            port = int(rng.choice(ports))
            rate = float(rng.uniform(50, 2000))  # packets a second
            order = rng.permutation(len(targets))
            start = w.t0 + int(rng.integers(0, max(1, w.t_end - w.t0 - HOUR)))
            t0 = start + (np.arange(len(targets)) / rate * SEC).astype(np.int64)
            _answer(w, "sweep", sc, targets[order], t0, np.full(len(targets), port), live[order], complete=False)
    w.truth["swept_addresses"] = len(targets)
    return targets, live


def research(w: World, p: dict[str, Any], swept: tuple[np.ndarray, np.ndarray]) -> None:
    """Research scanners: every few days, a SYN to every address of the swept ranges, a handshake and a
    banner with whatever answers there, every seed and a share of the rest of the internet's servers."""
    spec = p.get("research") or {}
    n = int(spec.get("scanners", 0))
    if n == 0:
        return
    rng = w.rng
    hosts = _twins(w, "research scanner", spec.get("orgs", ["censys", "shadowserver", "shodan", "rapid7"]), n)
    every = float(spec.get("every_days", 2))
    ports = spec.get("ports", [22, 80, 443, 3389, 8080])
    for fam in (False, True):
        seeds = w.seeds.ix[w.seeds.v6 == fam]
        web = w.services[("web", fam)]
        others = rng.choice(web, min(int(spec.get("other_servers", 300)), len(web)), replace=False) if len(web) else web
        addrs, in_use = (swept[0], swept[1]) if not fam else (swept[0][:0], swept[1][:0])
        base = np.unique(np.concatenate([seeds, others, addrs[in_use]]))
        dead = addrs[~in_use]
        targets = np.concatenate([base, dead])
        live = np.concatenate([np.ones(len(base), bool), np.zeros(len(dead), bool)])
        for sc in hosts[fam].tolist():
            rounds = max(1, int(round(w.days / every)))
            for r in range(rounds):
                start = w.t0 + int((r + rng.random()) * every * DAY)
                if start > w.t_end - HOUR:
                    break
                k = len(targets)
                order = rng.permutation(k)
                t0 = start + np.sort(rng.integers(0, 6 * HOUR, k))
                _answer(w, "research", sc, targets[order], t0, rng.choice(ports, k), live[order], complete=True)


def monitors(w: World, p: dict[str, Any]) -> None:
    """Uptime monitors: a short HTTPS check of every seed and many other customers every few minutes."""
    spec = p.get("monitors") or {}
    n = int(spec.get("count", 0))
    if n == 0:
        return
    rng = w.rng
    hosts = _twins(w, "uptime monitor", spec.get("orgs", ["amazon", "digitalocean", "hetzner"]), n)
    for fam in (False, True):
        web = np.concatenate([w.services[("customer", fam)], w.services[("web", fam)]])
        k_other = min(int(spec.get("other_targets", 100)), len(web))
        for mon in hosts[fam].tolist():
            interval = int(float(spec.get("interval_min", 5)) * MIN)
            targets = np.concatenate([w.seeds.ix[w.seeds.v6 == fam], rng.choice(web, k_other, replace=False)])
            checks = np.arange(w.t0, w.t_end - MIN, interval)
            b = np.repeat(targets, len(checks))
            t0 = np.tile(checks, len(targets)) + np.repeat(rng.integers(0, interval, len(targets)), len(checks))
            t0 = t0 + rng.integers(-2 * SEC, 2 * SEC, len(t0))
            m = len(b)
            c = T.tcp_established(rng, m, rng.integers(1, 3, m), rng.integers(2, 6, m), 300.0, 1200.0)
            w.add("monitor", m, t0=t0, dur=rng.integers(80, 900, m), a=mon, b=b, dport=443, v6=fam, **c)


def _beacon_times(w: World, start: int, interval_s: float, jitter: float) -> np.ndarray:
    n = int((w.t_end - start) / (interval_s * SEC)) + 1
    steps = w.rng.uniform(1 - jitter, 1 + jitter, n) * interval_s * SEC
    t = start + np.cumsum(steps).astype(np.int64)
    return t[t < w.t_end - MIN]


def _loguniform(w: World, lo_hi: list[float]) -> float:
    lo, hi = lo_hi
    return float(np.exp(w.rng.uniform(np.log(lo), np.log(hi))))


def victims(w: World, p: dict[str, Any]) -> None:
    """Beaconing victims (established until their C2 goes dark, unanswered after) and refused victims."""
    spec = p.get("victims") or {}
    rng = w.rng
    w.truth["victims"] = []
    orgs = spec.get("orgs", ["comcast", "charter", "att", "dtag", "orange", "vodafone_de"])
    n_ok, n_ref = int(spec.get("count", 0)), int(spec.get("refused", 0))
    dark = np.flatnonzero(w.seeds.dark < w.t_end)
    for v in range(n_ok + n_ref):
        refused = v >= n_ok
        seed_k = int(rng.integers(0, len(w.seeds.ix)))
        if v < len(dark) and spec.get("prefer_dark", True):  # a victim that keeps calling after its C2 went dark
            seed_k = int(dark[v])
        fam = bool(w.seeds.v6[seed_k])
        same = w.seeds.ix[w.seeds.v6 == fam]
        k = 1 if refused else min(len(same), int(rng.integers(1, int(spec.get("max_seeds", 2)) + 1)))
        targets = np.unique(np.concatenate([[w.seeds.ix[seed_k]], rng.choice(same, k - 1, replace=False)]))
        host = int(w.alloc("victim", orgs, 1, fam)[0])
        port = int(rng.choice(spec.get("ports", [443, 8080, 4444, 5888])))
        interval = _loguniform(w, spec.get("interval_s", [30, 21600]))
        jitter = float(rng.uniform(*spec.get("jitter", [0.05, 0.4])))
        start = w.t0 + int(rng.integers(0, max(1, (w.t_end - w.t0) // 3)))
        ref = len(w.truth["victims"])
        for s in targets.tolist():
            if refused:
                _refused(w, spec, host, s, port, start, ref)
                continue
            t0 = _beacon_times(w, start + int(rng.integers(0, int(interval * SEC))), interval, jitter)
            n = len(t0)
            c = T.tcp_established(
                rng,
                n,
                rng.integers(2, 7, n),
                rng.integers(2, 9, n),
                rng.uniform(150, 400, n),
                rng.uniform(400, 1400, n),
            )
            w.add("victim", n, ref=ref, t0=t0, dur=rng.integers(200, 3000, n), a=host, b=s, dport=port, v6=fam, **c)
        w.truth["victims"].append(
            {"host": host, "seeds": targets, "interval_s": interval, "jitter": jitter, "port": port, "refused": refused}
        )


def _refused(w: World, spec: dict[str, Any], host: int, seed: int, port: int, start: int, ref: int) -> None:
    """Episodes of connection attempts every 0.5-1 s for minutes, each refused with RST-ACK (Zeek REJ)."""
    rng = w.rng
    every = _loguniform(w, spec.get("episode_every_s", [3600, 6 * 3600])) * SEC
    t = start
    while t < w.t_end - HOUR:
        length = float(rng.uniform(*spec.get("episode_s", [60, 500])))
        gaps = rng.uniform(0.5, 1.0, int(length / 0.75) + 1) * SEC
        t0 = t + np.cumsum(gaps).astype(np.int64)
        n = len(t0)
        w.add("victim", n, ref=ref, t0=t0, dur=rng.integers(1, 40, n), a=host, b=seed, dport=port,
              v6=w.book.is_v6[seed], syn0=1, rst1=1)  # fmt: skip
        t += int(every * rng.uniform(0.8, 1.2))


def probes(w: World, p: dict[str, Any]) -> None:
    """Bursts from one source to one seed while it is up: SYN floods, retry storms, reset bursts."""
    rng = w.rng
    w.truth["probes"] = []
    for spec in p.get("probes") or []:
        for _ in range(int(spec.get("count", 1))):
            kind = spec["kind"]
            k = int(rng.integers(0, len(w.seeds.ix)))
            seed, fam = int(w.seeds.ix[k]), bool(w.seeds.v6[k])
            host = int(w.alloc("prober", spec.get("orgs", ["digitalocean", "chinanet", "telefonica_br"]), 1, fam)[0])
            n = int(rng.integers(*spec["attempts"]))
            span = float(rng.uniform(*spec["span_s"])) * SEC
            lo, hi = max(int(w.seeds.first[k]), w.t0), min(int(w.seeds.dark[k]), w.t_end) - HOUR
            if hi <= lo:
                continue
            start = int(rng.integers(lo, hi))
            t0 = start + np.sort((rng.random(n) * span).astype(np.int64))
            port = int(rng.choice(spec.get("ports", [443, 80, 22, 902])))
            if kind == "syn-flood":  # half-open: SYN-ACK back, the sender's kernel resets
                c: dict[str, Any] = {"syn0": 1, "syn1": 1, "rst0": 1}
            elif kind == "retry-storm":  # each connection completes and is dropped at once
                c = T.tcp_established(rng, n, np.ones(n, np.int64), np.ones(n, np.int64), 120.0, 300.0, close="rst")
            else:  # reset burst to a closed port
                c = {"syn0": 1, "rst1": 1}
            w.add("probe", n, ref=len(w.truth["probes"]), t0=t0, dur=rng.integers(1, 50, n), a=host, b=seed,
                  dport=port, v6=fam, **c)  # fmt: skip
            w.truth["probes"].append({"host": host, "seed": seed, "kind": kind, "attempts": n, "span_s": span / SEC})

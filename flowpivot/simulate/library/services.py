"""Services everybody uses (resolvers, NTP, CDNs and update servers, mail, web sites) and the traffic of
ordinary clients to them: the background, an operator's own browsing, the users behind a NAT or an exit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import traffic as T
from .world import DAY, HOUR, MIN, SEC, World

__all__ = ["make_services", "client_sessions", "host_upkeep", "background", "EYEBALL", "HOSTING"]

EYEBALL = ("comcast", "charter", "att", "dtag", "orange", "vodafone_de", "telefonica_br", "chinanet")
HOSTING = ("hetzner", "ovh", "digitalocean", "amazon", "google", "cloudflare")
CDN_ORGS = ("microsoft", "akamai", "canonical", "fastly", "cloudflare", "amazon", "google")
MAIL_ORGS = ("google", "microsoft", "ovh", "hetzner")
NTP_ORGS = ("hetzner", "ovh", "digitalocean", "amazon")
RESOLVER_ORGS = ("google", "cloudflare", "quad9", "opendns")
# what a client does, by share of its sessions (DNS dominates by count, as on any border router)
MIX = {"dns": 0.38, "ntp": 0.03, "cdn": 0.27, "web": 0.26, "mail": 0.06}
# Sessions a day of one busy client (a household's devices together); sets the per-user rates.
CLIENT_SESSIONS_PER_DAY = 400
# Hourly activity of people (UTC, a European-American mix): a few times busier in the evening.
HOURS = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4], float)


def make_services(w: World, spec: dict[str, Any], seed_providers: list[str]) -> None:
    """Resolvers, NTP, CDN/update, mail and web servers in both families; web includes seed-provider customers."""
    for v6 in (False, True):
        w.services[("dns", v6)] = np.concatenate([w.fixed_or_alloc(k, v6) for k in RESOLVER_ORGS])
        w.services[("ntp", v6)] = w.alloc(
            "ntp server", NTP_ORGS, max(2, spec.get("ntp_servers", 12) // (4 if v6 else 1)), v6
        )
        w.services[("cdn", v6)] = w.alloc(
            "cdn/update server", CDN_ORGS, max(3, spec.get("cdn_servers", 40) // (4 if v6 else 1)), v6
        )
        w.services[("mail", v6)] = w.alloc(
            "mail server", MAIL_ORGS, max(2, spec.get("mail_servers", 12) // (4 if v6 else 1)), v6
        )
        n_web = spec.get("web_servers", 600) // (5 if v6 else 1)
        n_cust = spec.get("seed_provider_customers", 60) // (5 if v6 else 1)
        cust = w.alloc("seed-provider customer", seed_providers, n_cust, v6) if n_cust else np.zeros(0, np.int64)
        w.services[("customer", v6)] = cust
        w.services[("web", v6)] = np.concatenate([w.alloc("web server", HOSTING, n_web, v6), cust])  # fmt: skip
    w.services[("client", False)] = np.zeros(0, np.int64)
    w.services[("client", True)] = np.zeros(0, np.int64)


def _pick(rng: np.random.Generator, servers: np.ndarray, n: int) -> np.ndarray:
    """Servers by popularity: a few very popular ones (Zipf-like), fixed per server list."""
    w = 1.0 / (np.arange(len(servers)) + 1.0) ** 0.9
    return servers[np.minimum(np.searchsorted(np.cumsum(w / w.sum()), rng.random(n)), len(servers) - 1)]


def client_sessions(w: World, kind: str, a: np.ndarray, t0: np.ndarray, v6: bool, mix: dict[str, float] = MIX) -> None:
    """Sessions of clients ``a`` starting at ``t0`` to the shared services, by the mix of kinds."""
    rng, n = w.rng, len(a)
    if n == 0:
        return
    names = list(mix)
    p = np.array([mix[k] for k in names])
    which = rng.choice(len(names), n, p=p / p.sum())
    for ki, name in enumerate(names):
        ix = np.flatnonzero(which == ki)
        m = len(ix)
        servers = w.services.get((name, v6), np.zeros(0, np.int64))
        if m == 0 or len(servers) == 0:
            continue
        b = _pick(rng, servers, m)
        if name in ("dns", "ntp"):
            big = rng.uniform(90, 400, m) if name == "dns" else 76.0
            w.add(kind, m, t0=t0[ix], dur=rng.integers(5, 80, m), a=a[ix], b=b, dport=53 if name == "dns" else 123, proto=17,
                  data0=1, data1=1, dsz0=rng.uniform(60, 90, m), dsz1=big, v6=v6,
                  **({"sport": np.full(m, 123, np.uint16)} if name == "ntp" else {}))  # fmt: skip
            continue
        median = {"cdn": 40, "web": 15, "mail": 12}[name]
        d0 = T.lognormal_int(rng, m, 6, 1.0, 1, 20_000)
        d1 = T.lognormal_int(rng, m, median, 1.6, 1, 400_000)
        c = T.tcp_established(rng, m, d0, d1, rng.uniform(100, 600, m), rng.uniform(800, 1400, m))
        fail = rng.random(m)  # 2 % unanswered, 2 % refused, as on any busy link
        for k in ("ack0", "ack1", "data0", "data1", "fin0", "fin1"):
            c[k] = np.where(fail < 0.04, 0, c[k])
        c["syn1"] = np.where(fail < 0.02, 0, c["syn1"])
        c["rst1"] = ((fail >= 0.02) & (fail < 0.04)).astype(np.int64)
        dur = np.where(fail < 0.04, rng.integers(20, 3000, m), T.lognormal_int(rng, m, 4 * SEC, 2.0, 30, 3 * HOUR))
        web_port = np.where(rng.random(m) < 0.85, 443, 80)
        port = rng.choice(np.array([993, 587, 465]), m) if name == "mail" else web_port
        w.add(kind, m, t0=t0[ix], dur=dur, a=a[ix], b=b, dport=port, v6=v6, **c)


def diurnal_times(w: World, n: int, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """n start times between lo and hi following people's daily rhythm."""
    lo = w.t0 if lo is None else lo
    hi = w.t_end - MIN if hi is None else hi
    rng = w.rng
    if hi <= lo or n <= 0:
        return np.zeros(0, np.int64)
    got = np.zeros(0, np.int64)
    while len(got) < n:  # thinning: keep a uniform time with the probability of its hour
        t = lo + (rng.random(n * 2 + 16) * (hi - lo)).astype(np.int64)
        hour = ((t - w.t0) // HOUR) % 24
        got = np.concatenate([got, t[rng.random(len(t)) < HOURS[hour] / HOURS.max()]])
    return np.sort(got[:n])


def host_upkeep(w: World, hosts: np.ndarray, lo: np.ndarray, hi: np.ndarray, v6: np.ndarray, per_day: float) -> None:
    """A server's own upkeep while it is up: DNS lookups, NTP, package updates (``benign`` sessions)."""
    rng = w.rng
    for h, a, z, fam in zip(hosts.tolist(), lo.tolist(), hi.tolist(), v6.tolist(), strict=True):
        if z - a < HOUR:
            continue
        n = int(rng.poisson(per_day * (z - a) / DAY))
        t0 = np.sort(a + (rng.random(n) * (z - a - MIN)).astype(np.int64))
        mix = {"dns": 0.85, "ntp": 0.1, "cdn": 0.05}
        client_sessions(w, "benign", np.full(n, h), t0, bool(fam), mix)


MAX_BACKGROUND_SESSIONS = 5_000_000  # about 4 GB at the peak of a draw; a bound, not a target


def _records_per_session(w: World, cl: dict[bool, np.ndarray], v6_share: float, export: dict[str, Any]) -> float:
    """Records one background session yields on average through the draw's vantages (a 20,000-session pilot)."""
    pilot = World(np.random.default_rng(w.rng.integers(1 << 62)), w.days)
    pilot.book, pilot.services = w.book, w.services
    n = 20_000
    for fam, k in ((False, n - int(n * v6_share)), (True, int(n * v6_share))):
        if len(cl[fam]) and k:
            client_sessions(pilot, "background", pilot.rng.choice(cl[fam], k), diurnal_times(pilot, k), fam)
    s, _, _, _ = pilot.sessions()
    total, share = 0.0, 0.0
    for v in export["vantages"]:
        x = float(v.get("share", 1.0))
        if v.get("format", "v9").startswith("zeek"):
            total += x
        else:
            f = T.to_flows(s, int(v.get("sampling", 1)), 300 * SEC, pilot.rng, mode=v.get("mode", "random"))
            total += x * len(f["dir"]) / max(len(s["a"]), 1)
        share += x
    return max(total / share, 1e-3)


def background(w: World, spec: dict[str, Any], export: dict[str, Any] | None = None) -> int:
    """Many ordinary clients (eyeball networks, some on IPv6) using the services, by the daily rhythm.

    ``sessions`` sets their number; or ``records`` sets how many exported records they should yield
    through the draw's vantages (estimated on a pilot), up to ``MAX_BACKGROUND_SESSIONS``. Returns
    the number of sessions.
    """
    rng = w.rng
    n_clients = int(spec.get("clients", 3000))
    v6_share = float(spec.get("ipv6_share", 0.15))
    c6 = int(n_clients * v6_share)
    for v6, k in ((False, n_clients - c6), (True, c6)):
        cl = w.alloc(None, EYEBALL, k, v6)
        w.services[("client", v6)] = np.concatenate([w.services[("client", v6)], cl])
    clients = {fam: w.services[("client", fam)] for fam in (False, True)}
    if "records" in spec and export:
        n = int(
            min(float(spec["records"]) / _records_per_session(w, clients, v6_share, export), MAX_BACKGROUND_SESSIONS)
        )
    else:
        n = int(spec.get("sessions", 50_000))
    chunk = 400_000  # keeps the draw's memory flat at the realistic size
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        on6 = rng.random(m) < v6_share
        for fam in (False, True):
            cl = clients[fam]
            k = int((on6 == fam).sum())
            if len(cl) == 0 or k == 0:
                continue
            act = rng.lognormal(0, 1.2, len(cl))  # some households are much busier than others
            a = cl[np.minimum(np.searchsorted(np.cumsum(act / act.sum()), rng.random(k)), len(cl) - 1)]
            client_sessions(w, "background", a, diurnal_times(w, k), fam)
    return n

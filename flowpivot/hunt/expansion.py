"""The hunt's expansion stage: new hosts the cluster members manage, one hop at a time.

A mixin of :class:`flowpivot.hunt.engine.HuntRun` (it reads and fills the run's state: members,
excluded, victims, the seeds' reach); split out of engine.py to keep one idea per file. The rules
are docs/hunt.md, "9. Expansion".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from .keys import ip_of, ip_sort_key, iso, key_list, load_anchors
from .pivot import create_pairs, create_reach
from .reach import NO_STATS, count_more, degrees, reach_from_peers
from .rules import (
    HostStats,
    PairStats,
    Population,
    enrichment_of,
    holm,
    managed_like,
    noise_verdict,
    session_size,
    substance,
)
from .verdicts import apply_allowlist, noise_keys

if TYPE_CHECKING:
    from .context import HuntContext
    from .noise import Allowlist
    from .params import HuntParams
    from .provider import Provider

__all__ = ["ExpansionStage"]


class ExpansionStage:
    """The expansion stage of a hunt run (see the module doc)."""

    # the run's state this stage reads or fills (set by HuntRun)
    ctx: HuntContext
    p: HuntParams
    allow: Allowlist
    prov: Provider
    members: dict[str, set[str]]
    excluded: dict[str, dict[str, Any]]
    manages: dict[str, set[str]]
    by_peer: dict[str, list[dict[str, Any]]]
    seed_key_set: set[str]
    victim_keys: set[str]
    since_ms: int
    until_ms: int
    hosts_in_window: int
    seed_reach: float
    found: dict[str, dict[str, Any]]

    def step(self, name: str) -> None:
        raise NotImplementedError

    # ---- expansion -------------------------------------------------------------------------------

    def expansion(self) -> None:
        """Peers of the members (not seeds, members, victims or noise) with substantial established
        sessions with at least ``min_members`` members, judged by the same noise rules with the
        seeds and members as the known set; ``hops`` times from the hosts just found."""
        con, p = self.ctx, self.p
        if not self.members or p.hops < 1:
            self.step("expansion")
            return
        table = "cp"  # the frontier's sessions
        frontier = set(self.members)
        known_infra = set(self.members)
        found: dict[str, dict[str, Any]] = {}
        small = p.small_connection_packets
        # the smallest session (packets per connection) each member held with a seed: a new host
        # is managed the way the seeds are, not browsed (rules.substance.managed_like)
        floor = {
            m: min((session_size(PairStats.from_row(x)) for x in self.by_peer.get(m, []) if x["counts"]), default=0.0)
            for m in self.members
        }
        for hop in range(1, p.hops + 1):
            key_list(con, "front_arrow", frontier)
            rows = (
                con.sql(
                    f"""SELECT * FROM {table} WHERE established AND anchor IN (SELECT k FROM front_arrow)
                    AND peer <> anchor"""
                )
                .to_arrow_table()
                .to_pylist()
            )
            con.unregister("front_arrow")
            by: dict[str, set[str]] = defaultdict(set)
            opened: dict[str, bool] = defaultdict(lambda: True)
            strong: dict[str, int] = defaultdict(int)
            for r in rows:
                k = r["peer"]
                if k in self.seed_key_set or k in known_infra or k in found or k in self.victim_keys:
                    continue
                pair = PairStats.from_row(r)
                sub = substance(pair, small)
                # one connection is no management: a host managed is returned to (persistence)
                # unless one session alone shows it (substantial)
                persistent = sub.substantial or pair.conns >= 2
                if k in self.excluded or not sub.counts or not persistent:
                    continue
                if not managed_like(session_size(pair), floor[r["anchor"]]):
                    continue
                by[k].add(r["anchor"])
                strong[k] += int(sub.substantial)
                opened[k] = opened[k] and r["initiator"] == "anchor"
            cands = {k: v for k, v in by.items() if len(v) >= p.min_members}
            apply_allowlist(self.allow, self.prov, cands, self.excluded)
            if not cands:
                break
            # the busy ones' reach from the index's host-peer table when it holds them whole (the
            # same figures as their flows give), the others' from their flows
            rest = reach_from_peers(con, f"xa{hop}", list(cands), f"xr{hop}", self.since_ms, self.until_ms)
            if len(rest) == len(cands):
                load_anchors(con, f"xa{hop}", rest)
                create_reach(con, f"xa{hop}", f"xr{hop}", self.since_ms, self.until_ms)
            else:
                count_more(con, f"xa{hop}", rest, f"xr{hop}", self.since_ms, self.until_ms)
            known = self.seed_key_set | known_infra | set(found) | set(cands)
            stats = degrees(con, f"xr{hop}", known, set(self.excluded))
            # the enrichment test asks whether it reaches the hosts it was found through (the
            # members, or the hosts of the previous hop) more than its reach explains
            hits = degrees(con, f"xr{hop}", frontier, set())
            pop = Population(
                max(self.hosts_in_window, 1),
                len(frontier),
                self.seed_reach,
                p.alpha,
                p.min_specificity,
                10**9,
            )  # fmt: skip (no local test for new hosts: both tails decide)
            hs: dict[str, HostStats] = {}
            for k in cands:
                s = stats.get(k, NO_STATS)
                hs[k] = HostStats(
                    degree=int(s["degree"]), known=int(s["known"]), fan_out=int(s["fan_out"]), fan_in=int(s["fan_in"]),
                    seeds=int(hits.get(k, NO_STATS)["known"]), seed_clients=opened[k], substantial=strong[k],
                    known_in=int(s.get("known_in") or 0),
                    noise=int(s["noise"]), noise_in=int(s.get("noise_in") or 0),
                )  # fmt: skip
            tests = {k: enrichment_of(h, pop) for k, h in hs.items()}
            adjusted = holm({k: e.p for k, e in tests.items()})
            frontier = set()
            for k, mgrs in cands.items():
                s = stats.get(k, NO_STATS)
                v = noise_verdict(hs[k], pop, p_adjusted=adjusted[k])
                if v is not None:
                    self.excluded[k] = {"reason": v.reason, "detail": v.detail, "members": len(mgrs), **noise_keys(s)}
                    continue
                e = tests[k]
                informative = s["degree"] - s["noise"]
                spec = s["known"] / informative if informative > 0 else 1.0
                found[k] = {
                    "ip": ip_of(k),
                    "_by": mgrs,
                    "contacted_by": sorted((ip_of(b) for b in mgrs), key=ip_sort_key),
                    "score": round(spec * (1 - 0.5 ** (len(mgrs) - 1)), 4),
                    "confidence": round(1.0 - adjusted[k], 6),
                    "hop": hop,
                    "evidence": {
                        "established_with": len(mgrs),
                        "p_value": e.p,
                        "p_adjusted": adjusted[k],
                        **noise_keys(s),
                    },  # fmt: skip
                }
                for m in mgrs:
                    self.manages[m].add(k)
                frontier.add(k)
                floor[k] = min(floor[m] for m in mgrs)
            known_infra |= frontier
            if not frontier:
                break
            if hop < p.hops:  # sessions around the hosts just found, for the next hop
                table = f"xp{hop}"
                load_anchors(con, f"xs{hop}", list(frontier))
                create_pairs(con, f"xs{hop}", table, self.since_ms, self.until_ms, services=False, full=False)
        self._new_host_sessions(found)
        self.found = found
        self.step("expansion")

    def _new_host_sessions(self, found: dict[str, dict[str, Any]]) -> None:
        """Each new host's first and last session with the hosts it was found through, and the
        ports of those sessions (one pass over the new hosts' flows)."""
        if not found:
            return
        con = self.ctx
        load_anchors(con, "xf", list(found))
        create_pairs(con, "xf", "xfp", self.since_ms, self.until_ms, services=True, full=True)
        by = {k: set(v["_by"]) for k, v in found.items()}
        span: dict[str, tuple[int, int]] = {}
        for a, peer, first, last in con.sql("SELECT anchor, peer, first_ms, last_ms FROM xfp").fetchall():
            if peer in by.get(a, ()):
                lo, hi = span.get(a, (first, last))
                span[a] = (min(lo, first), max(hi, last))
        ports: dict[str, Counter[tuple[int, str, int]]] = defaultdict(Counter)
        for a, peer, proto, side, port, n in con.sql(
            "SELECT anchor, peer, proto, side, port, flows FROM xfp_services"
        ).fetchall():
            if peer in by.get(a, ()):
                ports[a][(int(proto), str(side), int(port))] += int(n)
        for k, v in found.items():
            first, last = span.get(k, (None, None))
            v["first_seen"], v["last_seen"] = iso(first), iso(last)
            # side "anchor": the new host's own service (the members opened the sessions)
            v["services"] = [
                {"proto": pr, "port": po, "side": sd, "flows": n}
                for (pr, sd, po), n in sorted(ports[k].items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            ]

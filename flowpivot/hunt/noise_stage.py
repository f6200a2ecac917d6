"""The hunt's noise stage: two rounds of the noise rules over the candidates' reach in the window.

A mixin of :class:`flowpivot.hunt.engine.HuntRun` (it reads the run's candidates and seed pairs
and fills ``excluded``, ``members`` and ``member_stats``); split out of engine.py to keep one idea
per file. The rules are docs/hunt.md, "6. Noise"; the queries are in :mod:`.reach`.

With the address index's host-peer table, the busiest candidates that round 1 cannot condemn
whatever their counts are not counted at first: round 2 bounds their managed draws from the table
and decides the enrichment test on Holm's adjustment of the bounds (docs/hunt.md, "Managed draws
from a bound"); only the hosts they do not decide are counted. The verdicts are those of the
full count.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .keys import key_list, load_anchors
from .pivot import create_pairs
from .reach import (
    NO_STATS,
    bounded_reach,
    count_more,
    degrees,
    local_peers,
    managed_bounds,
    managed_counts,
    median_degree,
)
from .rules import HostStats, Population, enrichment_of, noise_verdict
from .rules.enrichment import holm_bounded, seed_enrichment
from .rules.substance import ORDER_OF_MAGNITUDE
from .verdicts import exclusion, noise_keys, verdict_keys

if TYPE_CHECKING:
    from .context import HuntContext
    from .params import HuntParams

__all__ = ["NoiseStage"]

log = logging.getLogger("flowpivot.hunt")


class NoiseStage:
    """The noise stage of a hunt run (see the module doc)."""

    # the run's state this stage reads or fills (set by HuntRun)
    ctx: HuntContext
    p: HuntParams
    candidates_: dict[str, set[str]]
    excluded: dict[str, dict[str, Any]]
    members: dict[str, set[str]]
    member_stats: dict[str, dict[str, Any]]
    by_peer: dict[str, list[dict[str, Any]]]
    seed_key_set: set[str]
    active_seeds: Any
    seeds_touched: dict[str, int]
    substantial: dict[str, int]
    seed_clients: dict[str, bool]
    since_ms: int
    until_ms: int
    hosts_in_window: int
    edges_in_window: int
    seed_degree: float
    seed_reach: float
    tested: int

    def step(self, name: str) -> None:
        raise NotImplementedError

    def _population(self, yardstick: float, tested: int, targets: int | None = None) -> Population:
        """The first round's population; its level is ``alpha`` unadjusted (see ``noise_verdict``)."""
        seeds = len(self.active_seeds) if targets is None else targets
        return Population(
            max(self.hosts_in_window, 1), seeds, yardstick, self.p.alpha, self.p.min_specificity, self.p.min_seeds
        )

    def _judge(self, pop: Population, hits: dict[str, int]) -> Callable[[str, dict[str, Any]], dict[str, Any] | None]:
        def judge(k: str, b: dict[str, Any]) -> dict[str, Any] | None:
            h = HostStats(
                degree=int(b["degree"]),
                known=int(b["known"]),
                fan_out=int(b["fan_out"]),
                fan_in=int(b["fan_in"]),
                seeds=hits.get(k, 0),
                seed_clients=self.seed_clients.get(k, False),
                substantial=self.substantial.get(k, 0),
                bound=b.get("bound"),
            )
            v = noise_verdict(h, pop, enrichment=False)
            if v is None:
                return None
            return {"reason": v.reason, "detail": v.detail}

        return judge

    def _round1_silent(self, k: str) -> bool:
        """Round 1 cannot condemn the host whatever its counts: neither a service the seeds use
        (rule 2 needs the seeds to open every session) nor weak evidence (rule 3 needs no
        substantial session). Its reach is needed only by round 2's enrichment test."""
        return not self.seed_clients.get(k, False) and self.substantial.get(k, 0) > 0

    def noise(self) -> None:
        """Two rounds over the candidates' reach in the whole window (:mod:`.rules.noise`): round 1
        finds scanners and shared services, round 2 judges the rest without the noise among their peers."""
        con, p = self.ctx, self.p
        cands = self.candidates_
        self.seed_degree = median_degree(con, "sp")
        self.seed_reach = self.seed_degree
        if not cands:
            self.step("noise")
            return
        self.tested = len(cands)
        known = self.seed_key_set | set(cands)
        pop1 = self._population(self.seed_degree, self.tested)
        condemned, kept, deferred = bounded_reach(
            con,
            "cand",
            list(cands),
            known,
            self._judge(pop1, self.seeds_touched),
            self.since_ms,
            self.until_ms,
            "cr",
            keep="cand_flows",
            defer=self._round1_silent,
        )
        for k, b in condemned.items():
            self.excluded[k] = exclusion(b, len(cands[k]))
        stats = degrees(con, "cr", known, set())
        local = self._local(cands, "cr")
        for k in cands:
            if k in condemned or k in deferred:  # a deferred host: round 1 cannot condemn it
                continue
            v = noise_verdict(self._host(k, stats.get(k, NO_STATS), local.get(k)), pop1, enrichment=False)
            if v is not None:
                self.excluded[k] = exclusion({**stats.get(k, NO_STATS), **verdict_keys(v)}, len(cands[k]))
        # round 2: the seeds' own reach without the noise (scanners and victims inflate a seed's
        # degree, not its reach), and each candidate's peers without those found to be noise; the
        # enrichment tests of all candidates together, adjusted by Holm's step-down
        self.seed_reach = median_degree(con, "sp", set(self.excluded))
        alive = {k: v for k, v in cands.items() if k not in self.excluded}
        known = self.seed_key_set | set(alive)
        # the seeds count by their degree (without the noise among their peers): seeds that are
        # busy servers are reached more often by chance than a host of average degree
        pop2 = Population(max(self.hosts_in_window, 1), self._seed_mass(), self.seed_reach, p.alpha,
                          p.min_specificity, p.min_seeds)  # fmt: skip
        noise = set(self.excluded)
        pending = {k for k in deferred if k in alive}
        # the deferred hosts' managed draws from below, and their p-values from below with them
        bounds = managed_bounds(con, "defer", {k: alive[k] for k in sorted(pending)}, "sp", noise,
                                ORDER_OF_MAGNITUDE, self.since_ms, self.until_ms) if pending else {}  # fmt: skip
        lower = {k: seed_enrichment(h, max(d, h, 1), pop2.hosts, pop2.seeds).p_global for k, (d, h) in bounds.items()}
        while True:
            stats = degrees(con, "cr", known, noise)
            # the draws of the enrichment test: the peers each candidate holds sessions with of the
            # kind it holds with the seeds (rules.substance.managed_like), not the sites it browses
            exact = {k: v for k, v in alive.items() if k not in pending}
            managed = managed_counts(con, "cr", exact, self.seed_key_set, noise, ORDER_OF_MAGNITUDE)
            hosts = {
                k: replace(
                    self._host(k, stats.get(k, NO_STATS), local.get(k), noise=True),
                    draws=max(managed.get(k, (0, 0))[0], 1), draw_hits=managed.get(k, (0, 0))[1],
                )
                for k in exact
            }  # fmt: skip
            tests = {k: enrichment_of(h, pop2) for k, h in hosts.items()}
            decided, adjusted, loose = holm_bounded(
                {k: e.p for k, e in tests.items()}, {k: lower.get(k, 0.0) for k in pending}, pop2.level
            )
            if adjusted is not None:
                break
            # count what the bounds did not decide; when the exact hosts' verdicts depend on the
            # decided hosts' true p-values, count those too
            more = (pending - decided) or pending
            count_more(con, "defer", sorted(more), "cr", self.since_ms, self.until_ms)
            pending -= more
            local.update(self._local({k: alive[k] for k in more}, "cr"))
        assert adjusted is not None
        log.debug("noise: %d of %d deferred hosts decided from their bounds", len(pending), len(deferred))
        for k in sorted(pending):
            self.excluded[k] = self._bounded_exclusion(k, alive[k], deferred[k], bounds[k], lower[k], adjusted[k], pop2)
        for k, seeds in alive.items():
            if k in pending:
                continue
            v = noise_verdict(hosts[k], pop2, p_adjusted=adjusted[k], adjusted_low=k in loose)
            e = tests[k]
            info = {**noise_keys(stats.get(k, NO_STATS)), "p_value": e.p, "p_adjusted": adjusted[k],
                    "p_global": e.p_global, "p_local": e.p_local, "substantial_seeds": len(seeds),
                    "confidence": round(1.0 - adjusted[k], 6)}  # fmt: skip
            if k in loose:  # not enriched either way; its adjustment is known from below
                info["p_adjusted_bound"] = "lower"
            if v is not None:
                self.excluded[k] = {"reason": v.reason, "detail": v.detail, "seeds": len(seeds), **info}
            else:
                self.members[k] = seeds
                self.member_stats[k] = info
        if self.members and p.hops > 0:
            # sessions around the members only, for the expansion (every member is a candidate
            # the bound did not condemn: its flows are in cand_flows when they were kept)
            load_anchors(con, "memb", list(self.members))
            create_pairs(
                con, "memb", "cp", self.since_ms, self.until_ms, services=False, full=False,
                source="cand_flows" if kept else None,
            )  # fmt: skip
        con.drop_table("cand_flows")
        self.step("noise")

    def _bounded_exclusion(
        self,
        k: str,
        seeds: set[str],
        bound: dict[str, Any],
        managed: tuple[int, int],
        p_low: float,
        adj_low: float,
        pop: Population,
    ) -> dict[str, Any]:
        """A host the bounds of round 2 decided: not enriched, from a lower bound of its managed
        draws (the index's host-peer table) and its reach from its busiest day."""
        draws, hits = managed
        kind = "scanner" if bound["fan_out"] >= bound["fan_in"] else "shared-service"
        e = seed_enrichment(hits, max(draws, hits, 1), pop.hosts, pop.seeds)
        detail = (
            f"at least {bound['degree']:,} distinct peers ({bound['bound']}: fan-out {bound['fan_out']:,}, "
            f"fan-in {bound['fan_in']:,}); holds sessions of the size it holds with the seeds with at least "
            f"{draws:,} of them (a lower bound from the index's host-peer table), {hits} of them seeds "
            f"(chance alone: {e.expected:.3g} of {e.population:,} active hosts, P >= {p_low:.2g}; adjusted for "
            f"the hosts tested with it: at least {adj_low:.2g}): not above chance at {pop.level:.2g}"
        )
        out = exclusion({**bound, "reason": kind, "detail": detail, "p_global": p_low}, len(seeds))
        out["specificity"] = None  # its known peers were not counted
        out.pop("known_bound", None)
        out.update({"p_value": p_low, "p_adjusted": adj_low, "p_bound": "lower", "draws": draws,
                    "draws_bound": "lower", "substantial_seeds": len(seeds),
                    "confidence": round(1.0 - adj_low, 6)})  # fmt: skip
        return out

    def _seed_mass(self) -> int:
        """The active seeds' degree mass in hosts of average degree (at least their number)."""
        n = len(self.active_seeds)
        if not self.edges_in_window or not self.hosts_in_window:
            return n
        key_list(self.ctx, "smass_noise", set(self.excluded))
        deg = self.ctx.sql(
            "SELECT count(*) FROM sp WHERE peer IS NOT NULL AND peer <> anchor AND peer NOT IN (SELECT k FROM smass_noise)"
        ).fetchall()[0][0]
        self.ctx.unregister("smass_noise")
        mean = 2.0 * self.edges_in_window / self.hosts_in_window
        return int(min(self.hosts_in_window, max(n, round(float(deg) / mean)))) if mean > 0 else n

    def _host(self, k: str, s: dict[str, Any], local: tuple[int, int, int] | None, noise: bool = False) -> HostStats:
        return HostStats(
            degree=int(s["degree"]),
            known=int(s["known"]),
            fan_out=int(s["fan_out"]),
            fan_in=int(s["fan_in"]),
            seeds=self.seeds_touched.get(k, 0),
            seed_clients=self.seed_clients.get(k, False),
            substantial=self.substantial.get(k, 0),
            known_in=int(s.get("known_in") or 0),
            noise=int(s["noise"]) if noise else None,
            noise_in=int(s.get("noise_in") or 0) if noise else 0,
            local=local,
        )

    def _local(self, hosts: dict[str, set[str]], table: str) -> dict[str, tuple[int, int, int]]:
        """(address space, active seeds, the host's peers) of the seeds' IPv4 prefixes each host touched."""
        bits = self.p.local_prefix_v4
        seed_pfx: dict[str, int] = {
            s: int(np.uint32(int.from_bytes(bytes(map(int, s.split("."))), "big"))) >> (32 - bits)
            for s in self.active_seeds
            if not s.startswith("v6:")
        }
        per_pfx: dict[int, int] = defaultdict(int)
        for x in seed_pfx.values():
            per_pfx[x] += 1
        prefixes: dict[str, set[int]] = {}
        for k in hosts:
            if k.startswith("v6:"):
                continue
            ps = {seed_pfx[x["anchor"]] for x in self.by_peer.get(k, []) if x["anchor"] in seed_pfx}
            if ps:
                prefixes[k] = ps
        counts = local_peers(self.ctx, table, prefixes, bits)
        return {
            k: (len(ps) << (32 - bits), sum(per_pfx[x] for x in ps), counts.get(k, 0)) for k, ps in prefixes.items()
        }

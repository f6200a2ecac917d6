"""The hunt: a short sequence of named stages over one store, each a query and a judgement.

``hunt()`` runs :class:`HuntRun`'s stages in order: window, pivot, contacts (probes and
victims), candidates, noise, expansion, clusters, seed status, result. The queries live in
:mod:`.pivot`, :mod:`.reach` and :mod:`.window`; the judgements in :mod:`.rules`, pure functions
over the tables the queries produce. Python here works on per-pair aggregates (thousands of rows,
never per flow). A run owns its connection and temporary files (:class:`.context.HuntContext`)
and releases them on every exit path.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..spark.store import is_url
from ..store import DAY_MS, Store
from ..store.index import index_plan
from . import sessions as S
from .checks import hunt_warnings, require_store, store_span
from .context import HuntContext
from .expansion import ExpansionStage
from .keys import ip_of, ip_sort_key, iso, key_list, key_of, key_sort, load_anchors
from .noise import Allowlist, read_allowlist
from .output import cluster_dict, enrich_rows, overlaps, pairs_out, timelines
from .params import HuntParams
from .pivot import create_pairs, ipkey_macro
from .provider import Provider, enriched
from .reach import NO_STATS, bounded_reach, degrees, local_peers, managed_counts, median_degree
from .rules import (
    HostStats,
    PairStats,
    Population,
    SeedActivity,
    Series,
    classify_series,
    cluster_confidence,
    components,
    enrichment_of,
    holm,
    noise_verdict,
    seed_status,
    small_client,
    substance,
)
from .rules.substance import ORDER_OF_MAGNITUDE
from .seeds import SeedSet, read_seeds
from .verdicts import apply_allowlist, exclusion, noise_keys, probe_dict, services, state, stem, verdict_keys, victims
from .window import population, start_stats, window, window_flows

__all__ = ["hunt", "HuntRun", "FORMAT", "DEFAULTS"]

log = logging.getLogger("flowpivot.hunt")

FORMAT = "flowpivot-hunt/1"
HOUR_MS = 3_600_000
#: Records of one connection (same addresses and ports) follow each other within this: exporters
#: cut a long connection at their active timeout and end a record after 15-60 s of idleness.
CONNECTION_GAP_MS = 60_000

#: The defaults of every parameter (``HuntParams``), for callers of the old keyword API.
DEFAULTS: dict[str, Any] = HuntParams().as_dict()


def hunt(
    store: Store | str | os.PathLike[str],
    seeds: SeedSet | Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    asn_dbs: Sequence[str | os.PathLike[str]] = (),
    whois: str | os.PathLike[str] | None = None,
    allowlist: str | os.PathLike[str] | Allowlist | None = None,
    params: HuntParams | None = None,
    progress: Callable[[str], None] | None = None,
    engine: str = "duckdb",
    spark_master: str | None = None,
    spark_conf: Sequence[str] | dict[str, str] | None = None,
    spark: Any = None,
    **kw: Any,
) -> dict[str, Any]:
    """Run the hunt and return the result (JSON-ready, format ``flowpivot-hunt/1``).

    ``params`` holds every parameter (:class:`~flowpivot.hunt.params.HuntParams`); the same
    fields may be given as keywords (``days=10, min_seeds=3``), which override it.

    ``engine``: ``"duckdb"`` (embedded, the default) or ``"spark"``: the same stages on Apache
    Spark, on ``spark_master`` (default ``local[*]``) with ``spark_conf`` (``KEY=VALUE``), or on
    the SparkSession ``spark`` given; the store may then be a Hadoop URL (``s3a://...``).
    """
    unknown = set(kw) - set(HuntParams.names())
    if unknown:
        raise TypeError(f"unknown hunt parameter(s): {', '.join(sorted(unknown))}")
    p = (params or HuntParams()).replace(**kw)
    eng = {"engine": engine, "spark_master": spark_master, "spark_conf": spark_conf, "spark": spark}
    with HuntRun(store, seeds, asn_dbs, whois, allowlist, p, progress, **eng) as run:
        run.window()
        run.pivot()
        run.contacts()
        run.candidates()
        run.noise()
        run.expansion()
        run.clusters()
        run.seed_status()
        return run.result()


class HuntRun(ExpansionStage):
    """One hunt's state, stage by stage. Use as a context manager (it owns a connection)."""

    def __init__(
        self,
        store: Store | str | os.PathLike[str],
        seeds: SeedSet | Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
        asn_dbs: Sequence[str | os.PathLike[str]],
        whois: str | os.PathLike[str] | None,
        allowlist: str | os.PathLike[str] | Allowlist | None,
        p: HuntParams,
        progress: Callable[[str], None] | None = None,
        *,
        engine: str = "duckdb",
        spark_master: str | None = None,
        spark_conf: Sequence[str] | dict[str, str] | None = None,
        spark: Any = None,
    ) -> None:
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.progress = progress
        self.p = p
        self.engine = engine
        if engine not in ("duckdb", "spark"):
            raise ValueError(f"unknown engine {engine!r} (duckdb, spark)")
        local = None if engine == "spark" and is_url(store) else require_store(store)
        self.seedset = (
            seeds
            if isinstance(seeds, SeedSet)
            else read_seeds(seeds if not isinstance(seeds, (str, os.PathLike)) else [seeds])
        )
        self.allow = allowlist if isinstance(allowlist, Allowlist) else read_allowlist(allowlist)
        self.prov = Provider(list(asn_dbs), whois)
        self.asn_dbs, self.whois = [str(x) for x in asn_dbs], str(whois) if whois else None
        self.ctx: Any
        self.st: Any  # a Store, or on Spark a store at a URL (flowpivot.spark.SparkStore)
        if engine == "spark":
            from ..spark.context import open_context

            self.ctx = open_context(local or str(store), spark_master, spark_conf, spark)
            self.st = local or self.ctx.store
        else:
            assert local is not None
            self.ctx = HuntContext(local, threads=p.threads, memory_limit=p.memory_limit)
            self.st = local
        # filled by the stages
        self.excluded: dict[str, dict[str, Any]] = {}
        self.members: dict[str, set[str]] = {}
        self.member_stats: dict[str, dict[str, Any]] = {}
        self.expansion_out: list[dict[str, Any]] = []
        self.manages: dict[str, set[str]] = defaultdict(set)
        self.clusters_out: list[dict[str, Any]] = []
        self.seeds_out: list[dict[str, Any]] = []
        self.victims: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self.candidates_: dict[str, set[str]] = {}
        self.seed_degree = self.seed_reach = 0.0
        self.tested = 1

    def __enter__(self) -> HuntRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.ctx.close()

    def step(self, name: str) -> None:
        # (never -0.0: rounding each stage's share can leave a tiny negative remainder)
        self.timings[name] = max(0.0, round(time.perf_counter() - self.t0 - sum(self.timings.values()), 3))
        if log.isEnabledFor(logging.DEBUG):  # `flowpivot -v hunt ...`
            log.debug("stage %s: %.3f s; %s", name, self.timings[name], self._counts(name))
        if self.progress:
            self.progress(name)

    def _counts(self, name: str) -> str:
        """What a stage produced, for the log."""
        c: dict[str, Any] = {
            "window": lambda: {"flows": self.flows_in_window, "hosts": self.hosts_in_window},
            "sessions": lambda: {"pairs": len(self.pairs), "seeds seen": len(self.active_seeds)},
            "victims": lambda: {"victims": len(self.victims), "probes": len(self.probes)},
            "noise": lambda: {"candidates": len(self.candidates_), "excluded": len(self.excluded)},
            "expansion": lambda: {"new hosts": len(self.expansion_out)},
            "clusters": lambda: {"clusters": len(self.clusters_out), "new hosts": len(self.expansion_out)},
            "seeds": lambda: {"seeds": len(self.seeds_out)},
        }
        try:
            got = c[name]() if name in c else {}
        except AttributeError:  # a stage that ended early
            got = {}
        return ", ".join(f"{k} {v:,}" for k, v in got.items()) or "-"

    # ---- window ----------------------------------------------------------------------------------

    def window(self) -> None:
        """The window (default: the ``days`` ending at the newest flow), the index plan, the population."""
        p, con = self.p, self.ctx
        ipkey_macro(con)
        stats: Any
        stats, newest = (
            start_stats(self.st) if isinstance(self.st, Store) else ([(f, None) for f in self.st.files()], None)
        )
        self.span = store_span(stats)
        if self.span is None:  # a file without footer statistics: count with a query
            d = con.d
            row = con.sql(
                f"SELECT count(*), {d.epoch_ms('min(start)')}, {d.epoch_ms('max(start)')} FROM flows"
            ).fetchall()[0]
            self.span = (int(row[0]), row[1], row[2])
        self.since_ms, self.until_ms = window(con, p.days, p.since, p.until, newest)
        con.narrow(self.since_ms, self.until_ms)
        plan = index_plan(self.st, self.since_ms, self.until_ms) if p.use_index and self.engine == "duckdb" else None
        self.flows_in_window = window_flows(con, self.since_ms, self.until_ms, stats)
        con.use_index(plan, self.flows_in_window)
        # the population of the enrichment test: the store files' day sketches, computed once
        pop = population(self.st, self.since_ms, self.until_ms, con) if self.flows_in_window else (0, 0)
        self.hosts_in_window, self.edges_in_window = pop
        self.step("window")

    # ---- pivot and sessions --------------------------------------------------------------------

    def pivot(self) -> None:
        """Every flow with a seed on either side, folded into (seed, peer) pairs with session state
        and substance (:mod:`.rules.substance`)."""
        con = self.ctx
        self.seed_ips = self.seedset.ips()
        self.seed_keys = [key_of(ip) for ip in self.seed_ips]
        self.seed_key_set = set(self.seed_keys)
        load_anchors(con, "seeds", self.seed_keys)
        create_pairs(con, "seeds", "sp", self.since_ms, self.until_ms, keep_flows=True)
        self.step("pivot")
        self.pairs = con.sql("SELECT * FROM sp").to_arrow_table().drop_columns(["peer_v4", "peer_v6"]).to_pylist()
        self.services = services(con, "sp")
        small = self.p.small_connection_packets
        self.by_peer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in self.pairs:
            sub = substance(PairStats.from_row(row), small)
            row["substantial"] = sub.substantial
            row["counts"] = sub.counts
            # sessions that outlast an export record: held open, not a beacon's check-in
            row["long"] = sub.substantial and sub.records_per_connection >= 2
            row["substance"] = sub.why
            if row["peer"] is not None and row["peer"] not in self.seed_key_set:
                self.by_peer[row["peer"]].append(row)
        self.active_seeds = {row["anchor"] for row in self.pairs}
        self.step("sessions")

    # ---- probes and victims --------------------------------------------------------------------

    def contacts(self) -> None:
        """Probes (bursts, floods, retry storms) and victims (beacons), from the connection starts
        each peer opened toward a seed port (:mod:`.rules.contacts`). Neither is ever clustered."""
        p, con = self.p, self.ctx
        least = min(p.min_beacon_starts, p.probe_min_attempts)
        rows = (
            con.sql(
                # connection starts, not records: a long session is cut into records at the
                # exporter's active timeout, which would look like a beacon at that period. A
                # record starts a connection unless the same ports' previous record ended within
                # a minute (exporters' inactive timeouts are 15-60 s). Zeek's records are
                # connections already (a retried SYN on the same port is a connection of its own)
                f"""WITH r AS (
                  SELECT anchor, peer_v4, peer_v6, proto, a_port, p_port, ts, zs,
                         lag(te) OVER (PARTITION BY anchor, peer_v4, peer_v6, proto, a_port, p_port ORDER BY ts) AS prev
                  FROM sp_flows WHERE init = 'p' AND NOT a_src)
                SELECT anchor, {con.d.ipkey("peer_v4", "peer_v6")} AS peer, proto, a_port AS port, {con.d.sorted_list("ts")} AS starts
                FROM r WHERE prev IS NULL OR ts > prev + {CONNECTION_GAP_MS} OR zs IS NOT NULL
                GROUP BY anchor, peer_v4, peer_v6, proto, a_port HAVING count(*) >= {int(least)}"""
            )
            .to_arrow_table()
            .to_pylist()
        )
        pair_of = {(r["anchor"], r["peer"]): r for r in self.pairs}
        per_port: dict[tuple[str, int, int], list[tuple[dict[str, Any], Any, Series]]] = defaultdict(list)
        for r in sorted(rows, key=lambda r: (r["peer"], r["proto"], r["port"], r["anchor"])):
            if r["peer"] in self.seed_key_set:
                continue
            pair = pair_of[(r["anchor"], r["peer"])]
            series = Series(
                r["peer"], r["anchor"], r["proto"], r["port"], np.asarray(r["starts"], np.int64), state(pair)
            )
            probe, beacon = classify_series(series, p.probe_min_attempts, p.burst_span_s, p.min_beacon_starts)
            if probe is not None:
                self.probes.append(probe_dict(series, probe, pair))
            elif len(self.by_peer.get(r["peer"], [])) <= p.victim_max_seeds and not self._manages(r["peer"]):
                per_port[(r["peer"], r["proto"], r["port"])].append((r, beacon, series))
        self.victims = victims(per_port, pair_of, p.min_beacon_starts)
        self.victim_keys = {v["_key"] for v in self.victims}
        self.probe_keys = {pr["_key"] for pr in self.probes}
        self.step("victims")

    def _manages(self, peer: str) -> bool:
        """Sessions held open past an export record (two or more records per connection) with at
        least ``min_seeds`` seeds: an operator's, however regular (a shell kept open, a tunnel),
        never a victim's beacon, whose check-ins each fit in one record."""
        return sum(1 for x in self.by_peer.get(peer, []) if x["long"]) >= self.p.min_seeds

    # ---- candidates ------------------------------------------------------------------------------

    def candidates(self) -> None:
        """Peers with substantial established sessions with at least ``min_seeds`` seeds; peers that
        touched as many seeds without any session are excluded as ``no-session``."""
        p = self.p
        cands: dict[str, set[str]] = {}
        for peer, ps in self.by_peer.items():
            if peer in self.victim_keys:
                continue
            est = {x["anchor"] for x in ps if x["established"]}
            sub = {x["anchor"] for x in ps if x["counts"]}
            if len(sub) >= p.min_seeds:
                why = small_client([PairStats.from_row(x) for x in ps], p.victim_max_seeds)
                if why:
                    self.excluded[peer] = {"reason": "client", "detail": why, "seeds": len(sub)}
                else:
                    cands[peer] = sub
            elif len({x["anchor"] for x in ps}) >= p.min_seeds and not est and peer not in self.probe_keys:
                sess = sorted({x["session"] for x in ps})
                self.excluded[peer] = {
                    "reason": "no-session",
                    "detail": f"contacted {len(ps)} seeds without an established session ({', '.join(sess)})",
                    "seeds": len(ps),
                }
        apply_allowlist(self.allow, self.prov, cands, self.excluded)
        self.candidates_ = cands
        # the seeds each peer exchanged any flow with, and whether the seeds opened every session
        self.seeds_touched = {k: len(ps) for k, ps in self.by_peer.items()}
        self.substantial = {k: sum(1 for x in ps if x["substantial"]) for k, ps in self.by_peer.items()}
        self.seed_clients = {
            k: all(x["initiator"] == "anchor" for x in ps if x["established"]) and any(x["established"] for x in ps)
            for k, ps in self.by_peer.items()
        }

    # ---- noise -----------------------------------------------------------------------------------

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
        condemned, kept = bounded_reach(
            con,
            "cand",
            list(cands),
            known,
            self._judge(pop1, self.seeds_touched),
            self.since_ms,
            self.until_ms,
            "cr",
            keep="cand_flows",
        )
        for k, b in condemned.items():
            self.excluded[k] = exclusion(b, len(cands[k]))
        stats = degrees(con, "cr", known, set())
        local = self._local(cands, "cr")
        for k in cands:
            if k in condemned:
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
        stats = degrees(con, "cr", known, set(self.excluded))
        # the draws of the enrichment test: the peers each candidate holds sessions with of the
        # kind it holds with the seeds (rules.substance.managed_like), not the sites it browses
        managed = managed_counts(con, "cr", alive, self.seed_key_set, set(self.excluded), ORDER_OF_MAGNITUDE)
        hosts = {
            k: replace(
                self._host(k, stats.get(k, NO_STATS), local.get(k), noise=True),
                draws=max(managed.get(k, (0, 0))[0], 1), draw_hits=managed.get(k, (0, 0))[1],
            )
            for k in alive
        }  # fmt: skip
        tests = {k: enrichment_of(h, pop2) for k, h in hosts.items()}
        adjusted = holm({k: e.p for k, e in tests.items()})
        for k, seeds in alive.items():
            v = noise_verdict(hosts[k], pop2, p_adjusted=adjusted[k])
            e = tests[k]
            info = {**noise_keys(stats.get(k, NO_STATS)), "p_value": e.p, "p_adjusted": adjusted[k],
                    "p_global": e.p_global, "p_local": e.p_local, "substantial_seeds": len(seeds),
                    "confidence": round(1.0 - adjusted[k], 6)}  # fmt: skip
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

    # ---- clusters --------------------------------------------------------------------------------

    def clusters(self) -> None:
        """Connected members within a provider (:mod:`.rules.clusters`), their overlaps, and each
        expansion host's clusters."""
        infos = self.prov.lookup([ip_of(k) for k in self.members])
        provider = {k: self.prov.key(infos.get(ip_of(k), {})) for k in self.members}
        # hosts found on a later hop are managed by the members through the hosts of the earlier ones
        found = getattr(self, "found", {})
        owner: dict[str, set[str]] = {}
        for k, v in sorted(found.items(), key=lambda kv: kv[1]["hop"]):
            owner[k] = set().union(*({b} if b in self.members else owner.get(b, set()) for b in v["_by"]))
        hosts: dict[str, set[str]] = defaultdict(set)
        for h, ms in owner.items():
            for m in ms:
                hosts[m].add(h)
        out = []
        for keys, links in components(self.members, provider, hosts):
            conf = cluster_confidence([self.member_stats[k]["p_adjusted"] for k in keys])
            out.append(
                cluster_dict(
                    sorted(keys, key=key_sort), links, self.by_peer, self.members, self.services,
                    self.member_stats, infos, len(self.seed_ips), conf,
                )
            )  # fmt: skip
        out.sort(key=lambda c: (-c["score"], -len(c["seeds"]), c["members"]))
        member_cluster: dict[str, str] = {}
        for n, c in enumerate(out, 1):
            c["id"] = f"C{n}"
            for m in c["members"]:
                member_cluster[key_of(m)] = c["id"]
        timelines(self.ctx, out)
        self.clusters_out = out
        self.overlaps = overlaps(out)
        exp = []
        for k, v in found.items():
            v = dict(v)
            v["clusters"] = sorted({member_cluster[m] for m in owner.get(k, set()) if m in member_cluster})
            v.pop("_by")
            exp.append(v)
        if exp:
            infos = self.prov.lookup([v["ip"] for v in exp])
            for v in exp:
                v.update({**enriched(infos[v["ip"]]), "allocation": (infos[v["ip"]].get("allocation") or [None])[0]})
        exp.sort(key=lambda v: (-v["score"], ip_sort_key(v["ip"])))
        self.expansion_out = exp
        self.step("clusters")

    # ---- seed status -----------------------------------------------------------------------------

    def seed_status(self) -> None:
        """Per seed: first and last seen, last answer, unanswered attempts after it, and status
        (:mod:`.rules.seedstatus`)."""
        con = self.ctx
        d = con.d
        ans = f"(a_pk > 0 AND NOT {S.rst_answer_sql('a')} AND (zs IS NULL OR zs NOT IN ('REJ', 'S0', 'RSTRH', 'SHR', 'RSTOS0')))"
        rows = (
            con.sql(
                f"""WITH f AS (SELECT anchor, ts, te, {ans} AS ans FROM sp_flows),
                a AS (SELECT anchor, count(*) AS flows, min(ts) AS first_ms, max(te) AS last_ms,
                        count(*) FILTER (WHERE ans) AS answered_flows, min(ts) FILTER (WHERE ans) AS first_answer_ms,
                        max(te) FILTER (WHERE ans) AS last_answer_ms, count(DISTINCT {d.idiv("ts", HOUR_MS)}) FILTER (WHERE ans) AS answer_hours,
                        count(DISTINCT {d.idiv("ts", HOUR_MS)}) AS any_hours,
                        {d.distinct_list(d.idiv("ts", DAY_MS))} AS days, max(ts) FILTER (WHERE NOT ans) AS last_attempt_ms
                      FROM f GROUP BY anchor)
                , gaps AS (SELECT anchor, max(ts - prev) FILTER (WHERE ans AND prev IS NOT NULL) AS answer_gap,
                        max(ts - prev_any) AS any_gap
                      FROM (SELECT anchor, ts, ans,
                              lag(ts) OVER (PARTITION BY anchor, ans ORDER BY ts) AS prev,
                              lag(ts) OVER (PARTITION BY anchor ORDER BY ts) AS prev_any FROM f)
                      GROUP BY anchor)
                SELECT a.*, coalesce(any_value(g.answer_gap), 0) AS longest_answer_gap_ms,
                  coalesce(any_value(g.any_gap), 0) AS longest_any_gap_ms,
                  count(*) FILTER (WHERE NOT f.ans AND f.ts > coalesce(a.last_answer_ms, -9223372036854775807)) AS unanswered_after,
                  count(DISTINCT {d.idiv("f.ts", HOUR_MS)}) FILTER (WHERE NOT f.ans AND f.ts > a.last_answer_ms) AS unanswered_hours_after,
                  count(DISTINCT {d.idiv("f.ts", HOUR_MS)}) FILTER (WHERE f.ts <= a.last_answer_ms) AS hours_before
                FROM a JOIN f ON f.anchor = a.anchor LEFT JOIN gaps g ON g.anchor = a.anchor GROUP BY ALL"""
            )
            .to_arrow_table()
            .to_pylist()
        )
        seen = {r["anchor"]: r for r in rows}
        per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for x in self.pairs:
            d = per[x["anchor"]]
            d["peers"] += 1
            d["established_peers"] += int(bool(x["established"]))
            d["rejected_flows"] += x["rejected_flows"]
            d["attempt_flows"] += x["attempt_flows"]
        by_ip: dict[str, list[Any]] = defaultdict(list)
        for s in self.seedset.seeds:
            by_ip[s.ip].append(s)
        keep = [k for k in self.seed_keys if k in seen or by_ip[ip_of(k)][0].network is None]
        infos = self.prov.lookup([ip_of(k) for k in keep])
        out = []
        for k in keep:
            ip = ip_of(k)
            r = seen.get(k)
            s = by_ip[ip][0]
            entry: dict[str, Any] = {"ip": ip, **enriched(infos[ip])}
            if r is None:
                entry.update({"first_seen": None, "last_seen": None, "status": "unseen", "flows": 0,
                              "last_answered": None, "answered_flows": 0, "unanswered_after": 0, "last_attempt": None})  # fmt: skip
            else:
                act = SeedActivity(
                    flows=r["flows"], first_ms=r["first_ms"], last_ms=r["last_ms"], answered_flows=r["answered_flows"],
                    first_answer_ms=r["first_answer_ms"], last_answer_ms=r["last_answer_ms"],
                    answer_hours=r["answer_hours"], unanswered_after=r["unanswered_after"],
                    last_attempt_ms=r["last_attempt_ms"], hours_before=r["hours_before"],
                    unanswered_hours_after=r["unanswered_hours_after"], any_hours=r["any_hours"],
                    longest_answer_gap_ms=int(r["longest_answer_gap_ms"]), longest_any_gap_ms=int(r["longest_any_gap_ms"]),
                )  # fmt: skip
                days = sorted(r["days"])
                gaps = np.diff(days) if len(days) > 1 else np.array([0])
                entry.update({
                    "first_seen": iso(r["first_ms"]),
                    "last_seen": iso(r["last_ms"]),
                    **seed_status(act, self.until_ms),
                    "flows": r["flows"],
                    "active_days": len(days),
                    "longest_gap_days": int(gaps.max()),
                    "last_answered": iso(r["last_answer_ms"]),
                    "answered_flows": r["answered_flows"],
                    "unanswered_after": r["unanswered_after"],
                    "last_attempt": iso(r["last_attempt_ms"]),
                })  # fmt: skip
            entry.update(dict(per.get(k, {})))
            sets = sorted({getattr(x, "set", None) or stem(x.source) for x in by_ip[ip]})
            entry["sets"] = sets
            entry["source"] = {"file": s.source, "where": s.where, "set": getattr(s, "set", None) or stem(s.source),
                               **({"port": s.port} if s.port is not None else {})}  # fmt: skip
            if s.network:
                entry["source"]["network"] = s.network
            out.append(entry)
        self.seeds_out = out
        self.step("seeds")

    # ---- result ----------------------------------------------------------------------------------

    def near_misses(self) -> tuple[list[dict[str, Any]], int]:
        """Peers with established sessions with seeds that made no cluster, and why."""
        p = self.p
        rows: list[dict[str, Any]] = []
        for k, ps in self.by_peer.items():
            if k in self.members or k in self.victim_keys:
                continue
            est = [x for x in ps if x["established"]]
            if not est:
                continue
            sub = [x for x in est if x["counts"]]
            if k in self.excluded:
                e = self.excluded[k]
                reason, detail = "noise", f"excluded as {e['reason']} (its entry in excluded says why)"
            elif len(sub) >= p.min_seeds:
                continue
            elif len(est) >= p.min_seeds:
                reason = "little-evidence"
                detail = (
                    f"established sessions with {len(est)} seeds, substantial with {len(sub)} "
                    f"(--min-seeds {p.min_seeds}): "
                    + "; ".join(sorted({x["substance"] for x in est if not x["counts"]}))[:400]
                )
            else:
                reason = "below-min-seeds"
                detail = f"established sessions with {len(est)} seed(s), substantial with {len(sub)} (--min-seeds {p.min_seeds})"
            rows.append({
                "ip": ip_of(k), "reason": reason, "detail": detail,
                "seeds": sorted((ip_of(x["anchor"]) for x in est), key=ip_sort_key),
                "established_seeds": len(est), "substantial_seeds": len(sub),
                "_rank": (-len(sub), -len(est), -sum(x["flows"] for x in est)),
            })  # fmt: skip
        rows.sort(key=lambda r: (r["_rank"], ip_sort_key(str(r["ip"]))))
        kept = rows[: p.max_near_misses]
        for r in kept:
            r.pop("_rank")
        enrich_rows(self.prov, kept)
        return kept, len(rows)

    def result(self) -> dict[str, Any]:
        near, near_total = self.near_misses()
        for v in self.victims:
            v.pop("_key", None)
        for pr in self.probes:
            pr.pop("_key", None)
        enrich_rows(self.prov, self.victims + self.probes)
        for row in self.victims + self.probes:
            row.pop("country", None)
        vinfo = self.prov.lookup([ip_of(k) for k in self.excluded])
        excluded_out = [
            {"ip": ip_of(k), **e, **enriched(vinfo[ip_of(k)])}
            for k, e in sorted(self.excluded.items(), key=lambda kv: (kv[1]["reason"], key_sort(kv[0])))
        ]
        params = self.p.as_dict()
        params.update({
            "since": iso(self.since_ms), "until": iso(self.until_ms),
            "bare_segment_max": {"ipv4": S.BARE_SEGMENT_MAX_V4, "ipv6": S.BARE_SEGMENT_MAX_V6},
            "index": self.ctx.plan.generation if self.ctx.plan else None,
        })  # fmt: skip
        if self.ctx.plan:
            params["index_unindexed_files"] = len(self.ctx.plan.rest)
        self.step("output")
        return {
            "format": FORMAT,
            "window": {"start": iso(self.since_ms), "end": iso(self.until_ms)},
            "parameters": params,
            "seeds": self.seeds_out,
            "clusters": self.clusters_out,
            "overlaps": self.overlaps if self.clusters_out else [],
            "expansion": self.expansion_out,
            "victims": self.victims,
            "probes": sorted(self.probes, key=lambda x: (-x["attempts"], ip_sort_key(x["ip"]))),
            "excluded": excluded_out,
            "near_misses": near,
            "near_misses_total": near_total,
            "pairs": pairs_out(self.pairs, self.services, self.p.max_pairs),
            "pairs_total": len(self.pairs),
            "seed_input": self.seedset.as_dict(),
            "warnings": hunt_warnings(
                span=self.span,
                since_ms=self.since_ms,
                until_ms=self.until_ms,
                default_window=self.p.since is None,
                flows_in_window=int(self.flows_in_window),
                seed_input=self.seedset.as_dict(),
                seeds_in_window=len(self.active_seeds),
                asn_dbs=self.asn_dbs,
            ),
            "allowlist": self.allow.as_dict(),
            "provenance": {
                "store": str(self.st.root),
                "store_files": len(self.st.files()),
                "flows_in_window": int(self.flows_in_window),
                "hosts_in_window": int(self.hosts_in_window),
                "seeds_in_window": len(self.active_seeds),
                "window": {"start": iso(self.since_ms), "end": iso(self.until_ms)},
                "databases": {"asn": self.asn_dbs, "whois": self.whois},
                "enrichment": self.prov.sources,
                "seed_degree_median": self.seed_degree,
                "seed_reach_median": self.seed_reach,
                "hosts_tested": self.tested,
                "timings_s": self.timings,
                "engine": self.engine,
                "generated": iso(int(time.time() * 1000)),
            },
        }

"""The hunt: seeds -> peers -> sessions -> noise -> clusters -> overlaps -> expansion -> victims.

The heavy steps are DuckDB SQL over the store's Parquet (see :mod:`flowpivot.hunt.pivot`); the
Python here works on per-pair aggregates (thousands of rows, never per flow).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..store import DAY_MS, Store, _sql_str, parse_time
from ..store.index import index_plan
from . import sessions as S
from .beacon import regularity
from .noise import Allowlist, noise_reason, read_allowlist
from .pivot import (
    create_pairs,
    create_reach,
    day_bounds,
    ipkey_macro,
    keep_touching,
    known_counts_sql,
    read_through,
)
from .seeds import SeedSet, read_seeds

__all__ = ["hunt", "FORMAT", "DEFAULTS"]

log = logging.getLogger("flowpivot.hunt")

FORMAT = "flowpivot-hunt/1"
HOUR_MS = 3_600_000
#: A seed is dark when it has been silent at the end of the window for at least a day, and for
#: longer than it could plausibly be by chance given how many of its hours had traffic before.
DARK_MIN_HOURS = 24
DARK_CHANCE = 0.01

DEFAULTS: dict[str, Any] = {
    "days": 30,
    "hops": 1,
    "min_seeds": 2,
    "min_members": 2,
    "min_specificity": 0.5,
    "similarity": 0.5,
    "victim_max_seeds": 2,
    "min_beacon_starts": 6,
    "max_pairs": 10_000,
}


# ----- address keys --------------------------------------------------------------------------------
# SQL builds pair keys as dotted quads (IPv4) or 'v6:<hex>' (IPv6); these map them to and from
# canonical strings.


def key_of(ip: str) -> str:
    a = ipaddress.ip_address(ip)
    return str(a) if a.version == 4 else "v6:" + a.packed.hex()


def ip_of(key: str) -> str:
    return str(ipaddress.IPv6Address(bytes.fromhex(key[3:]))) if key.startswith("v6:") else key


def _iso(ms: int | float | None) -> str | None:
    if ms is None:
        return None
    d = dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def _day(ms: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(ms) // DAY_MS)).isoformat()


def _anchor_table(keys: Sequence[str]) -> pa.Table:
    v4: list[int | None] = []
    v6: list[bytes | None] = []
    for k in keys:
        if k.startswith("v6:"):
            v4.append(None)
            v6.append(bytes.fromhex(k[3:]))
        else:
            v4.append(int(ipaddress.IPv4Address(k)))
            v6.append(None)
    return pa.table(
        {
            "key": pa.array(list(keys), pa.string()),
            "v4": pa.array(v4, pa.uint32()),
            "v6": pa.array(v6, pa.binary()),
            "id": pa.array(range(len(keys)), pa.uint32()),
        }
    )


# ----- enrichment ------------------------------------------------------------------------------------


class _Provider:
    """ASN / allocation lookups through flowpivot.enrich, or nothing when no database is given."""

    def __init__(self, asn_dbs: Sequence[str | os.PathLike[str]], whois: str | os.PathLike[str] | None):
        self.enr: Any = None
        self.whois = whois is not None
        self.cache: dict[str, dict[str, Any]] = {}
        if asn_dbs or whois:
            from ..enrich import Enricher

            self.enr = Enricher.open(asn_dbs=[str(p) for p in asn_dbs], whois=str(whois) if whois else None)

    @property
    def sources(self) -> list[Any]:
        return list(getattr(self.enr, "sources", []) or []) if self.enr is not None else []

    def lookup(self, ips: Sequence[str]) -> dict[str, dict[str, Any]]:
        todo = sorted({ip for ip in ips if ip not in self.cache})
        if todo:
            if self.enr is None:
                rows: list[dict[str, Any]] = [{"ip": ip} for ip in todo]
            else:
                rows = list(self.enr.lookup(todo))
            for ip, row in zip(todo, rows, strict=True):
                self.cache[ip] = row or {}
        return {ip: self.cache[ip] for ip in ips}

    def provider_key(self, info: dict[str, Any]) -> tuple[Any, ...]:
        asn = info.get("asn")
        if not self.whois:
            return (asn,)
        reseller = info.get("reseller") or None
        if reseller:
            return (asn, reseller.get("org") or reseller.get("netname") or reseller.get("range"))
        alloc = info.get("allocation") or []
        if alloc:
            a = alloc[0]
            return (asn, a.get("org") or a.get("netname") or a.get("range"))
        return (asn,)


def _enriched(info: dict[str, Any]) -> dict[str, Any]:
    return {"asn": info.get("asn"), "as_name": info.get("as_name"), "country": info.get("country")}


# ----- the hunt --------------------------------------------------------------------------------------


def hunt(
    store: Store | str | os.PathLike[str],
    seeds: SeedSet | Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    asn_dbs: Sequence[str | os.PathLike[str]] = (),
    whois: str | os.PathLike[str] | None = None,
    allowlist: str | os.PathLike[str] | Allowlist | None = None,
    days: float = DEFAULTS["days"],
    since: int | str | None = None,
    until: int | str | None = None,
    hops: int = DEFAULTS["hops"],
    min_seeds: int = DEFAULTS["min_seeds"],
    min_members: int = DEFAULTS["min_members"],
    min_specificity: float = DEFAULTS["min_specificity"],
    similarity: float = DEFAULTS["similarity"],
    victim_max_seeds: int = DEFAULTS["victim_max_seeds"],
    min_beacon_starts: int = DEFAULTS["min_beacon_starts"],
    max_pairs: int = DEFAULTS["max_pairs"],
    threads: int | None = None,
    memory_limit: str | None = "2GB",
    use_index: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the hunt and return the result (JSON-ready, format ``flowpivot-hunt/1``).

    ``since``/``until`` are ms since epoch or ISO 8601 strings; by default the window is the
    ``days`` that end at the newest flow in the store. With ``use_index`` the passes look flows
    up in the store's address index when it is usable for the window
    (:mod:`flowpivot.store.index`); the result is the same either way.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name: str) -> None:
        timings[name] = round(time.perf_counter() - t0 - sum(timings.values()), 3)
        if progress:
            progress(name)

    st = store if isinstance(store, Store) else Store(store)
    seedset = (
        seeds
        if isinstance(seeds, SeedSet)
        else read_seeds(seeds if not isinstance(seeds, (str, os.PathLike)) else [seeds])
    )
    allow = allowlist if isinstance(allowlist, Allowlist) else read_allowlist(allowlist)
    prov = _Provider(list(asn_dbs), whois)
    params = {
        "days": days,
        "since": since,
        "until": until,
        "hops": hops,
        "min_seeds": min_seeds,
        "min_members": min_members,
        "min_specificity": min_specificity,
        "similarity": similarity,
        "victim_max_seeds": victim_max_seeds,
        "min_beacon_starts": min_beacon_starts,
        "memory_limit": memory_limit,
        "bare_segment_max": {"ipv4": S.BARE_SEGMENT_MAX_V4, "ipv6": S.BARE_SEGMENT_MAX_V6},
    }

    con = st.connect(threads=threads)
    if memory_limit:
        # DuckDB spills its hash tables to disk past this, instead of growing with the store
        spill = tempfile.mkdtemp(prefix="flowpivot-hunt-")
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET temp_directory = '{spill}'")
    ipkey_macro(con)
    # the store files' start statistics, read once for the window's end and its flow count
    start_stats = _start_stats(st)
    since_ms, until_ms = _window(st, con, days, since, until, start_stats[1])
    params.update({"since": _iso(since_ms), "until": _iso(until_ms)})
    plan = index_plan(st, since_ms, until_ms) if use_index else None
    flows_in_window = _window_flows(st, con, since_ms, until_ms, start_stats[0])
    read_through(con, plan, flows_in_window)
    params["index"] = plan.generation if plan else None
    if plan:
        params["index_unindexed_files"] = len(plan.rest)

    seed_ips = seedset.ips()
    seed_keys = [key_of(ip) for ip in seed_ips]
    seed_key_set = set(seed_keys)
    con.register("seeds_arrow", _anchor_table(seed_keys))
    con.execute("CREATE OR REPLACE TEMP TABLE seeds AS SELECT * FROM seeds_arrow")
    con.unregister("seeds_arrow")

    # ---- 3/4. pivot and sessions -----------------------------------------------------------------
    create_pairs(con, "seeds", "sp", since_ms, until_ms, keep_flows=True)
    step("pivot")
    pairs = con.sql("SELECT * EXCLUDE (peer_v4, peer_v6) FROM sp").to_arrow_table().to_pylist()
    services = _services(con, "sp")
    step("sessions")

    by_peer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in pairs:
        if p["peer"] is not None and p["peer"] not in seed_key_set:
            by_peer[p["peer"]].append(p)

    # ---- 10. victims (before clustering: a victim is never a cluster member) --------------------
    victims = _victims(con, by_peer, services, victim_max_seeds, min_beacon_starts)
    victim_keys = {v["_key"] for v in victims}
    step("victims")

    # ---- 5. noise: allowlist, scan-only, fan-out / specificity over the whole store --------------
    excluded: dict[str, dict[str, Any]] = {}
    candidates: dict[str, set[str]] = {}
    for peer, ps in by_peer.items():
        est = {p["anchor"] for p in ps if p["established"]}
        if peer in victim_keys:
            continue
        if len(est) >= min_seeds:
            candidates[peer] = est
        elif len({p["anchor"] for p in ps}) >= min_seeds and not est:
            sess = sorted({p["session"] for p in ps})
            excluded[peer] = {
                "reason": "no-session",
                "detail": f"contacted {len(ps)} seeds without an established session ({', '.join(sess)})",
                "seeds": len(ps),
            }
    _apply_allowlist(allow, prov, candidates, excluded)
    for k, e in _small_clients(by_peer, candidates, services, victim_max_seeds).items():
        excluded[k] = e
        candidates.pop(k)

    noise_stats: dict[str, dict[str, Any]] = {}
    seed_degree = _median_degree(con, "sp")
    seed_reach = seed_degree
    members: dict[str, set[str]] = {}
    if candidates:
        # round 1: reach (scanners, shared services); the busiest are judged from a lower bound
        bounded, kept = _bounded_reach(
            con,
            "cand",
            list(candidates),
            seed_key_set | set(candidates),
            seed_degree,
            min_specificity,
            since_ms,
            until_ms,
            "cr",
            flows_in_window,
            keep="cand_flows",
        )
        stats = _degrees(con, "cr", seed_key_set | set(candidates), set())
        stats.update(bounded)
        reach: dict[str, tuple[str, str]] = {}
        for k in candidates:
            s = stats.get(k, _NO_STATS)
            r = noise_reason(
                s["degree"],
                s["known"],
                s["fan_out"],
                s["fan_in"],
                seed_degree,
                min_specificity,
                bound_span=s.get("bound_span"),
                bound_day=s.get("bound_day"),
                known_bound=s.get("known_bound"),
                bound_side=s.get("bound_side"),
            )
            if r:
                reach[k] = r
                excluded[k] = {"reason": r[0], "detail": r[1], "seeds": len(candidates[k]), **_noise_keys(s)}
        # round 2: specificity over the peers that are not themselves noise. The seeds' own reach
        # is measured the same way: scanners and victims inflate a seed's degree, not its reach
        seed_reach = _median_degree(con, "sp", set(excluded))
        known = seed_key_set | (set(candidates) - set(reach))
        shared_peers = _shared_peers(
            con,
            "cr",
            set(candidates) - set(reach),
            known,
            set(excluded),
            seed_reach,
            min_specificity,
            since_ms,
            until_ms,
            flows_in_window,
        )
        stats = _degrees(con, "cr", known, set(excluded) | shared_peers)
        for k in candidates:
            if k in reach:
                continue
            s = stats.get(k, _NO_STATS)
            noise_stats[k] = s
            r = noise_reason(
                s["degree"], s["known"], s["fan_out"], s["fan_in"], seed_reach, min_specificity, s["noise"]
            )
            if r:
                excluded[k] = {"reason": r[0], "detail": r[1], "seeds": len(candidates[k]), **_noise_keys(s)}
            else:
                members[k] = candidates[k]
        if members and hops > 0:
            # sessions around the members only, for the expansion
            _load_anchors(con, "memb", list(members))
            # (every member is a candidate the bound did not condemn: its flows are in cand_flows)
            create_pairs(
                con, "memb", "cp", since_ms, until_ms, services=False, full=False, source="cand_flows" if kept else None
            )
        con.execute("DROP TABLE IF EXISTS cand_flows")
    step("noise")

    # ---- 6. clusters --------------------------------------------------------------------------
    infos = prov.lookup([ip_of(k) for k in members])
    clusters = _clusters(members, infos, prov, similarity)
    pair_index = {(p["anchor"], p["peer"]): p for p in pairs}
    cluster_out = [
        _cluster_dict(i, c, pair_index, services, noise_stats, infos, prov, len(seed_ips))
        for i, c in enumerate(clusters)
    ]
    cluster_out.sort(key=lambda c: (-c["score"], -len(c["seeds"]), c["members"]))
    for n, c in enumerate(cluster_out, 1):
        c["id"] = f"C{n}"
    _timelines(con, cluster_out)
    step("clusters")

    # ---- 7. overlaps ----------------------------------------------------------------------------
    overlaps = []
    for i, a in enumerate(cluster_out):
        for b in cluster_out[i + 1 :]:
            sa, sb = set(a["seeds"]), set(b["seeds"])
            shared = sorted(sa & sb, key=_ip_key)
            overlaps.append(
                {
                    "clusters": [a["id"], b["id"]],
                    "shared_seeds": shared,
                    "count": len(shared),
                    "jaccard": round(len(shared) / len(sa | sb), 4) if sa | sb else 0.0,
                }
            )

    # ---- 8. expansion ---------------------------------------------------------------------------
    member_cluster = {key_of(m): c["id"] for c in cluster_out for m in c["members"]}
    expansion = _expand(
        con,
        member_cluster,
        seed_key_set,
        excluded,
        victim_keys,
        allow,
        prov,
        hops,
        min_members,
        min_specificity,
        seed_reach,
        since_ms,
        until_ms,
        flows_in_window,
    )
    step("expansion")

    # ---- 9. seed status ---------------------------------------------------------------------------
    seeds_out = _seed_status(con, seedset, seed_keys, pairs, until_ms, prov)
    step("seeds")

    # ---- output ---------------------------------------------------------------------------------
    vinfo = prov.lookup([v["ip"] for v in victims] + [ip_of(k) for k in excluded])
    for v in victims:
        v.pop("_key", None)
        v.update({"asn": vinfo[v["ip"]].get("asn"), "as_name": vinfo[v["ip"]].get("as_name")})
    excluded_out = [
        {"ip": ip_of(k), **e, **_enriched(vinfo[ip_of(k)])}
        for k, e in sorted(excluded.items(), key=lambda kv: (kv[1]["reason"], _ip_key(ip_of(kv[0]))))
    ]
    pairs_out = _pairs_out(pairs, services, max_pairs)
    step("output")
    read_through(con, None)
    con.close()
    if plan:
        plan.release()
    if memory_limit:
        shutil.rmtree(spill, ignore_errors=True)
    return {
        "format": FORMAT,
        "window": {"start": _iso(since_ms), "end": _iso(until_ms)},
        "parameters": params,
        "seeds": seeds_out,
        "clusters": cluster_out,
        "overlaps": overlaps,
        "expansion": expansion,
        "victims": victims,
        "excluded": excluded_out,
        "pairs": pairs_out,
        "pairs_total": len(pairs),
        "seed_input": seedset.as_dict(),
        "allowlist": allow.as_dict(),
        "provenance": {
            "store": str(st.root),
            "store_files": len(st.files()),
            "flows_in_window": int(flows_in_window),
            "window": {"start": _iso(since_ms), "end": _iso(until_ms)},
            "databases": {"asn": [str(p) for p in asn_dbs], "whois": str(whois) if whois else None},
            "enrichment": prov.sources,
            "seed_degree_median": seed_degree,
            "seed_reach_median": seed_reach,
            "timings_s": timings,
            "generated": _iso(int(time.time() * 1000)),
        },
    }


def _window(st: Store, con: Any, days: float, since: Any, until: Any, newest: int | None = None) -> tuple[int, int]:
    s = parse_time(since) if isinstance(since, str) else since
    u = parse_time(until) if isinstance(until, str) else until
    if u is None:
        if newest is None:
            row = con.sql("SELECT epoch_ms(max(start)) FROM flows").fetchall()[0]
            newest = int(row[0]) if row and row[0] is not None else None
        u = newest if newest is not None else int(time.time() * 1000)
    if s is None:
        s = int(u - float(days) * DAY_MS)
    if s > u:
        raise ValueError(f"the window starts ({_iso(s)}) after it ends ({_iso(u)})")
    return int(s), int(u)


def _start_stats(st: Store) -> tuple[list[tuple[Path, list[tuple[int, int, int]] | None]], int | None]:
    """Per store file, its row groups' (rows, min start, max start) from the Parquet footers (None
    for a file without those statistics), and the newest start (None when any file lacks them)."""
    out: list[tuple[Path, list[tuple[int, int, int]] | None]] = []
    newest: int | None = None
    complete = True
    for p in st.files():
        md = pq.ParquetFile(p).metadata
        j = md.schema.to_arrow_schema().get_field_index("start")
        groups: list[tuple[int, int, int]] | None = []
        for i in range(md.num_row_groups):
            s = md.row_group(i).column(j).statistics if j >= 0 else None
            if s is None or not s.has_min_max or groups is None:
                groups = None
                break
            groups.append((md.row_group(i).num_rows, _ms(s.min), _ms(s.max)))
        if groups is None:
            complete = False
        elif groups:
            top = max(g[2] for g in groups)
            newest = top if newest is None else max(newest, top)
        out.append((p, groups))
    return out, newest if complete else None


def _ms(v: Any) -> int:
    """A start statistic (a datetime, naive meaning UTC, or an integer of ms) as ms."""
    if isinstance(v, dt.datetime):
        return int((v if v.tzinfo else v.replace(tzinfo=dt.UTC)).timestamp() * 1000)
    return int(v)


def _window_flows(
    st: Store,
    con: Any,
    since_ms: int,
    until_ms: int,
    stats: list[tuple[Path, list[tuple[int, int, int]] | None]] | None = None,
) -> int:
    """The flows that start in the window: from the footers for the row groups wholly inside or
    outside it, counted only in the files that straddle an edge."""
    n, edge = 0, []
    for p, groups in _start_stats(st)[0] if stats is None else stats:
        if groups is None or any(lo < since_ms <= hi or lo <= until_ms < hi for _, lo, hi in groups):
            edge.append(p)
        else:
            n += sum(rows for rows, lo, hi in groups if lo >= since_ms and hi <= until_ms)
    if edge:
        files = ", ".join(f"'{_sql_str(str(p))}'" for p in edge)
        n += con.sql(
            f"SELECT count(*) FROM read_parquet([{files}], hive_partitioning = false) WHERE "
            f"start >= make_timestamptz({since_ms} * 1000) AND start <= make_timestamptz({until_ms} * 1000)"
        ).fetchall()[0][0]
    return int(n)


def _ip_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return (a.version, int(a))


def _load_anchors(con: Any, name: str, keys: Sequence[str]) -> None:
    con.register(f"{name}_arrow", _anchor_table(keys))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


def _services(con: Any, table: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    rows = (
        con.sql(f"SELECT * FROM {table}_services ORDER BY flows DESC, proto, port, side").to_arrow_table().to_pylist()
    )
    for r in rows:
        out[(r["anchor"], r["peer"])].append(
            {"proto": r["proto"], "port": r["port"], "side": r["side"], "flows": r["flows"]}
        )
    return out


def _median_degree(con: Any, table: str, noise: set[str] | None = None) -> float:
    """Median distinct peers per anchor; with ``noise``, peers in it are not counted."""
    con.register("md_noise_arrow", pa.table({"k": pa.array(sorted(noise or ()), pa.string())}))
    row = con.sql(
        f"""SELECT median(n) FROM (SELECT count(DISTINCT peer) AS n FROM {table}
        WHERE peer IS NOT NULL AND peer NOT IN (SELECT k FROM md_noise_arrow) GROUP BY anchor)"""
    ).fetchall()[0]
    con.unregister("md_noise_arrow")
    return float(row[0]) if row and row[0] is not None else 0.0


_NO_STATS = {"degree": 0, "known": 0, "noise": 0, "fan_out": 0, "fan_in": 0}


def _degrees(con: Any, table: str, known: set[str], noise: set[str]) -> dict[str, dict[str, Any]]:
    con.register("known_arrow", pa.table({"k": pa.array(sorted(known), pa.string())}))
    con.register("noise_arrow", pa.table({"k": pa.array(sorted(noise), pa.string())}))
    rows = (
        con.sql(
            # a pair table holds each (anchor, peer) once: counting rows counts distinct peers
            f"""SELECT t.anchor, count(*) AS degree, count(k.k) AS known, count(n.k) AS noise,
                   count(*) FILTER (t.initiator = 'anchor') AS fan_out,
                   count(*) FILTER (t.initiator = 'peer') AS fan_in,
                   count(*) FILTER (t.established) AS established_peers, sum(t.flows) AS flows
            FROM {table} t LEFT JOIN known_arrow k ON t.peer = k.k LEFT JOIN noise_arrow n ON t.peer = n.k
            WHERE t.peer <> t.anchor GROUP BY t.anchor"""
        )
        .to_arrow_table()
        .to_pylist()
    )
    con.unregister("known_arrow")
    con.unregister("noise_arrow")
    return {r.pop("anchor"): r for r in rows}


# A fraction of the window, at its end, where a busy host's distinct peers are counted first. Any
# fraction gives the same verdicts (a count over part of the window is a lower bound of the count
# over all of it); this one only sets how much of the store the first, cheap pass reads.
_BOUND_FRACTION = 8
# Cost settings (verdict-neutral). The exact count of known peers costs about one scan of the
# window's address columns, as much as folding about a twentieth of the window's flows in the
# exact reach pass: it runs when the hosts waiting for it hold more than that. The flows of the
# hosts of the exact pass are kept (every column, for their session pass) up to a twentieth of the
# window's flows: keeping costs about ten times a scan's work per flow, and saves one scan.
_KNOWN_PASS_SHARE = 0.05
_KEEP_SHARE = 0.05


def _bounded_reach(
    con: Any,
    name: str,
    keys: Sequence[str],
    known: set[str],
    floor: float,
    min_specificity: float,
    since_ms: int,
    until_ms: int,
    out: str,
    window_flows: int,
    keep: str | None = None,
) -> tuple[dict[str, dict[str, Any]], bool]:
    """The reach table ``out`` for ``keys``, without the hosts the reach rule condemns from a bound.

    The reach rule (``noise_reason`` without noise peers) calls a host noise when it has more
    distinct peers than ``floor`` and fewer than ``min_specificity`` of them are ``known``. The
    busiest hosts (research scanners, resolvers, CDNs) make the pass that counts their peers
    over the whole window the dearest step of the hunt, and they are the easiest to judge: their
    peers in the last eighth of the window are already a lower bound ``lb`` of their reach. With
    their exact number of known peers (one scan of the window's address columns, when the
    number of known hosts alone does not settle it), ``lb > floor`` and ``known < min_specificity * lb`` prove the verdict, since
    the reach can only be larger. With the address index the bound is instead one whole day's
    peers on one side, from its host-day table (``day_bounds``), and needs no pass. Those hosts
    are returned with the bound as their degree (and the span it was counted over); every other host gets the exact pass into ``out``, so the
    verdicts are the same as counting every host over the whole window. ``keep`` keeps the flows
    of those other hosts, every column, for their session pass (see ``keep_touching``), when they
    are few; the second value says whether it did.
    """
    condemned: dict[str, dict[str, Any]] = {}
    lower: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    sub_since = until_ms - (until_ms - since_ms) // _BOUND_FRACTION
    span = f"{(until_ms - sub_since) / DAY_MS:.3g} days"
    days = None
    if keys and min_specificity > 0:
        _load_anchors(con, name, keys)
        # with the address index, its host-day table gives each busy host's bound without a pass
        days = day_bounds(con, name, since_ms, until_ms)
    if days is not None:
        lower, span = days, "1 day"
        # what the day's known peers are is not counted: at most every other known host
        for k, b in lower.items():
            b["known"] = len(known) - (k in known)
            b["known_bound"] = "upper"
    elif keys and min_specificity > 0 and sub_since > since_ms:
        create_reach(con, name, f"{out}_lb", sub_since, until_ms, scan_share=1 / _BOUND_FRACTION)
        lower = _degrees(con, f"{out}_lb", known, set())
        for b in lower.values():
            b["flows_est"] = _BOUND_FRACTION * float(b["flows"] or 0)
        con.execute(f"DROP TABLE IF EXISTS {out}_lb")
    if lower:
        maybe = [
            k
            for k in keys
            if k in lower
            and lower[k]["degree"] > floor
            and (days is not None or lower[k]["known"] < min_specificity * lower[k]["degree"])
        ]
        # no host has more known peers than there are known hosts: where that bound already
        # proves the verdict, the exact count is not needed
        need = [k for k in maybe if (len(known) - (k in known)) >= min_specificity * lower[k]["degree"]]
        # The exact count is one more scan of the window's address columns. It pays when these
        # hosts' flows are a large part of the window (their exact reach would fold them all);
        # otherwise they simply go to the exact reach pass below. The verdicts are the same.
        if sum(lower[k]["flows_est"] for k in need) <= _KNOWN_PASS_SHARE * window_flows:
            skipped, need = need, []
        condemned.update(_condemn_counted(con, name, need, known, lower, min_specificity, since_ms, until_ms, span))
        condemned.update(_condemn_bounded([k for k in maybe if k not in need and k not in skipped], lower, span))
    rest = [k for k in keys if k not in condemned]
    kept = False
    if keep:
        # The estimate above is low for hosts busy only before the window's last eighth, so the
        # scan that keeps the flows stops past the share. When it does, those hosts were busy
        # after all, and counting their known peers exactly is worth its scan. When their flows
        # in the last part already pass the share, keeping is not tried.
        keep_max = int(_KEEP_SHARE * window_flows)
        est = _flows_est(lower, rest)
        _load_anchors(con, name, rest)
        kept = (est is None or est <= keep_max) and keep_touching(con, name, keep, since_ms, until_ms, keep_max)
        # (with the address index keeping is never tried: the exact reach below looks the
        # skipped hosts up, or scans when that costs less, and needs no count first)
        if not kept and skipped and days is None:
            condemned.update(
                _condemn_counted(con, name, skipped, known, lower, min_specificity, since_ms, until_ms, span)
            )
            rest = [k for k in keys if k not in condemned]
    _load_anchors(con, name, rest)
    create_reach(con, name, out, since_ms, until_ms, source=keep if kept else None)
    return condemned, kept


def _flows_est(lower: dict[str, dict[str, Any]], keys: Sequence[str]) -> float | None:
    """The window's flows of ``keys``, from their flows in its last part (None without that
    pass): what decides whether keeping them pays and whether the address index serves them."""
    if not lower:
        return None
    return sum(float(lower[k]["flows_est"]) for k in keys if k in lower)


def _condemn_bounded(keys: Sequence[str], lower: dict[str, dict[str, Any]], span: str) -> dict[str, dict[str, Any]]:
    """Hosts the bound condemns without an exact count (fewer known hosts than it needs)."""
    return {k: {**lower[k], "degree_bound": "lower", "bound_span": span} for k in keys}


def _condemn_counted(
    con: Any,
    name: str,
    keys: Sequence[str],
    known: set[str],
    lower: dict[str, dict[str, Any]],
    min_specificity: float,
    since_ms: int,
    until_ms: int,
    span: str,
) -> dict[str, dict[str, Any]]:
    """Of ``keys``, those whose exact known peers over the window are fewer than the bound needs."""
    if not keys:
        return {}
    log.debug("reach of %s: %d hosts get their known peers counted", name, len(keys))
    _load_anchors(con, f"{name}_lb", keys)
    _load_anchors(con, f"{name}_known", sorted(known))
    fams = tuple(f for f in (4, 6) if any(k.startswith("v6:") == (f == 6) for k in keys)) or (4,)
    exact = dict(con.sql(known_counts_sql(f"{name}_lb", f"{name}_known", since_ms, until_ms, fams)).fetchall())
    out = {}
    for k in keys:
        kn = int(exact.get(k, 0))
        if kn < min_specificity * lower[k]["degree"]:
            out[k] = {**lower[k], "known": kn, "known_bound": None, "degree_bound": "lower", "bound_span": span}
    return out


def _per_record(rate: float) -> float:
    """Sampled packets a record of ``rate`` packets leaves on average, when exported at 1:``rate``."""
    return 1.0 / (1.0 - (1.0 - 1.0 / rate) ** rate)


def _small_clients(
    by_peer: dict[str, list[dict[str, Any]]],
    candidates: dict[str, set[str]],
    services: dict[tuple[str, str], list[dict[str, Any]]],
    victim_max_seeds: int,
) -> dict[str, dict[str, Any]]:
    """Candidates whose sessions with the seeds are too small to be an operator's: reason ``client``.

    A victim whose beacon left too few connections to test (heavy sampling, a short window)
    reaches one or two seeds and opens every connection itself. Its remaining peers are the same
    resolvers, update servers and CDNs an operator's host uses, so specificity cannot tell it
    from a controller that manages two seeds; the size of its sessions can. Sampled 1:N, a
    record of n packets is exported with chance 1 - (1 - 1/N)^n and then holds
    (n/N) / (1 - (1 - 1/N)^n) sampled packets on average: about 1 for n << N, 1.58 for n = N,
    n/N beyond. A host that reaches at most ``victim_max_seeds`` seeds, opened every session
    itself, and whose records with them hold fewer sampled packets on average than a record of N
    packets would leave, ran sessions smaller than N packets with them: beacons or probes, not
    management. Unsampled, the rule never applies (the beacon tests see every start there).
    """
    out: dict[str, dict[str, Any]] = {}
    for k, est in candidates.items():
        if len(est) > victim_max_seeds:
            continue
        ps = [p for p in by_peer.get(k, []) if p["established"]]
        if not ps or any(p["initiator"] != "peer" for p in ps):
            continue
        rate = max((p.get("max_sampling_rate") or 1 for p in ps), default=1)
        recs = sum((p.get("a_flows") or 0) + (p.get("p_flows") or 0) for p in ps)
        pkts = sum((p.get("a_packets") or 0) + (p.get("p_packets") or 0) for p in ps)
        if rate <= 1 or recs == 0 or pkts / recs >= _per_record(rate):
            continue
        used = sorted(
            {
                (sv["proto"], sv["port"])
                for p in ps
                for sv in services.get((p["anchor"], k), [])
                if sv["side"] == "anchor"
            }
        )
        ports = ", ".join(f"{port}/{proto}" for proto, port in used) or "?"
        out[k] = {
            "reason": "client",
            "detail": (
                f"opened every session with its {len(est)} seed(s) itself (port(s) {ports}), with "
                f"{pkts / recs:.2f} sampled packets per record at 1:{rate:g} where a record of {rate:g} packets "
                f"would leave {_per_record(rate):.2f}: sessions smaller than {rate:g} packets, a client's "
                "(a victim whose beacons are too few to test, or probes), not an operator's"
            ),
            "seeds": len(est),
        }
    return out


def _shared_peers(
    con: Any,
    table: str,
    anchors: set[str],
    known: set[str],
    noise: set[str],
    seed_degree: float,
    min_specificity: float,
    since_ms: int,
    until_ms: int,
    window_flows: int,
) -> set[str]:
    """Peers of ``anchors`` (in the reach table ``table``) that say nothing against them.

    Only candidates are measured by the reach rule; a resolver, NTP server or update server that
    too few seeds used to become a candidate is still a shared service, and counting it as an
    informative peer would make an operator's host look unspecific. So the peers that are
    neither known nor already noise get the same reach rule: more distinct peers in the store
    than the median seed, fewer than ``min_specificity`` of them known.

    A peer that at least one other known host talks to (two known peers: the anchor itself and
    another) is not evidence against the anchor either: it is in the actor's neighbourhood, as
    the hosts the expansion finds are (a controller of two seeds that also manages new hosts
    talks to more new hosts than seeds). It is not counted as known, only left out.
    """
    if not anchors:
        return set()
    con.register("sp_anchor_arrow", pa.table({"k": pa.array(sorted(anchors), pa.string())}))
    peers = [
        r[0]
        for r in con.sql(
            f"SELECT DISTINCT peer FROM {table} WHERE anchor IN (SELECT k FROM sp_anchor_arrow) AND peer <> anchor"
        ).fetchall()
        if r[0] is not None and r[0] not in known and r[0] not in noise
    ]
    con.unregister("sp_anchor_arrow")
    if not peers:
        return set()
    bounded, _ = _bounded_reach(
        con, "peer_anchors", peers, known, seed_degree, min_specificity, since_ms, until_ms, "peer_reach", window_flows
    )
    stats = _degrees(con, "peer_reach", known, set())
    con.execute("DROP TABLE IF EXISTS peer_reach")
    out = set(bounded)
    for k in peers:
        s = stats.get(k, _NO_STATS)
        if s["known"] >= 2 or noise_reason(
            s["degree"], s["known"], s["fan_out"], s["fan_in"], seed_degree, min_specificity
        ):
            out.add(k)
    return out


def _noise_keys(s: dict[str, Any]) -> dict[str, Any]:
    d = s.get("degree") or 0
    informative = d - (s.get("noise") or 0)
    return {
        "degree": d,
        "fan_out": s.get("fan_out", 0),
        "fan_in": s.get("fan_in", 0),
        "noise_peers": s.get("noise", 0),
        "specificity": round(s.get("known", 0) / informative, 4) if informative > 0 else None,
        # counted over the end of the window only: the degree is a lower bound, the specificity an upper one
        **({"degree_bound": "lower", "bound_span": s["bound_span"]} if s.get("bound_span") else {}),
        **(
            {"bound_day": s["bound_day"], "bound_side": s.get("bound_side")}
            if s.get("bound_span") and s.get("bound_day")
            else {}
        ),
        **({"known_bound": "upper"} if s.get("bound_span") and s.get("known_bound") == "upper" else {}),
    }


def _apply_allowlist(
    allow: Allowlist, prov: _Provider, cands: dict[str, set[str]], excluded: dict[str, dict[str, Any]]
) -> None:
    if not (allow.networks or allow.asns) or not cands:
        return
    infos = prov.lookup([ip_of(k) for k in cands]) if allow.asns else {}
    for k in list(cands):
        ip = ip_of(k)
        why = allow.match(ip, (infos.get(ip) or {}).get("asn"))
        if why:
            excluded[k] = {"reason": "allowlist", "detail": why, "seeds": len(cands.pop(k))}


# ----- victims ------------------------------------------------------------------------------------


def _victims(
    con: Any,
    by_peer: dict[str, list[dict[str, Any]]],
    services: dict[tuple[str, str], list[dict[str, Any]]],
    max_seeds: int,
    min_starts: int,
) -> list[dict[str, Any]]:
    todo = []
    for peer, ps in by_peer.items():
        if len(ps) > max_seeds:
            continue
        for p in ps:
            if p["initiator"] == "peer" and p["flows"] >= min_starts:
                todo.append((p["anchor"], peer))
    if not todo:
        return []
    con.register("vict_arrow", pa.table({"anchor": [a for a, _ in todo], "peer": [b for _, b in todo]}))
    # connection starts the peer opened toward a seed's port, per port
    rows = (
        con.sql(
            """SELECT f.anchor, ipkey(f.peer_v4, f.peer_v6) AS peer, f.proto, f.a_port AS port, list(f.ts ORDER BY f.ts) AS starts,
                  count(*) AS flows
           FROM sp_flows f SEMI JOIN vict_arrow v ON f.anchor = v.anchor AND ipkey(f.peer_v4, f.peer_v6) = v.peer
           WHERE f.init = 'p' AND NOT f.a_src
           GROUP BY ALL"""
        )
        .to_arrow_table()
        .to_pylist()
    )
    con.unregister("vict_arrow")
    found: dict[str, dict[str, Any]] = {}
    per_peer: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per_peer[(r["peer"], r["proto"], r["port"])].append(r)
    for (peer, proto, port), rs in sorted(per_peer.items()):
        # the seed with the most connections first (its interval heads the entry), whatever
        # order the rows came in
        rs.sort(key=lambda r: (-r["flows"], r["anchor"]))
        tested = []
        for r in rs:
            b = regularity(np.asarray(r["starts"], dtype=np.int64)) if len(r["starts"]) >= min_starts else None
            if b is not None:
                tested.append((r, b))
        if not tested and len(rs) > 1:
            # one implant beaconing to two seeds in turn: the union of its starts is the beacon
            starts = np.concatenate([np.asarray(r["starts"], dtype=np.int64) for r in rs])
            b = regularity(starts) if len(starts) >= min_starts else None
            if b is not None:
                tested = [(r, b) for r in rs]
        for r, b in tested:
            v = found.get(peer)
            if v is None:
                v = found[peer] = {
                    "_key": peer,
                    "ip": ip_of(peer),
                    "seeds": [],
                    "port": port,
                    "proto": proto,
                    "interval_s": b.interval_s,
                    "regularity": b.share,
                    "method": b.method,
                    "connections": 0,
                    "sessions": [],
                    "first_seen": _iso(min(r["starts"])),
                    "last_seen": _iso(max(r["starts"])),
                }
            seed = ip_of(r["anchor"])
            if seed not in v["seeds"]:
                v["seeds"].append(seed)
            v["connections"] += len(r["starts"])
            v["first_seen"] = min(v["first_seen"], _iso(min(r["starts"])))
            v["last_seen"] = max(v["last_seen"], _iso(max(r["starts"])))
            pair = next(p for p in by_peer[peer] if p["anchor"] == r["anchor"])
            v["sessions"].append(
                {
                    "seed": seed,
                    "port": port,
                    "session": pair["session"],
                    "established": pair["established"],
                    "flows": pair["flows"],
                    "rejected_flows": pair["rejected_flows"],
                    "interval_s": b.interval_s,
                    "method": b.method,
                }
            )
    return sorted(found.values(), key=lambda v: _ip_key(v["ip"]))


# ----- clusters -----------------------------------------------------------------------------------


def _clusters(
    members: dict[str, set[str]], infos: dict[str, dict[str, Any]], prov: _Provider, similarity: float
) -> list[list[str]]:
    """Group by provider, then split by Jaccard similarity of seed sets (connected components)."""
    by_prov: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for k in members:
        by_prov[prov.provider_key(infos.get(ip_of(k), {}))].append(k)
    out: list[list[str]] = []
    for _pk, keys in sorted(by_prov.items(), key=lambda kv: str(kv[0])):
        keys.sort(key=lambda k: _ip_key(ip_of(k)))
        out.extend(_agglomerate(keys, members, similarity))
    return out


def _agglomerate(keys: list[str], members: dict[str, set[str]], similarity: float) -> list[list[str]]:
    """Merge the two groups whose seed sets (unions) are most alike, while their Jaccard >= similarity.

    Comparing groups by the union of their members' seeds, not member by member, keeps a member
    whose seeds were only partly observed (sampling) with the group whose seeds it shares.
    """
    groups: list[tuple[list[str], set[str]]] = [([k], set(members[k])) for k in keys]
    while len(groups) > 1:
        best = (-1.0, 0, 0)
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                a, b = groups[i][1], groups[j][1]
                sim = len(a & b) / len(a | b)
                if sim > best[0]:
                    best = (sim, i, j)
        sim, i, j = best
        if sim < similarity:
            break
        merged = (groups[i][0] + groups[j][0], groups[i][1] | groups[j][1])
        groups = [g for n, g in enumerate(groups) if n not in (i, j)] + [merged]
    return [sorted(g[0], key=lambda k: _ip_key(ip_of(k))) for g in groups]


def _cluster_dict(
    i: int,
    keys: list[str],
    pair_index: dict[tuple[str, str], dict[str, Any]],
    services: dict[tuple[str, str], list[dict[str, Any]]],
    noise_stats: dict[str, dict[str, Any]],
    infos: dict[str, dict[str, Any]],
    prov: _Provider,
    n_seeds_total: int,
) -> dict[str, Any]:
    keyset = set(keys)
    ps = [p for (_a, b), p in pair_index.items() if b in keyset]
    est = [p for p in ps if p["established"]]
    seeds = sorted({ip_of(p["anchor"]) for p in est}, key=_ip_key)
    init = {"anchor": 0, "peer": 0, "mixed": 0, "unknown": 0}
    for p in est:
        init[p["initiator"]] += 1
    if init["peer"] and not (init["anchor"] or init["mixed"]):
        initiator = "members"
    elif init["anchor"] and not (init["peer"] or init["mixed"]):
        initiator = "seeds"
    else:
        initiator = "mixed"
    svc: dict[tuple[int, int, str], int] = defaultdict(int)
    for p in est:
        for s in services.get((p["anchor"], p["peer"]), []):
            svc[(s["proto"], s["port"], "seed" if s["side"] == "anchor" else "member")] += s["flows"]
    services_out = [
        {"proto": pr, "port": po, "side": side, "flows": n}
        for (pr, po, side), n in sorted(svc.items(), key=lambda kv: (-kv[1], kv[0]))
    ][:20]
    first = min(p["first_ms"] for p in ps)
    last = max(p["last_ms"] for p in ps)
    members = sorted((ip_of(k) for k in keys), key=_ip_key)
    info0 = infos.get(members[0], {})
    allocs = []
    for m in members:
        for a in (infos.get(m, {}).get("allocation") or [])[:1]:
            if a not in allocs:
                allocs.append(a)
    specs = [v for k in keys if (v := _noise_keys(noise_stats.get(k, {}))["specificity"]) is not None]
    specificity = float(np.mean(specs)) if specs else 1.0
    est_share = len(est) / len(ps) if ps else 0.0
    reach = 1 - 0.5 ** (len(seeds) - 1) if seeds else 0.0
    score = round(specificity * est_share * reach, 4)
    flags = 0
    for p in est:
        flags |= p["a_flags"] | p["p_flags"]
    return {
        "id": f"C{i + 1}",
        "asn": info0.get("asn"),
        "as_name": info0.get("as_name"),
        "country": info0.get("country"),
        "allocation": allocs[0] if allocs else None,
        "allocations": allocs,
        "reseller": info0.get("reseller"),
        "members": members,
        "seeds": seeds,
        "established": bool(est),
        "initiator": initiator,
        "services": services_out,
        "flows": sum(p["flows"] for p in ps),
        "packets": sum(p["a_packets"] + p["p_packets"] for p in ps),
        "bytes": sum(p["a_bytes"] + p["p_bytes"] for p in ps),
        "packets_est": sum(p["a_packets_est"] + p["p_packets_est"] for p in ps),
        "bytes_est": sum(p["a_bytes_est"] + p["p_bytes_est"] for p in ps),
        "first_seen": _iso(first),
        "last_seen": _iso(last),
        "score": score,
        "evidence": {
            "established_pairs": len(est),
            "pairs": len(ps),
            "seeds": len(seeds),
            "seeds_in_input": n_seeds_total,
            "specificity": round(specificity, 4),
            "tcp_flags": _flag_names(flags),
            "initiator_pairs": {
                ("seeds" if k == "anchor" else "members" if k == "peer" else k): v for k, v in init.items() if v
            },
            "max_sampling_rate": max((p["max_sampling_rate"] for p in ps), default=1),
            "members": {
                ip_of(k): {
                    "seeds": len({p["anchor"] for p in est if p["peer"] == k}),
                    **_noise_keys(noise_stats.get(k, {})),
                }
                for k in keys
            },
            "score": "specificity x share of member-seed pairs established x (1 - 2^-(seeds - 1))",
        },
    }


def _flag_names(f: int) -> str:
    names = [(1, "F"), (2, "S"), (4, "R"), (8, "P"), (16, "A"), (32, "U"), (64, "E"), (128, "C")]
    return "".join(n if f & b else "." for b, n in reversed(names))


def _timelines(con: Any, clusters: list[dict[str, Any]]) -> None:
    if not clusters:
        return
    keys = [(key_of(m), c["id"]) for c in clusters for m in c["members"]]
    con.register("cm_arrow", pa.table({"peer": [k for k, _ in keys], "cluster": [c for _, c in keys]}))
    rows = (
        con.sql(
            f"""SELECT cm.cluster, f.ts // {DAY_MS} AS day, count(*) AS flows,
                   sum((f.a_by + f.p_by) * f.sr)::UBIGINT AS bytes_est,
                   count(DISTINCT f.anchor) AS seeds, count(DISTINCT cm.peer) AS members
            FROM sp_flows f JOIN cm_arrow cm ON ipkey(f.peer_v4, f.peer_v6) = cm.peer
            GROUP BY ALL ORDER BY 1, 2"""
        )
        .to_arrow_table()
        .to_pylist()
    )
    con.unregister("cm_arrow")
    tl: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        tl[r["cluster"]].append(
            {
                "day": _day(r["day"] * DAY_MS),
                "flows": r["flows"],
                "bytes_est": r["bytes_est"],
                "seeds": r["seeds"],
                "members": r["members"],
            }
        )
    for c in clusters:
        c["timeline"] = tl.get(c["id"], [])
        c["active_days"] = len(c["timeline"])


# ----- expansion ----------------------------------------------------------------------------------


def _expand(
    con: Any,
    member_cluster: dict[str, str],
    seed_keys: set[str],
    excluded: dict[str, dict[str, Any]],
    victim_keys: set[str],
    allow: Allowlist,
    prov: _Provider,
    hops: int,
    min_members: int,
    min_specificity: float,
    seed_degree: float,
    since_ms: int,
    until_ms: int,
    window_flows: int,
) -> list[dict[str, Any]]:
    if not member_cluster or hops < 1:
        return []
    table = "cp"  # pairs around every cluster candidate, members included
    frontier = {k: {c} for k, c in member_cluster.items()}  # key -> cluster ids
    known_infra = dict(frontier)
    found: dict[str, dict[str, Any]] = {}
    for hop in range(1, hops + 1):
        con.register("front_arrow", pa.table({"k": list(frontier)}))
        rows = (
            con.sql(
                f"""SELECT peer, list(DISTINCT anchor) AS contacted_by
                FROM {table} WHERE established AND anchor IN (SELECT k FROM front_arrow) AND peer <> anchor
                GROUP BY peer"""
            )
            .to_arrow_table()
            .to_pylist()
        )
        con.unregister("front_arrow")
        cands: dict[str, list[str]] = {}
        for r in rows:
            k = r["peer"]
            if k in seed_keys or k in known_infra or k in found or k in victim_keys or k in excluded:
                continue
            if len(r["contacted_by"]) >= min_members:
                cands[k] = sorted(r["contacted_by"])
        allow_ex: dict[str, dict[str, Any]] = {}
        _apply_allowlist(allow, prov, {k: set(v) for k, v in cands.items()}, allow_ex)
        for k, e in allow_ex.items():
            excluded[k] = e
            cands.pop(k, None)
        if not cands:
            break
        _load_anchors(con, f"xa{hop}", list(cands))
        create_reach(con, f"xa{hop}", f"xr{hop}", since_ms, until_ms)
        known = seed_keys | set(known_infra) | set(found) | set(cands)
        shared = _shared_peers(
            con,
            f"xr{hop}",
            set(cands),
            known,
            set(excluded),
            seed_degree,
            min_specificity,
            since_ms,
            until_ms,
            window_flows,
        )
        stats = _degrees(con, f"xr{hop}", known, set(excluded) | shared)
        frontier = {}
        for k, by in cands.items():
            s = stats.get(k, _NO_STATS)
            r = noise_reason(
                s["degree"], s["known"], s["fan_out"], s["fan_in"], seed_degree, min_specificity, s["noise"]
            )
            if r:
                excluded[k] = {"reason": r[0], "detail": r[1], "members": len(by), **_noise_keys(s)}
                continue
            clusters = sorted(set().union(*(known_infra.get(b, set()) for b in by)))
            informative = s["degree"] - s["noise"]
            spec = s["known"] / informative if informative > 0 else 1.0
            score = round(spec * (1 - 0.5 ** (len(by) - 1)), 4)
            found[k] = {
                "ip": ip_of(k),
                "contacted_by": sorted((ip_of(b) for b in by), key=_ip_key),
                "clusters": clusters,
                "score": score,
                "hop": hop,
                "evidence": {"established_with": len(by), **_noise_keys(s)},
            }
            frontier[k] = set(clusters)
        known_infra.update(frontier)
        if not frontier:
            break
        if hop < hops:  # sessions around the hosts just found, for the next hop
            table = f"xp{hop}"
            _load_anchors(con, f"xs{hop}", list(frontier))
            create_pairs(con, f"xs{hop}", table, since_ms, until_ms, services=False, full=False)
    if not found:
        return []
    infos = prov.lookup([v["ip"] for v in found.values()])
    out = []
    for v in found.values():
        out.append({**v, **_enriched(infos[v["ip"]]), "allocation": (infos[v["ip"]].get("allocation") or [None])[0]})
    out.sort(key=lambda v: (-v["score"], _ip_key(v["ip"])))
    return out


# ----- seed status ------------------------------------------------------------------------------------


def _seed_status(
    con: Any, seedset: SeedSet, seed_keys: list[str], pairs: list[dict[str, Any]], until_ms: int, prov: _Provider
) -> list[dict[str, Any]]:
    rows = (
        con.sql(
            f"""SELECT anchor, min(ts) AS first_ms, max(te) AS last_ms, list(DISTINCT ts // {DAY_MS}) AS days,
                   count(DISTINCT ts // {HOUR_MS}) AS hours, count(*) AS flows
            FROM sp_flows GROUP BY anchor"""
        )
        .to_arrow_table()
        .to_pylist()
    )
    seen = {r["anchor"]: r for r in rows}
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for p in pairs:
        d = per[p["anchor"]]
        d["peers"] += 1
        d["established_peers"] += int(bool(p["established"]))
        d["rejected_flows"] += p["rejected_flows"]
        d["attempt_flows"] += p["attempt_flows"]
    by_ip = {s.ip: s for s in seedset.seeds}
    keep = [k for k in seed_keys if k in seen or by_ip[ip_of(k)].network is None]
    infos = prov.lookup([ip_of(k) for k in keep])
    out = []
    for k in keep:
        ip = ip_of(k)
        r = seen.get(k)
        s = by_ip[ip]
        entry: dict[str, Any] = {"ip": ip, **_enriched(infos[ip])}
        if r is None:
            entry.update({"first_seen": None, "last_seen": None, "status": "unseen", "flows": 0})
        else:
            days = sorted(r["days"])
            gaps = np.diff(days) if len(days) > 1 else np.array([0])
            span_h = max(1.0, (r["last_ms"] - r["first_ms"]) / HOUR_MS)
            presence = min(1.0, r["hours"] / span_h)  # share of hours with traffic while it was up
            silent_h = max(0.0, (until_ms - r["last_ms"]) / HOUR_MS)
            # chance that a seed still up, with that presence, stays silent that long
            chance = (1.0 - presence) ** silent_h if presence < 1.0 else 0.0
            dark = silent_h >= DARK_MIN_HOURS and chance < DARK_CHANCE
            entry.update(
                {
                    "first_seen": _iso(r["first_ms"]),
                    "last_seen": _iso(r["last_ms"]),
                    "status": "dark" if dark else "active",
                    "flows": r["flows"],
                    "active_days": len(days),
                    "silent_hours": round(silent_h, 1),
                    "hourly_presence": round(presence, 4),
                    "longest_gap_days": int(gaps.max()),
                }
            )
        entry.update(dict(per.get(k, {})))
        entry["source"] = {"file": s.source, "where": s.where, **({"port": s.port} if s.port is not None else {})}
        if s.network:
            entry["source"]["network"] = s.network
        out.append(entry)
    return out


def _pairs_out(
    pairs: list[dict[str, Any]], services: dict[tuple[str, str], list[dict[str, Any]]], limit: int
) -> list[dict[str, Any]]:
    keep = [p for p in pairs if p["session"] in ("established", "rejected")]
    keep.sort(key=lambda p: (-p["flows"], p["anchor"], p["peer"]))
    out = []
    for p in keep[:limit]:
        out.append(
            {
                "seed": ip_of(p["anchor"]),
                "peer": ip_of(p["peer"]),
                "session": p["session"],
                "established": p["established"],
                "initiator": {"anchor": "seed", "peer": "peer"}.get(p["initiator"], p["initiator"]),
                "services": [
                    {
                        "proto": s["proto"],
                        "port": s["port"],
                        "side": "seed" if s["side"] == "anchor" else "peer",
                        "flows": s["flows"],
                    }
                    for s in services.get((p["anchor"], p["peer"]), [])[:10]
                ],
                "flows": p["flows"],
                "rejected_flows": p["rejected_flows"],
                "attempt_flows": p["attempt_flows"],
                "seed_to_peer": {
                    "flows": p["a_flows"],
                    "packets": p["a_packets"],
                    "bytes": p["a_bytes"],
                    "packets_est": p["a_packets_est"],
                    "bytes_est": p["a_bytes_est"],
                    "tcp_flags": _flag_names(p["a_flags"]),
                },
                "peer_to_seed": {
                    "flows": p["p_flows"],
                    "packets": p["p_packets"],
                    "bytes": p["p_bytes"],
                    "packets_est": p["p_packets_est"],
                    "bytes_est": p["p_bytes_est"],
                    "tcp_flags": _flag_names(p["p_flags"]),
                },
                "first_seen": _iso(p["first_ms"]),
                "last_seen": _iso(p["last_ms"]),
                "active_days": p["active_days"],
            }
        )
    return out

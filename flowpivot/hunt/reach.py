"""The reach passes: how far a host reaches over the whole window, and the shortcut for busy hosts.

The noise rules (:mod:`flowpivot.hunt.rules.noise`) read each candidate's distinct peers, fan-out
and fan-in over the whole store in the window. Counting them for a research scanner or a resolver
means folding millions of (host, peer) pairs, so the busiest hosts are judged first from a lower
bound: their peers in the window's last part, or one whole day's peers from the address index's
host-day table. Both noise tests only grow more certain with the full count (docs/hunt.md,
"Judging the busiest hosts from a bound"), so a host the bound condemns is condemned by the full
count too; every other host gets the full count. The verdicts are the same as counting every host
over the whole window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..sqltext import sql_str
from ..store import DAY_MS
from .keys import anchor_table, key_list, load_anchors
from .pivot import create_reach, day_bounds, keep_touching, known_counts_sql

if TYPE_CHECKING:
    from .context import HuntContext

__all__ = [
    "median_degree",
    "degrees",
    "bounded_reach",
    "count_more",
    "managed_bounds",
    "managed_counts",
    "peer_table",
    "reach_from_peers",
    "NO_STATS",
]

log = logging.getLogger("flowpivot.hunt")

#: A judge: (host key, its stats with a lower-bound degree and an upper-bound or exact ``known``)
#: -> a verdict dict (reason, detail, ...) or None.
Judge = Callable[[str, dict[str, Any]], dict[str, Any] | None]

NO_STATS = {"degree": 0, "known": 0, "noise": 0, "fan_out": 0, "fan_in": 0, "known_in": 0, "noise_in": 0}

# A fraction of the window, at its end, where a busy host's distinct peers are counted first. Any
# fraction gives the same verdicts (a count over part of the window is a lower bound of the count
# over all of it); this one only sets how much of the store the first, cheap pass reads.
BOUND_FRACTION = 8
# Cost settings (verdict-neutral). The exact count of known peers costs about one scan of the
# window's address columns, as much as folding about a twentieth of the window's flows in the
# exact reach pass: it runs when the hosts waiting for it hold more than that. The flows of the
# hosts of the exact pass are kept (every column, for their session pass) up to a twentieth of the
# window's flows: keeping costs about ten times a scan's work per flow, and saves one scan.
KNOWN_PASS_SHARE = 0.05
KEEP_SHARE = 0.05


def median_degree(con: HuntContext, table: str, noise: set[str] | None = None) -> float:
    """Median distinct peers per anchor; with ``noise``, peers in it are not counted."""
    key_list(con, "md_noise_arrow", noise or set())
    row = con.sql(
        f"""SELECT median(n) FROM (SELECT count(DISTINCT peer) AS n FROM {table}
        WHERE peer IS NOT NULL AND peer NOT IN (SELECT k FROM md_noise_arrow) GROUP BY anchor)"""
    ).fetchall()[0]
    con.unregister("md_noise_arrow")
    return float(row[0]) if row and row[0] is not None else 0.0


def degrees(con: HuntContext, table: str, known: set[str], noise: set[str]) -> dict[str, dict[str, Any]]:
    """Per anchor of the reach table: distinct peers, known and noise peers, fan-out and fan-in,
    and of its clients (fan-in) how many are known and noise."""
    key_list(con, "known_arrow", known)
    key_list(con, "noise_arrow", noise)
    rows = (
        con.sql(
            # a pair table holds each (anchor, peer) once: counting rows counts distinct peers
            f"""SELECT t.anchor, count(*) AS degree, count(k.k) AS known, count(n.k) AS noise,
                   count(*) FILTER (WHERE t.initiator = 'anchor') AS fan_out,
                   count(*) FILTER (WHERE t.initiator = 'peer') AS fan_in,
                   count(k.k) FILTER (WHERE t.initiator = 'peer') AS known_in,
                   count(n.k) FILTER (WHERE t.initiator = 'peer') AS noise_in,
                   count(*) FILTER (WHERE t.established) AS established_peers, sum(t.flows) AS flows
            FROM {table} t LEFT JOIN known_arrow k ON t.peer = k.k LEFT JOIN noise_arrow n ON t.peer = n.k
            WHERE t.peer <> t.anchor GROUP BY t.anchor"""
        )
        .to_arrow_table()
        .to_pylist()
    )
    con.unregister("known_arrow")
    con.unregister("noise_arrow")
    return {r.pop("anchor"): r for r in rows}


def local_peers(con: HuntContext, table: str, prefixes: dict[str, set[int]], bits: int) -> dict[str, int]:
    """Per anchor, its distinct IPv4 peers inside the given /``bits`` prefixes (prefix numbers)."""
    rows = [(k, p) for k, ps in prefixes.items() for p in ps]
    if not rows:
        return {}
    import pyarrow as pa

    con.register(
        "local_pfx_arrow",
        pa.table(
            {"anchor": pa.array([r[0] for r in rows], pa.string()), "pfx": pa.array([r[1] for r in rows], pa.int64())}
        ),
    )
    out = dict(
        con.sql(
            f"""SELECT t.anchor, count(*) FROM {table} t JOIN local_pfx_arrow p
            ON t.anchor = p.anchor AND (t.peer_v4 >> {32 - bits})::BIGINT = p.pfx
            WHERE t.peer_v4 IS NOT NULL AND t.peer <> t.anchor GROUP BY t.anchor"""
        ).fetchall()
    )
    con.unregister("local_pfx_arrow")
    return {k: int(v) for k, v in out.items()}


def bounded_reach(
    con: HuntContext,
    name: str,
    keys: Sequence[str],
    known: set[str],
    judge: Judge,
    since_ms: int,
    until_ms: int,
    out: str,
    keep: str | None = None,
    defer: Callable[[str], bool] | None = None,
) -> tuple[dict[str, dict[str, Any]], bool, dict[str, dict[str, Any]]]:
    """The reach table ``out`` for ``keys``, without the hosts ``judge`` condemns from a bound.

    Returns the condemned hosts (their bound statistics and the verdict), whether ``keep``
    now holds every flow of the other hosts (every column, for their session pass; see
    ``keep_touching``), which it does when they are few, and the deferred hosts with their bound
    statistics: with the index's host-peer table, hosts with a host-day bound that ``defer``
    accepts (no count can make the judge condemn them) are left out of ``out``; the caller
    bounds their managed draws from the table (:func:`managed_bounds`) and counts them
    (:func:`count_more`) only when that does not decide them.
    """
    condemned: dict[str, dict[str, Any]] = {}
    lower: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    sub_since = until_ms - (until_ms - since_ms) // BOUND_FRACTION
    span = f"in its last {(until_ms - sub_since) / DAY_MS:.3g} days"
    days = None
    if keys:
        load_anchors(con, name, keys)
        # with the address index, its host-day table gives each busy host's bound without a pass
        days = day_bounds(con, name, since_ms, until_ms)
    if days is not None:
        lower = days
        for b in lower.values():
            b["bound"] = f"as {b['bound_side']} on {b['bound_day']} alone"
    elif keys and sub_since > since_ms:
        create_reach(con, name, f"{out}_lb", sub_since, until_ms, scan_share=1 / BOUND_FRACTION)
        lower = degrees(con, f"{out}_lb", known, set())
        for b in lower.values():
            b["flows_est"] = BOUND_FRACTION * float(b["flows"] or 0)
            b["bound"] = span
            b["bound_span"] = f"{(until_ms - sub_since) / DAY_MS:.3g} days"
        con.drop_table(f"{out}_lb")
    if lower:
        need: list[str] = []
        for k in keys:
            if k not in lower:
                continue
            b = {**lower[k], "known": len(known) - (k in known)}  # no more known peers than known hosts
            v = judge(k, b)
            if v is not None:
                condemned[k] = {**b, **v}
            elif judge(k, {**b, "known": 0}) is not None:
                need.append(k)  # an exact count of its known peers may condemn it
        # The exact count is one more scan of the window's address columns. It pays when these
        # hosts' flows are a large part of the window (their exact reach would fold them all);
        # otherwise they simply go to the exact reach pass below. The verdicts are the same.
        if sum(lower[k].get("flows_est", 0.0) for k in need) <= KNOWN_PASS_SHARE * con.window_flows:
            skipped, need = need, []
        condemned.update(_condemn_counted(con, name, need, known, lower, judge, since_ms, until_ms))
    rest = [k for k in keys if k not in condemned]
    deferred: dict[str, dict[str, Any]] = {}
    if days is not None and defer is not None and peer_table(con) is not None:
        deferred = {k: lower[k] for k in rest if k in lower and defer(k)}
        rest = [k for k in rest if k not in deferred]
    kept = False
    if keep:
        # The estimate above is low for hosts busy only before the window's last eighth, so the
        # scan that keeps the flows stops past the share. When it does, those hosts were busy
        # after all, and counting their known peers exactly is worth its scan. When their flows
        # in the last part already pass the share, keeping is not tried.
        keep_max = int(KEEP_SHARE * con.window_flows)
        est = sum(float(lower[k].get("flows_est", 0.0)) for k in rest if k in lower) if lower else None
        load_anchors(con, name, rest)
        kept = (est is None or est <= keep_max) and keep_touching(con, name, keep, since_ms, until_ms, keep_max)
        # (with the address index keeping is never tried: the exact reach below looks the
        # skipped hosts up, or scans when that costs less, and needs no count first)
        if not kept and skipped and days is None:
            condemned.update(_condemn_counted(con, name, skipped, known, lower, judge, since_ms, until_ms))
            rest = [k for k in keys if k not in condemned and k not in deferred]
    load_anchors(con, name, rest)
    create_reach(con, name, out, since_ms, until_ms, source=keep if kept else None)
    return condemned, kept, deferred


def peer_table(con: HuntContext) -> tuple[str, int] | None:
    """The index's host-peer table and its flow threshold, when it covers every flow of the
    window (an index built with it, and no store file in the window written since)."""
    plan = con.plan
    if plan is None or plan.peers is None or plan.rest:
        return None
    return str(plan.peers), int(plan.peers_min_flows)


def _address_constants(con: HuntContext, name: str) -> tuple[str, str]:
    """The IPv4 and IPv6 addresses of the anchors ``name`` as SQL constant lists, so a scan of the
    host-peer table (ordered by host) skips the row groups of other hosts."""
    v4s = ", ".join(str(int(r[0])) for r in con.sql(f"SELECT DISTINCT v4 FROM {name} WHERE v4 IS NOT NULL").fetchall())
    v6s = ", ".join(
        "'" + "".join(f"\\x{b:02X}" for b in bytes(r[0])) + "'::BLOB"
        for r in con.sql(f"SELECT DISTINCT v6 FROM {name} WHERE v6 IS NOT NULL").fetchall()
    )
    return v4s or "NULL", v6s or "NULL"


def reach_from_peers(
    con: HuntContext, name: str, keys: Sequence[str], out: str, since_ms: int, until_ms: int
) -> list[str]:
    """The reach table ``out`` (as :func:`create_reach` makes it) of those ``keys`` the index's
    host-peer table holds whole, read from the table instead of their flows; returns the other
    keys, in their order, for the caller to count (:func:`count_more`).

    A host is held whole when it has rows on both sides (each side's rows hold every flow of the
    host on that side) and every flow of it starts inside the window (its first and last start
    over the whole store). Its peers, flows, estimated packets and initiator are then the reach
    pass's exactly; ``conns`` is NULL (the table adds the two sides' distinct connections, which
    counts a connection seen from both sides twice), so the result serves the noise rules'
    degrees (:func:`degrees`) and not the managed draws (:func:`managed_counts`). A table
    written before it held the initiator (``ac``, ``pc``) is not used.
    """
    keys = list(keys)
    table = peer_table(con)
    if table is None or not keys:
        return keys
    import pyarrow.parquet as pq

    path = table[0]
    if not {"ac", "pc", "sides"} <= set(pq.read_schema(path).names):
        return keys
    load_anchors(con, name, keys)
    v4s, v6s = _address_constants(con, name)
    src = sql_str(path)
    # (DuckDB only: the host-peer table is part of the address index, which Spark never has)
    con.create_table(
        f"{out}_hp",
        f"""SELECT an.key AS anchor, h.p4, h.p6, h.flows, h.pk, h.ac, h.pc, h.sides, h.first_ms, h.last_ms
        FROM read_parquet('{src}') h JOIN {name} an ON h.v4 = an.v4 WHERE h.v4 IN ({v4s})
        UNION ALL
        SELECT an.key AS anchor, h.p4, h.p6, h.flows, h.pk, h.ac, h.pc, h.sides, h.first_ms, h.last_ms
        FROM read_parquet('{src}') h JOIN {name} an ON h.v6 = an.v6 WHERE h.v6 IN ({v6s})""",
    )
    whole = {
        str(r[0])
        for r in con.sql(
            f"""SELECT anchor FROM {out}_hp GROUP BY anchor
            HAVING min(sides) >= 2 AND min(first_ms) >= {int(since_ms)} AND max(last_ms) < {int(until_ms)}"""
        ).fetchall()
    }
    key_list(con, "whole_arrow", whole)
    con.create_table(
        out,
        f"""SELECT anchor, ipkey(p4, p6) AS peer, p4 AS peer_v4, flows::BIGINT AS flows, pk::DOUBLE AS pk_est,
          NULL::BIGINT AS conns, NULL::BOOLEAN AS established,
          CASE WHEN ac AND NOT pc THEN 'anchor' WHEN pc AND NOT ac THEN 'peer'
               WHEN ac AND pc THEN 'mixed' ELSE 'unknown' END AS initiator
        FROM {out}_hp WHERE anchor IN (SELECT k FROM whole_arrow)""",
    )
    con.unregister("whole_arrow")
    con.drop_table(f"{out}_hp")
    log.debug("reach from the host-peer table: %d of %d hosts", len(whole), len(keys))
    return [k for k in keys if k not in whole]


def count_more(con: HuntContext, name: str, keys: Sequence[str], out: str, since_ms: int, until_ms: int) -> None:
    """Add ``keys``' reach over the window to the reach table ``out`` (hosts deferred by
    :func:`bounded_reach` that their bound did not decide)."""
    if not keys:
        return
    load_anchors(con, name, keys)
    create_reach(con, name, f"{out}_more", since_ms, until_ms)
    con.insert_into(out, f"SELECT * FROM {out}_more")
    con.drop_table(f"{out}_more")


def _condemn_counted(
    con: HuntContext,
    name: str,
    keys: Sequence[str],
    known: set[str],
    lower: dict[str, dict[str, Any]],
    judge: Judge,
    since_ms: int,
    until_ms: int,
) -> dict[str, dict[str, Any]]:
    """Of ``keys``, those the judge condemns with their exact known peers over the window."""
    if not keys:
        return {}
    log.debug("reach of %s: %d hosts get their known peers counted", name, len(keys))
    load_anchors(con, f"{name}_lb", keys)
    load_anchors(con, f"{name}_known", sorted(known))
    fams = tuple(f for f in (4, 6) if any(k.startswith("v6:") == (f == 6) for k in keys)) or (4,)
    exact = dict(con.sql(known_counts_sql(f"{name}_lb", f"{name}_known", since_ms, until_ms, fams, con.d)).fetchall())
    out = {}
    for k in keys:
        b = {**lower[k], "known": int(exact.get(k, 0))}
        v = judge(k, b)
        if v is not None:
            out[k] = {**b, **v, "known_exact": True}
    return out


def managed_counts(
    con: HuntContext, table: str, pairs: dict[str, set[str]], targets: set[str], noise: set[str], margin: float
) -> dict[str, tuple[int, int]]:
    """Per anchor: its peers (not noise) with which it held sessions within ``margin`` (a factor)
    of the smallest it held with the seeds in ``pairs[anchor]``, in packets per connection
    (estimated: sampled packets times each record's rate, per distinct protocol and ports, as the
    reach table counts them), and how many of those are in ``targets``: the draws and hits of the
    enrichment test over the hosts it manages."""
    import pyarrow as pa

    rows_ = [(a, s) for a, ss in pairs.items() for s in ss]
    if not rows_:
        return {}
    con.register(
        "mpairs_arrow",
        pa.table(
            {"a": pa.array([r[0] for r in rows_], pa.string()), "s": pa.array([r[1] for r in rows_], pa.string())}
        ),
    )
    key_list(con, "target_arrow", targets)
    key_list(con, "mnoise_arrow", noise)
    rows = con.sql(
        f"""WITH f AS (
              SELECT t.anchor, min(t.pk_est / greatest(t.conns, 1)) / {float(margin)} AS floor
              FROM {table} t JOIN mpairs_arrow m ON t.anchor = m.a AND t.peer = m.s GROUP BY t.anchor)
        SELECT t.anchor, count(*) AS managed, count(g.k) AS hits
        FROM {table} t JOIN f ON t.anchor = f.anchor
        LEFT JOIN target_arrow g ON t.peer = g.k
        WHERE t.peer <> t.anchor AND t.pk_est >= f.floor * greatest(t.conns, 1)
          AND t.peer NOT IN (SELECT k FROM mnoise_arrow)
        GROUP BY t.anchor"""
    ).fetchall()
    for name in ("mpairs_arrow", "target_arrow", "mnoise_arrow"):
        con.unregister(name)
    return {a: (int(m), int(h)) for a, m, h in rows}


def managed_bounds(
    con: HuntContext,
    name: str,
    pairs: dict[str, set[str]],
    seeds: str,
    noise: set[str],
    margin: float,
    since_ms: int,
    until_ms: int,
) -> dict[str, tuple[int, int]]:
    """Per anchor of ``pairs``: a lower bound of its managed draws (:func:`managed_counts`) from
    the index's host-peer table, and its hits, exact, from the seeds' pair table ``seeds``.

    The floor (its smallest session with the seeds in ``pairs[anchor]``, over ``margin``) and the
    hits come from the seed pass, which holds every flow between the seeds and the anchor in the
    window. The table holds, for a host with at least its threshold of flows on a side, each
    peer's estimated packets over the whole store and its distinct connections on each side
    added (at least its distinct connections). A peer counts when every flow of it starts inside
    the window and its packets reach the floor times those connections. Hosts with rows from one
    side only lose one counted peer per flow the other side may hold (fewer than the threshold).
    Anchors with no rows are left out. See docs/hunt.md, "Managed draws from a bound".
    """
    import pyarrow as pa

    from .rules.enrichment import managed_lower_bound

    table = peer_table(con)
    rows_ = [(a, s) for a, ss in pairs.items() for s in ss]
    if table is None or not rows_:
        return {}
    path, min_flows = table
    load_anchors(con, name, sorted(pairs))
    con.register(
        "bpairs_arrow",
        pa.table(
            {"a": pa.array([r[0] for r in rows_], pa.string()), "s": pa.array([r[1] for r in rows_], pa.string())}
        ),
    )
    key_list(con, "bnoise_arrow", noise)
    pk = "(s.a_packets_est + s.p_packets_est)::DOUBLE"
    floors = f"""SELECT s.peer AS anchor, min({pk} / greatest(s.conns, 1)) / {float(margin)} AS floor
        FROM {seeds} s JOIN bpairs_arrow m ON s.peer = m.a AND s.anchor = m.s GROUP BY s.peer"""
    hits = dict(
        con.sql(
            f"""WITH f AS ({floors})
            SELECT s.peer, count(*) FROM {seeds} s JOIN f ON s.peer = f.anchor
            WHERE s.anchor <> s.peer AND {pk} >= f.floor * greatest(s.conns, 1)
              AND s.anchor NOT IN (SELECT k FROM bnoise_arrow)
            GROUP BY s.peer"""
        ).fetchall()
    )
    src = sql_str(path)
    # the anchors' addresses as constants, so the scan skips the row groups of other hosts
    v4s, v6s = _address_constants(con, name)
    # one read of the anchors' rows; peers compared by address (no keys built per row)
    con.register("bnoise_addr", anchor_table(sorted(noise)))
    rows = con.sql(
        f"""WITH f AS ({floors}),
        x AS (
          SELECT an.key AS anchor, an.v4 AS a4, an.v6 AS a6, h.* FROM read_parquet('{src}') h
          JOIN {name} an ON h.v4 = an.v4 WHERE h.v4 IN ({v4s})
          UNION ALL
          SELECT an.key AS anchor, an.v4 AS a4, an.v6 AS a6, h.* FROM read_parquet('{src}') h
          JOIN {name} an ON h.v6 = an.v6 WHERE h.v6 IN ({v6s}))
        SELECT x.anchor, min(x.sides) AS sides,
          count(*) FILTER (WHERE x.first_ms >= {int(since_ms)} AND x.last_ms < {int(until_ms)}
            AND x.pk >= f.floor * greatest(x.conns, 1) AND n4.v4 IS NULL AND n6.v6 IS NULL
            AND NOT (x.p4 IS NOT DISTINCT FROM x.a4 AND x.p6 IS NOT DISTINCT FROM x.a6)) AS counted
        FROM x JOIN f ON f.anchor = x.anchor
        LEFT JOIN bnoise_addr n4 ON x.p4 = n4.v4 LEFT JOIN bnoise_addr n6 ON x.p6 = n6.v6
        GROUP BY x.anchor"""
    ).fetchall()
    con.unregister("bnoise_addr")
    for t in ("bpairs_arrow", "bnoise_arrow"):
        con.unregister(t)
    return {
        a: (managed_lower_bound(int(counted), 0 if sides >= 2 else min_flows - 1), int(hits.get(a, 0)))
        for a, sides, counted in rows
    }

"""The pivot: every flow with an anchor address on either side, folded into per-(anchor, peer) pairs.

An *anchor* is a seed in the first pass, a cluster candidate in the second (to measure its fan-out
over the whole store) and an expansion candidate in the third. The same SQL serves all three: a
single scan of the store in the window keeps flows whose source or destination is an anchor, and
a ``UNION ALL`` of the source side and the destination side (IPv4 on the ``uint32`` column, IPv6
on the 16-byte column) orients each flow from the anchor's point of view. Everything heavy is
DuckDB SQL over the Parquet store, so the same statements can run on a distributed engine.

Per pair and per direction (anchor->peer ``a_*``, peer->anchor ``p_*``) we keep flows, packets
and bytes as exported and scaled by ``sampling_rate``, the OR of the TCP flags, first and last
seen and active days, and the evidence the session rules in :mod:`flowpivot.hunt.sessions` read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..engine import DUCKDB, Dialect, ipkey_sql
from ..sqltext import sql_str
from ..store import DAY_MS
from . import sessions as S

if TYPE_CHECKING:
    from .context import HuntContext

__all__ = ["create_pairs", "create_reach", "ipkey_macro"]


# A lookup in the index costs about this many times what a scan of the store costs per flow it
# reads: it decompresses whole record batches, one at a time (docs/performance.md, "Address
# index"). What it reads is known from the index's keys files: every batch that can hold an
# anchor's flow, on each side. A scan reads the window, or the part of it a pass needs.
_LOOKUP_COST = 10.0


def index_rows(con: HuntContext, anchors: str) -> int | None:
    """The flows a lookup of ``anchors`` in the index would read, or None without an index."""
    plan = con.plan
    return None if plan is None else plan.span_rows(*_anchor_values(con, anchors))


def index_pays(con: HuntContext, anchors: str, scan_share: float = 1.0) -> bool:
    """Whether looking ``anchors`` up in the index costs less than scanning ``scan_share`` of the
    window (a pass over its last part scans only that part)."""
    rows = index_rows(con, anchors)
    return rows is not None and _LOOKUP_COST * rows < float(con.window_flows) * scan_share


def day_bounds(con: HuntContext, anchors: str, since_ms: int, until_ms: int) -> dict[str, dict[str, Any]] | None:
    """Per anchor with a busy day in the window, from the index's host-day table: the most
    distinct peers it had on one side in one whole UTC day inside the window (a lower bound of
    its reach over the window), that day's fan-out and fan-in on that side, and its flows on its busy days
    (an estimate of its flows in the window, low by its quiet days). None without an index that
    has the table; anchors with no busy day are left out.
    """
    plan = con.plan
    if plan is None or plan.hosts is None:
        return None
    first = -(-int(since_ms) // DAY_MS)  # the first day that starts in the window
    last = (int(until_ms) + 1) // DAY_MS - 1  # the last day that ends in it
    path = sql_str(str(plan.hosts))
    rows = con.sql(
        f"""WITH h AS (
              SELECT an.key AS anchor, h.* FROM read_parquet('{path}') h JOIN {anchors} an ON h.v4 = an.v4
              WHERE h.day BETWEEN {first} AND {last}
              UNION ALL
              SELECT an.key AS anchor, h.* FROM read_parquet('{path}') h JOIN {anchors} an ON h.v6 = an.v6
              WHERE h.day BETWEEN {first} AND {last})
            SELECT anchor, arg_max(struct_pack(peers, fan_out, fan_in, day, side), (peers, -day, side = 'src')) AS best,
                   sum(flows) AS flows
            FROM h GROUP BY anchor"""
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for anchor, best, flows in rows:
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(best["day"]))
        out[anchor] = {
            "degree": int(best["peers"]),
            "fan_out": int(best["fan_out"]),
            "fan_in": int(best["fan_in"]),
            "flows_est": float(flows),
            "bound_day": day.isoformat(),
            "bound_side": "source" if best["side"] == "src" else "destination",
        }
    return out


def _anchor_values(con: HuntContext, anchors: str) -> tuple[np.ndarray, list[bytes]]:
    v4 = con.sql(f"SELECT DISTINCT v4 FROM {anchors} WHERE v4 IS NOT NULL").fetchnumpy()["v4"]
    v6 = [bytes(r[0]) for r in con.sql(f"SELECT DISTINCT v6 FROM {anchors} WHERE v6 IS NOT NULL").fetchall()]
    return np.asarray(v4, np.uint32), v6


def _anchor_terms(anchors: str, families: tuple[int, ...], sides: tuple[str, ...]) -> str:
    return " OR ".join(f"{side}_addr_v{fam} IN (SELECT v{fam} FROM {anchors})" for fam in families for side in sides)


_LOOKUPS = 0


@contextmanager
def _from_index(
    con: HuntContext,
    anchors: str,
    since_ms: int,
    until_ms: int,
    families: tuple[int, ...],
    columns: str,
    touching: bool,
) -> Iterator[dict[str, str]]:
    """The window's flows of the anchors from the address index, as table expressions.

    ``touching``: ``{"both": rel}``, every flow with an anchor on either side once (the
    destination copy's flows whose source is an anchor too are left to the source copy);
    otherwise ``{"src": rel, "dst": rel}``, each side's flows. The two copies are read on two
    threads. Store files the index does not hold are scanned in the same expression.
    """
    global _LOOKUPS
    plan = con.plan
    assert plan is not None
    cols = [c.strip().strip('"') for c in columns.split(",")]
    v4, v6 = _anchor_values(con, anchors)
    with ThreadPoolExecutor(2) as ex:
        src = ex.submit(plan.lookup, "src", v4, v6, cols, since_ms, until_ms)
        dst = ex.submit(plan.lookup, "dst", v4, v6, cols, since_ms, until_ms, (v4, v6) if touching else None)
        found = {"src": src.result(), "dst": dst.result()}
    if touching:
        found = {"both": pa.concat_tables([found["src"], found["dst"]])}
    win = _window_sql(since_ms, until_ms)
    rest = plan.rest_relation()
    names = ", ".join(f'"{c}"' for c in cols)
    rels, views = {}, []
    for key, table in found.items():
        _LOOKUPS += 1
        view = f"flowpivot_ix_{_LOOKUPS}"
        con.register(view, table)
        views.append(view)
        rel = f"SELECT {names} FROM {view}"
        if rest:
            sides = ("src", "dst") if key == "both" else (key,)
            rel += f" UNION ALL SELECT {names} FROM {rest} WHERE {win} AND ({_anchor_terms(anchors, families, sides)})"
        rels[key] = f"({rel})"
    try:
        yield rels
    finally:
        for view in views:
            con.unregister(view)


def ipkey_macro(con: HuntContext) -> None:
    """``ipkey(v4, v6)``: dotted quad for IPv4, ``v6:<hex>`` for IPv6 (made canonical in Python)."""
    if con.d.macros:  # (Spark has none: Dialect.ipkey writes the same expression inline)
        con.execute(f"CREATE OR REPLACE MACRO ipkey(a, b) AS {ipkey_sql('a', 'b')}")


def _window_sql(since_ms: int, until_ms: int, d: Dialect = DUCKDB) -> str:
    # A flow belongs to the window when it starts in it; the store is partitioned by day of start,
    # and row-group min/max statistics on start skip the rest.
    return f"start >= {d.ts_ms(since_ms)} AND start <= {d.ts_ms(until_ms)}"


def _side(anchors: str, anchor_is_src: bool, family: int, source: str, d: Dialect = DUCKDB) -> str:
    a, p = ("src", "dst") if anchor_is_src else ("dst", "src")
    col = f"{a}_addr_v{family}"
    fwd = ("packets", "bytes", "tcp_flags")
    rev = ("rev_packets", "rev_bytes", "rev_tcp_flags")
    af, pf = (fwd, rev) if anchor_is_src else (rev, fwd)
    # (the hint: Spark broadcasts the anchors to the scan's tasks; a comment to DuckDB)
    return f"""
    SELECT /*+ BROADCAST(an) */ an.key AS anchor, an.id AS anchor_id, w.{p}_addr_v4 AS peer_v4, w.{p}_addr_v6 AS peer_v6, {str(anchor_is_src).upper()} AS a_src,
           w.protocol AS proto, coalesce(w.{a}_port, 0) AS a_port, coalesce(w.{p}_port, 0) AS p_port,
           coalesce(w.{af[0]}, 0) AS a_pk, coalesce(w.{af[1]}, 0) AS a_by, coalesce(w.{af[2]}, 0) AS a_fl,
           coalesce(w.{pf[0]}, 0) AS p_pk, coalesce(w.{pf[1]}, 0) AS p_by, coalesce(w.{pf[2]}, 0) AS p_fl,
           greatest(coalesce(w.sampling_rate, 1), 1) AS sr, {d.epoch_ms("w.start")} AS ts, {d.epoch_ms('w."end"')} AS te,
           w.conn_state AS zs, w.history AS hist
    FROM {source} w JOIN {anchors} an ON w.{col} = an.v{family}"""


def flows_sql(anchors: str, source: str, families: tuple[int, ...], d: Dialect = DUCKDB) -> str:
    """Every flow of ``source`` touching an anchor, once per anchor side, oriented from the anchor.

    ``source`` is a table holding the window's flows that touch an anchor (:func:`touching_sql`,
    :func:`keep_touching`): one hash join against the anchors per side and family.
    """
    return "\nUNION ALL\n".join(_side(anchors, s, fam, source, d) for fam in families for s in (True, False))


def _families(con: HuntContext, anchors: str) -> tuple[int, ...]:
    """The address families (4, 6) the anchors hold; IPv4 alone for none."""
    return tuple(
        fam
        for fam in (4, 6)
        if con.sql(f"SELECT count(*) FROM {anchors} WHERE v{fam} IS NOT NULL").fetchall()[0][0]  # type: ignore[index]
    ) or (4,)


_PIVOT_COLUMNS = (
    "src_addr_v4, dst_addr_v4, src_addr_v6, dst_addr_v6, src_port, dst_port, protocol, tcp_flags, packets, bytes, "
    'rev_packets, rev_bytes, rev_tcp_flags, sampling_rate, start, "end", conn_state, history'
)


@contextmanager
def touching(
    con: HuntContext,
    anchors: str,
    since_ms: int,
    until_ms: int,
    families: tuple[int, ...],
    via_index: bool = False,
) -> Iterator[str]:
    """The window's flows with an anchor on either side, each once, as a query.

    On the store, one scan: a flow's columns are decoded once for both sides, where a join per
    side decodes them once per side (DuckDB decodes every projected column of a row group
    whatever the join keeps, so for the seed pass, few matching rows of eighteen columns, one
    scan is the cheaper plan).

    ``via_index``: looked up in the two ordered copies of the address index instead (see
    :meth:`HuntContext.use_index`); valid inside the ``with`` block.
    """
    if via_index:
        with _from_index(con, anchors, since_ms, until_ms, families, _PIVOT_COLUMNS, touching=True) as rels:
            yield f"SELECT * FROM {rels['both']}"
        return
    win = _window_sql(since_ms, until_ms, con.d)
    yield f"SELECT {_PIVOT_COLUMNS} FROM flows WHERE {win} AND ({_anchor_terms(anchors, families, ('src', 'dst'))})"


def create_pairs(
    con: HuntContext,
    anchors: str,
    out: str,
    since_ms: int,
    until_ms: int,
    keep_flows: bool = False,
    services: bool = True,
    full: bool = True,
    source: str | None = None,
) -> None:
    """Create TEMP TABLE ``out`` (one row per anchor and peer) and, if asked, ``out_flows`` and
    ``out_services``. ``full=False`` keeps only what the fan-out measures and the expansion read
    (established, initiator), which is what the passes over the whole store need.

    ``anchors`` is a table (key VARCHAR, v4 UINTEGER, v6 BLOB, id UINTEGER). ``source`` is a table
    already holding every flow of the window that touches an anchor (:func:`keep_touching`
    over a superset of these anchors); without it the store is scanned.
    """
    fams = _families(con, anchors)
    # one scan of the store (every column decoded once), then the two sides over the matches
    touched = source or f"{out}_touching"
    if not source:
        with touching(con, anchors, since_ms, until_ms, fams, via_index=index_pays(con, anchors)) as sql:
            con.create_table(touched, sql)
    d = con.d
    src = flows_sql(anchors, touched, fams, d)
    if keep_flows:
        con.create_table(f"{out}_flows", f"SELECT *, {S.flow_init_sql()} AS init FROM ({src})")
        flows_rel = f"{out}_flows"
    else:
        flows_rel = f"(SELECT *, {S.flow_init_sql()} AS init FROM ({src}))"
    con.create_table(out, pair_sql(flows_rel, d) if full else pair_lite_sql(flows_rel, d))
    if services:
        con.create_table(f"{out}_services", services_sql(flows_rel, d))
    if not source:
        con.drop_table(touched)


def pair_sql(flows_rel: str, d: Dialect = DUCKDB) -> str:
    nf = "proto = 6 AND zs IS NULL"
    return f"""
    WITH g AS (
      SELECT anchor, peer_v4, peer_v6,
        count(*) AS flows,
        count(*) FILTER (WHERE a_pk > 0) AS a_flows, count(*) FILTER (WHERE p_pk > 0) AS p_flows,
        sum(a_pk)::{d.ubigint} AS a_packets, sum(a_by)::{d.ubigint} AS a_bytes,
        sum(p_pk)::{d.ubigint} AS p_packets, sum(p_by)::{d.ubigint} AS p_bytes,
        sum(a_pk * sr)::{d.ubigint} AS a_packets_est, sum(a_by * sr)::{d.ubigint} AS a_bytes_est,
        sum(p_pk * sr)::{d.ubigint} AS p_packets_est, sum(p_by * sr)::{d.ubigint} AS p_bytes_est,
        coalesce(bit_or(a_fl), 0)::INTEGER AS a_flags, coalesce(bit_or(p_fl), 0)::INTEGER AS p_flags,
        coalesce(bit_or(a_fl) FILTER (WHERE {nf}), 0)::INTEGER AS nf_a_flags,
        coalesce(bit_or(p_fl) FILTER (WHERE {nf}), 0)::INTEGER AS nf_p_flags,
        coalesce(max(greatest(a_by / nullif(a_pk, 0), p_by / nullif(p_pk, 0))) FILTER (WHERE {nf}), 0) AS nf_max_bpp,
        count(*) FILTER (WHERE {S.zeek_established_sql()}) AS z_est,
        count(*) FILTER (WHERE zs = 'REJ') AS z_rej,
        count(*) FILTER (WHERE {S.zeek_attempt_sql()}) AS z_att,
        count(*) FILTER (WHERE {nf} AND ({S.rst_answer_sql("a")} OR {S.rst_answer_sql("p")})) AS nf_rst,
        count(*) FILTER (WHERE {nf} AND ({S.syn_only_sql("a_fl")} OR {S.syn_only_sql("p_fl")})) AS nf_syn,
        count(*) FILTER (WHERE (zs IS NULL AND {S.syn_only_sql("a_fl")}) OR (zs IS NOT NULL AND a_src)) AS a_syn,
        count(*) FILTER (WHERE (zs IS NULL AND {S.syn_only_sql("p_fl")}) OR (zs IS NOT NULL AND NOT a_src)) AS p_syn,
        count(*) FILTER (WHERE init = 'a') AS a_init, count(*) FILTER (WHERE init = 'p') AS p_init,
        count(*) FILTER (WHERE proto = 6) AS tcp_flows,
        count(DISTINCT (proto::BIGINT << 32) | (a_port::BIGINT << 16) | p_port::BIGINT) AS conns,
        count(*) FILTER (WHERE sr = 1 AND a_pk + p_pk > 0) AS u_flows, coalesce(sum(a_pk + p_pk) FILTER (WHERE sr = 1), 0)::{d.ubigint} AS u_packets,
        count(DISTINCT (proto::BIGINT << 32) | (a_port::BIGINT << 16) | p_port::BIGINT) FILTER (WHERE sr = 1) AS u_conns,
        min(ts) AS first_ms, max(te) AS last_ms,
        count(DISTINCT {d.idiv("ts", DAY_MS)}) AS active_days,
        max(sr) AS max_sampling_rate
      FROM {flows_rel}
      GROUP BY anchor, peer_v4, peer_v6
    ), e AS (
      SELECT *, {d.ipkey("peer_v4", "peer_v6")} AS peer,
        {S.established_sql()} AS established
      FROM g
    )
    SELECT *,
      CASE WHEN established THEN 'established'
           WHEN z_rej + nf_rst > 0 THEN 'rejected'
           WHEN z_att + nf_syn > 0 THEN 'attempt'
           WHEN a_flows > 0 AND p_flows > 0 THEN 'bidirectional'
           ELSE 'one-way' END AS session,
      z_rej + nf_rst AS rejected_flows,
      z_att + z_rej + nf_syn AS attempt_flows,
      {S.pair_initiator_sql()} AS initiator
    FROM e
    """


def create_reach(
    con: HuntContext,
    anchors: str,
    out: str,
    since_ms: int,
    until_ms: int,
    source: str | None = None,
    scan_share: float = 1.0,
) -> None:
    """TEMP TABLE ``out`` (anchor, peer, flows, pk_est, initiator): every distinct peer of each anchor, whole store.

    What the noise rules measure (degree, fan-out, fan-in, who the peers are) needs only the
    address and port columns, so this pass reads seven columns where the session pass reads
    eighteen, one hash join per side (for so few columns that is cheaper than one scan with an
    ``OR`` of two semi-joins). The initiator here is the port rule alone (client on the higher port).

    With ``source`` (a table from :func:`keep_touching` over a superset of these anchors) the
    pass reads it instead of the store; otherwise it looks the anchors up in the address index
    when that costs less than the scan (:func:`index_pays`; ``scan_share``: the part of the window
    the scan reads, when the window is only part of the store's).
    """
    fams = _families(con, anchors)
    win = _window_sql(since_ms, until_ms, con.d)
    indexed = source is None and index_pays(con, anchors, scan_share)
    cols = (
        "src_addr_v4, dst_addr_v4, src_addr_v6, dst_addr_v6, src_port, dst_port, protocol, packets, rev_packets, "
        "sampling_rate"
    )
    with _from_index(con, anchors, since_ms, until_ms, fams, cols, touching=False) if indexed else _none() as rels:
        _reach(con, anchors, out, fams, rels, source, win)


@contextmanager
def _none() -> Iterator[None]:
    yield None


def _reach(
    con: HuntContext,
    anchors: str,
    out: str,
    fams: tuple[int, ...],
    rels: dict[str, str] | None,
    source: str | None,
    win: str,
) -> None:
    ported = "w.protocol IN (6, 17, 132)"
    sides = []
    for fam in fams:
        for a, p in (("src", "dst"), ("dst", "src")):
            if rels:
                rel, where = rels[a], ""
            else:
                rel, where = source or "flows", ("" if source else f" WHERE {win}")
            sides.append(
                f"""SELECT /*+ BROADCAST(an) */ an.key AS anchor, an.id AS anchor_id, w.{p}_addr_v4 AS peer_v4, w.{p}_addr_v6 AS peer_v6,
                       ({ported} AND w.{a}_port > w.{p}_port) AS a_cl, ({ported} AND w.{p}_port > w.{a}_port) AS p_cl,
                       (coalesce(w.packets, 0) + coalesce(w.rev_packets, 0)) * greatest(coalesce(w.sampling_rate, 1), 1) AS pk,
                       (w.protocol::BIGINT << 32) | (coalesce(w.{a}_port, 0)::BIGINT << 16) | coalesce(w.{p}_port, 0)::BIGINT AS conn
                FROM {rel} w JOIN {anchors} an ON w.{a}_addr_v{fam} = an.v{fam}"""
                + where
            )
    d = con.d
    con.create_table(
        out,
        f"""WITH g AS (
          SELECT any_value(anchor) AS anchor, peer_v4, peer_v6, bool_or(a_cl) AS a_cl, bool_or(p_cl) AS p_cl,
            count(*) AS flows, sum(pk)::DOUBLE AS pk_est, count(DISTINCT conn) AS conns
          FROM ({" UNION ALL ".join(sides)}) GROUP BY anchor_id, peer_v4, peer_v6
        )
        SELECT anchor, {d.ipkey("peer_v4", "peer_v6")} AS peer, peer_v4, flows, pk_est, conns, CAST(NULL AS BOOLEAN) AS established,
          CASE WHEN a_cl AND NOT p_cl THEN 'anchor' WHEN p_cl AND NOT a_cl THEN 'peer'
               WHEN a_cl AND p_cl THEN 'mixed' ELSE 'unknown' END AS initiator
        FROM g""",
    )


def keep_touching(
    con: HuntContext,
    anchors: str,
    keep: str,
    since_ms: int,
    until_ms: int,
    keep_max: int,
) -> bool:
    """TEMP TABLE ``keep``: every column the session pass reads, for the window's flows that touch
    an anchor, in one scan. A scan that finds more than ``keep_max`` flows stops there and drops
    what it kept (so what trying costs is bounded); returns whether ``keep`` holds them all.
    With the address index nothing is kept (False).
    """
    if keep_max < 0:
        return False
    fams = _families(con, anchors)
    if con.plan is not None:
        # with the index, the hosts that survive the noise rules get their session pass as a
        # lookup of their own flows; reading every column of all the candidates' flows now,
        # batch by batch, would cost more than that (docs/performance.md, "Address index")
        return False
    with touching(con, anchors, since_ms, until_ms, fams) as sql:
        con.create_table(keep, f"{sql} LIMIT {int(keep_max) + 1}")
    if con.sql(f"SELECT count(*) FROM {keep}").fetchall()[0][0] > keep_max:  # type: ignore[index]
        con.drop_table(keep)
        return False
    return True


def pair_lite_sql(flows_rel: str, d: Dialect = DUCKDB) -> str:
    """The pair table for the whole-store passes: the same session rules, fewer columns.

    Per-row evidence is computed once as booleans, then ORed and summed per pair, which keeps a
    pass over most of the store (busy candidates) close to the cost of a plain GROUP BY.
    """
    bare = "(CASE WHEN peer_v4 IS NOT NULL THEN 80 ELSE 100 END)"
    return f"""
    WITH r AS (
      SELECT anchor, anchor_id, peer_v4, peer_v6,
        CASE WHEN proto = 6 AND zs IS NULL THEN a_fl ELSE 0 END AS nfa,
        CASE WHEN proto = 6 AND zs IS NULL THEN p_fl ELSE 0 END AS nfp,
        (proto = 6 AND zs IS NULL AND (a_by > a_pk * {bare} OR p_by > p_pk * {bare})) AS big,
        CASE WHEN zs IS NULL THEN FALSE ELSE {S.zeek_established_sql()} END AS zest,
        CASE WHEN zs IS NULL THEN {S.syn_only_sql("a_fl")} ELSE a_src END AS asyn,
        CASE WHEN zs IS NULL THEN {S.syn_only_sql("p_fl")} ELSE NOT a_src END AS psyn,
        init, a_pk, p_pk, sr, zs IS NOT NULL AS bi,
        (proto::BIGINT << 32) | (a_port::BIGINT << 16) | p_port::BIGINT AS conn
      FROM {flows_rel}
    ), g AS (
      SELECT any_value(anchor) AS anchor, peer_v4, peer_v6, count(*) AS flows,
        count(*) FILTER (WHERE a_pk > 0) AS a_flows, count(*) FILTER (WHERE p_pk > 0) AS p_flows,
        sum(a_pk)::{d.ubigint} AS a_packets, sum(p_pk)::{d.ubigint} AS p_packets, max(sr) AS max_sampling_rate,
        count(DISTINCT conn) AS conns, bool_or(bi) AS biflow,
        count(*) FILTER (WHERE sr = 1 AND a_pk + p_pk > 0) AS u_flows, coalesce(sum(a_pk + p_pk) FILTER (WHERE sr = 1), 0)::{d.ubigint} AS u_packets,
        count(DISTINCT conn) FILTER (WHERE sr = 1) AS u_conns,
        bit_or(nfa)::INTEGER AS nf_a_flags, bit_or(nfp)::INTEGER AS nf_p_flags,
        CASE WHEN bool_or(big) THEN 1e9 ELSE 0 END AS nf_max_bpp,
        sum(zest::INTEGER) AS z_est,
        sum(asyn::INTEGER) AS a_syn, sum(psyn::INTEGER) AS p_syn,
        sum((init = 'a')::INTEGER) AS a_init, sum((init = 'p')::INTEGER) AS p_init
      FROM r GROUP BY anchor_id, peer_v4, peer_v6  -- integers hash faster than the anchor strings
    )
    SELECT anchor, {d.ipkey("peer_v4", "peer_v6")} AS peer, flows, a_flows, p_flows, a_packets, p_packets,
      max_sampling_rate, conns, biflow, u_flows, u_packets, u_conns,
      {S.established_sql()} AS established,
      {S.pair_initiator_sql()} AS initiator
    FROM g
    """


def services_sql(flows_rel: str, d: Dialect = DUCKDB) -> str:
    """Per pair: the responder's (proto, port) and which side offered it, with flow counts."""
    return f"""
    SELECT anchor, {d.ipkey("peer_v4", "peer_v6")} AS peer, proto,
           CASE init WHEN 'a' THEN 'peer' ELSE 'anchor' END AS side,
           CASE init WHEN 'a' THEN p_port ELSE a_port END AS port,
           count(*) AS flows
    FROM {flows_rel}
    WHERE init IS NOT NULL
    GROUP BY ALL
    """


def known_counts_sql(
    anchors: str, known: str, since_ms: int, until_ms: int, families: tuple[int, ...], d: Dialect = DUCKDB
) -> str:
    """Per anchor, how many distinct hosts of the table ``known`` it exchanged flows with in the window.

    Both tables are (key, v4, v6, id). The scan keeps only flows whose two ends are both anchors or
    known hosts (two semi-joins on the address columns, few rows out however busy the anchors
    are), then the distinct address pairs are matched to anchors and known hosts.
    """
    win = _window_sql(since_ms, until_ms, d)
    ctes, parts = [], []
    for fam in families:
        u = f"(SELECT v{fam} FROM {anchors} UNION SELECT v{fam} FROM {known})"
        ctes.append(
            f"e{fam} AS (SELECT DISTINCT src_addr_v{fam} AS s, dst_addr_v{fam} AS d FROM flows "
            f"WHERE {win} AND src_addr_v{fam} IN {u} AND dst_addr_v{fam} IN {u})"
        )
        parts.append(
            f"""SELECT an.id AS anchor_id, k.id AS known_id
            FROM (SELECT s AS a, d AS p FROM e{fam} UNION ALL SELECT d, s FROM e{fam}) x
            JOIN {anchors} an ON an.v{fam} = x.a JOIN {known} k ON k.v{fam} = x.p
            WHERE k.key <> an.key"""
        )
    return f"""WITH {", ".join(ctes)}
        SELECT any_value(an.key) AS anchor, count(DISTINCT s.known_id) AS known
        FROM ({" UNION ALL ".join(parts)}) s JOIN {anchors} an ON an.id = s.anchor_id GROUP BY s.anchor_id"""

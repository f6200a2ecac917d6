"""The address index's tables about busy hosts: per host-day peers, and per host and peer what
the hunt's managed-draws rule reads.

Both are computed while the index is built, from one address range of one side's ordered copy at a
time: the range holds every flow of each of its hosts on that side, so a host's figures on a side
are complete in the range that holds it.

* ``hosts.parquet`` (:func:`host_days`): per busy host, UTC day and side, flows and distinct
  peers, fan-out and fan-in. A day's peers are a lower bound of a host's reach over any window
  that holds the day (docs/hunt.md, "Judging the busiest hosts from a bound").
* ``peers.parquet`` (:func:`host_peers`, then :func:`merge_sides`): per host with at least
  ``min_flows`` flows on a side, and per peer: flows, estimated packets, connections (each side's
  distinct connections added), first and last start, who was whose client (``ac``, ``pc``), and
  on how many sides the host has rows. From it the hunt bounds from below how many peers a busy
  host holds sessions of management size with (docs/hunt.md, "Managed draws from a bound"),
  and takes the reach of a busy host with rows on both sides whose flows all start in its window
  (the reach pass's figures but connections), without reading its flows.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from . import DAY_MS

__all__ = ["host_days", "host_peers", "merge_sides", "HOST_PEERS_SCHEMA"]

HOST_PEERS_SCHEMA = pa.schema(
    [
        ("v4", pa.uint32()),
        ("v6", pa.binary()),
        ("side", pa.string()),
        ("p4", pa.uint32()),
        ("p6", pa.binary()),
        ("flows", pa.uint64()),
        ("pk", pa.float64()),
        ("conns", pa.uint64()),
        ("first_ms", pa.int64()),
        ("last_ms", pa.int64()),
        ("ac", pa.bool_()),
        ("pc", pa.bool_()),
    ]
)


def _con(t: pa.Table, columns: list[str]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET enable_progress_bar = false")
    con.register("t", t.select(columns))
    return con


def host_days(t: pa.Table, side: str, min_flows: int) -> pa.Table:
    """Per host (on ``side``), UTC day and side, for host-days with at least ``min_flows`` flows:
    flows, distinct peers, and of those the peers it was the client of (``fan_out``, by the port
    rule of the reach pass: the client has the higher port) and the peers that were its clients
    (``fan_in``), each counted per peer as the reach pass counts them.

    A day's distinct peers on one side are a lower bound of a host's distinct peers over any
    window that holds the whole day: what the hunt's reach rule needs to condemn a busy host
    without reading its flows (docs/index.md).
    """
    a, p = side, ("dst" if side == "src" else "src")
    ported = "protocol IN (6, 17, 132)"
    cols = [
        f"{a}_addr_v4",
        f"{a}_addr_v6",
        f"{p}_addr_v4",
        f"{p}_addr_v6",
        "start",
        f"{a}_port",
        f"{p}_port",
        "protocol",
    ]
    con = _con(t, cols)
    out = con.sql(
        f"""WITH f AS (
              SELECT {a}_addr_v4 AS v4, {a}_addr_v6 AS v6, (epoch_ms(start) // {DAY_MS})::INTEGER AS day,
                     {p}_addr_v4 AS p4, {p}_addr_v6 AS p6,
                     ({ported} AND {a}_port > {p}_port) AS ac, ({ported} AND {p}_port > {a}_port) AS pc
              FROM t WHERE {a}_addr_v4 IS NOT NULL OR {a}_addr_v6 IS NOT NULL),
            busy AS (SELECT v4, v6, day FROM f GROUP BY ALL HAVING count(*) >= {int(min_flows)}),
            pr AS (
              SELECT f.v4, f.v6, f.day, p4, p6, count(*) AS n, bool_or(ac) AS ac, bool_or(pc) AS pc
              FROM f SEMI JOIN busy b ON f.v4 IS NOT DISTINCT FROM b.v4 AND f.v6 IS NOT DISTINCT FROM b.v6
                AND f.day = b.day
              GROUP BY ALL)
            SELECT v4::UINTEGER AS v4, v6::BLOB AS v6, day, '{side}' AS side, sum(n)::UBIGINT AS flows,
                   count(*)::UBIGINT AS peers, count(*) FILTER (WHERE ac AND NOT pc)::UBIGINT AS fan_out,
                   count(*) FILTER (WHERE pc AND NOT ac)::UBIGINT AS fan_in
            FROM pr GROUP BY v4, v6, day ORDER BY v4, v6, day"""
    ).to_arrow_table()
    con.close()
    return out


def host_peers(t: pa.Table, side: str, min_flows: int) -> pa.Table:
    """Per host (on ``side``) with at least ``min_flows`` flows on that side in ``t``, and per
    peer: its flows, packets estimated as the reach pass does (both directions, times the
    record's sampling rate), distinct connections (protocol and the two ports, from the host's
    side), the first and last flow start, and whether the host was the client of the peer in
    some flow (``ac``) and the peer its client (``pc``), by the reach pass's port rule (client on
    the higher port of a TCP, UDP or SCTP flow), in ``HOST_PEERS_SCHEMA``, ordered by host.

    ``t`` must hold every flow of its hosts on ``side`` (one address range of the ordered copy).
    A host with fewer flows on the side has no rows for it: the hunt then knows that fewer than
    ``min_flows`` of its flows are missing from its rows.
    """
    a, p = side, ("dst" if side == "src" else "src")
    ported = "protocol IN (6, 17, 132)"
    cols = [
        f"{a}_addr_v4", f"{a}_addr_v6", f"{p}_addr_v4", f"{p}_addr_v6", "start", f"{a}_port", f"{p}_port",
        "protocol", "packets", "rev_packets", "sampling_rate",
    ]  # fmt: skip
    con = _con(t, cols)
    out = con.sql(
        f"""WITH f AS (
              SELECT {a}_addr_v4 AS v4, {a}_addr_v6 AS v6, {p}_addr_v4 AS p4, {p}_addr_v6 AS p6, start,
                     (coalesce(packets, 0) + coalesce(rev_packets, 0)) * greatest(coalesce(sampling_rate, 1), 1) AS pk,
                     (protocol::BIGINT << 32) | (coalesce({a}_port, 0)::BIGINT << 16) | coalesce({p}_port, 0)::BIGINT AS conn,
                     ({ported} AND {a}_port > {p}_port) AS ac, ({ported} AND {p}_port > {a}_port) AS pc
              FROM t WHERE {a}_addr_v4 IS NOT NULL OR {a}_addr_v6 IS NOT NULL),
            busy AS (SELECT v4, v6 FROM f GROUP BY ALL HAVING count(*) >= {int(min_flows)})
            SELECT f.v4::UINTEGER AS v4, f.v6::BLOB AS v6, '{side}' AS side, p4::UINTEGER AS p4, p6::BLOB AS p6,
                   count(*)::UBIGINT AS flows, sum(pk)::DOUBLE AS pk, count(DISTINCT conn)::UBIGINT AS conns,
                   epoch_ms(min(start)) AS first_ms, epoch_ms(max(start)) AS last_ms,
                   coalesce(bool_or(ac), FALSE) AS ac, coalesce(bool_or(pc), FALSE) AS pc
            FROM f SEMI JOIN busy b ON f.v4 IS NOT DISTINCT FROM b.v4 AND f.v6 IS NOT DISTINCT FROM b.v6
            GROUP BY f.v4, f.v6, p4, p6 ORDER BY v4, v6, p4, p6"""
    ).to_arrow_table()
    con.close()
    return out.cast(HOST_PEERS_SCHEMA)


def merge_sides(src: str, dst: str, memory_limit: str = "1GB") -> int:
    """Write ``dst``: the per-side rows of ``src`` (:func:`host_peers`, both sides) added up per
    host and peer, ordered by host, with ``sides``, the host's sides with rows (1 or 2): with 1,
    fewer than the threshold of its flows are on the other side. ``conns`` is then the sum of the
    two sides' distinct connections (at least the pair's distinct connections; a connection seen
    from both sides counts twice); ``ac`` and ``pc`` are ORed over the sides, as the reach pass ORs
    them over a pair's flows. DuckDB spills beside ``dst`` past ``memory_limit``. Returns
    the rows written."""
    import os

    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{os.path.dirname(os.path.abspath(dst)).replace(chr(39), chr(39) * 2)}'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = true")
    s, d = src.replace("'", "''"), dst.replace("'", "''")
    con.execute(
        f"""COPY (
          WITH p AS (SELECT * FROM read_parquet('{s}')),
          h AS (SELECT v4, v6, count(DISTINCT side)::UTINYINT AS sides FROM p GROUP BY v4, v6)
          SELECT p.v4, p.v6, p4, p6, sum(flows)::UBIGINT AS flows, sum(pk)::DOUBLE AS pk,
                 sum(conns)::UBIGINT AS conns, min(first_ms) AS first_ms, max(last_ms) AS last_ms,
                 any_value(h.sides) AS sides, bool_or(ac) AS ac, bool_or(pc) AS pc
          FROM p JOIN h ON p.v4 IS NOT DISTINCT FROM h.v4 AND p.v6 IS NOT DISTINCT FROM h.v6
          GROUP BY p.v4, p.v6, p4, p6 ORDER BY p.v4, p.v6, p4, p6
        ) TO '{d}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 65536)"""
    )
    n = con.sql(f"SELECT count(*) FROM read_parquet('{d}')").fetchall()[0][0]
    con.close()
    return int(n)

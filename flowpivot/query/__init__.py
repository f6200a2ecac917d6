"""Queries over the store in nfdump's habits: filter expressions, top-N statistics, line output.

    parse_filter(expr)   -> a dialect-free tree (flowpivot.query.ast)
    compile_filter(expr) -> (sql_where, params) for DuckDB; render(tree, dialect) for another engine
    top_n(con, spec)     -> nfdump -s FIELD/ORDER -n N
    select_flows(store, tree, since=, until=, limit=) -> the matching flows in store form

See docs/flows.md.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pyarrow as pa

from ..schema import STORE_SCHEMA
from ..store import Store, filter_sql
from .asn import AsnTable
from .ast import AddrIn, And, Const, Node, NumCmp
from .grammar import FilterError, parse_filter
from .sql import DUCKDB, Dialect, compile_filter, render
from .stats import STAT_FIELDS, STAT_ORDERS, StatSpec, parse_stat, parse_stats, top_n

__all__ = [
    "AsnTable",
    "Dialect",
    "DUCKDB",
    "FilterError",
    "STAT_FIELDS",
    "STAT_ORDERS",
    "StatSpec",
    "compile_filter",
    "flows_filter",
    "parse_filter",
    "parse_stat",
    "parse_stats",
    "render",
    "select_flows",
    "where_sql",
    "top_n",
]


def flows_filter(
    expr: str | None = None, ips: list[str] | None = None, port: int | None = None, asn: AsnTable | None = None
) -> Node:
    """The tree for ``flows -f EXPR --ip A --ip B --port P``: the expression AND (any of the
    addresses/CIDRs, on either side) AND the port on either side."""
    parts: list[Node] = []
    if expr:
        parts.append(parse_filter(expr, asn.ranges if asn is not None else None))
    if ips:
        ranges = []
        for text in ips:
            try:
                net = ipaddress.ip_network(text.strip(), strict=False)
            except ValueError:
                raise FilterError(f"--ip {text!r} is not an address or CIDR") from None
            ranges.append((net.version, int(net.network_address), int(net.broadcast_address)))
        parts.append(AddrIn(("src_addr", "dst_addr"), tuple(ranges)))
    if port is not None:
        if not 0 <= port <= 0xFFFF:
            raise FilterError(f"--port {port} is outside 0..65535")
        parts.append(NumCmp(("src_port", "dst_port"), "=", port))
    if not parts:
        return Const(True)
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def where_sql(node: Node, since: int | None = None, until: int | None = None) -> tuple[str, list[Any]]:
    """The tree and a time window as one DuckDB ``WHERE`` clause and its parameters."""
    sql, params = render(node, DUCKDB)
    return f"{filter_sql(since=since, until=until)} AND {sql}", params


def select_flows(
    store: Store, node: Node, since: int | None = None, until: int | None = None, limit: int | None = None
) -> pa.Table:
    """Flows in store form matching the tree and the time window, oldest first."""
    where, params = where_sql(node, since, until)
    con = store.connect()
    sql = f"SELECT * FROM flows WHERE {where} ORDER BY start"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return con.sql(sql, params=params or None).to_arrow_table().cast(STORE_SCHEMA)

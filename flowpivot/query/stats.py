"""Top-N statistics like ``nfdump -s ip/bytes -n 10``: flows, packets and bytes per address, port,
protocol, AS or exporter, ordered by one of them.

``ip``, ``port`` and ``as`` count both sides of a flow, each side once (a flow from a host to itself
counts twice), as nfdump does. Ordered by packets or bytes, a biflow's packets and bytes are
those of both directions (``packets + rev_packets``); ordered by flows, those of the exported
direction only, as nfdump 1.7 counts. Counts are as exported: never scaled by the sampling rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from ..schema import IP6, ip_strings
from .asn import AsnTable
from .sql import DUCKDB, Dialect

__all__ = ["STAT_FIELDS", "STAT_ORDERS", "StatSpec", "parse_stat", "parse_stats", "top_n", "top_n_sql", "top_n_rows"]

#: -s names (nfdump's, plus a few plain words) -> (kind, sides)
STAT_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "srcip": ("ip", ("src_addr",)),
    "dstip": ("ip", ("dst_addr",)),
    "ip": ("ip", ("src_addr", "dst_addr")),
    "srcport": ("int", ("src_port",)),
    "dstport": ("int", ("dst_port",)),
    "port": ("int", ("src_port", "dst_port")),
    "proto": ("int", ("protocol",)),
    "srcas": ("as", ("src",)),
    "dstas": ("as", ("dst",)),
    "as": ("as", ("src", "dst")),
    "router": ("str", ("exporter",)),
    "exporter": ("str", ("exporter",)),
}
STAT_ORDERS = ("flows", "packets", "bytes")
_TITLES = {
    "srcip": "Src IP Addr", "dstip": "Dst IP Addr", "ip": "IP Addr", "srcport": "Src Port", "dstport": "Dst Port",
    "port": "Port", "proto": "Protocol", "srcas": "Src AS", "dstas": "Dst AS", "as": "AS", "router": "Exporter",
    "exporter": "Exporter",
}  # fmt: skip


@dataclass(frozen=True)
class StatSpec:
    field: str
    order: str = "flows"

    @property
    def title(self) -> str:
        return _TITLES[self.field]


def parse_stats(text: str) -> list[StatSpec]:
    """``FIELD[/ORDER[/ORDER...]]`` (nfdump's ``-s``), e.g. ``srcip/bytes`` or ``ip/flows/bytes`` (one
    statistic per order). ValueError on an unknown field or order."""
    field, *orders = text.strip().lower().split("/")
    if field not in STAT_FIELDS:
        raise ValueError(f"-s {text!r}: unknown statistic {field!r} (one of {', '.join(STAT_FIELDS)})")
    for order in orders:
        if order not in STAT_ORDERS:
            raise ValueError(f"-s {text!r}: order by {', '.join(STAT_ORDERS)}, not {order!r}")
    return [StatSpec(field, order) for order in dict.fromkeys(orders or ["flows"])]


def parse_stat(text: str) -> StatSpec:
    """One ``FIELD[/ORDER]``, e.g. ``srcip/bytes``. ValueError on an unknown one or on several orders."""
    specs = parse_stats(text)
    if len(specs) != 1:
        raise ValueError(f"-s {text!r}: give one order")
    return specs[0]


def _volume(spec: StatSpec) -> str:
    """Packets and bytes of a flow for a statistic. Ordered by packets or bytes, a biflow counts both
    directions (``packets + rev_packets``), ordered by flows only the exported one: nfdump 1.7's
    counting, which flowpivot's tests hold it to."""
    if spec.order == "flows":
        return "packets, bytes"
    return "packets + coalesce(rev_packets, 0) AS packets, bytes + coalesce(rev_bytes, 0) AS bytes"


def _keys_select(spec: StatSpec, asn: AsnTable | None, d: Dialect = DUCKDB) -> tuple[str, list[str]]:
    """(the SELECT list that gives one row per side of a flow, the key column names). Two sides
    are one scan (:meth:`Dialect.sides`: DuckDB unnests lists of one length in step)."""
    kind, sides = STAT_FIELDS[spec.field]
    common = f"{d.q('start')}, {d.q('end')}, {_volume(spec)}"
    if kind == "ip" or (kind == "as" and asn is not None):
        addr = sides if kind == "ip" else tuple(f"{s}_addr" for s in sides)
        keys = {"k4": [d.q(f"{c}_v4") for c in addr], "k6": [d.q(f"{c}_v6") for c in addr]}
    elif kind == "as":
        keys = {"k": [f"coalesce({s}_as, 0)" for s in sides]}
    else:
        keys = {"k": [d.q(c) for c in sides]}
    return f"{d.sides(keys)}, {common}", list(keys)


def top_n_sql(
    spec: StatSpec, where: str = "TRUE", n: int = 10, asn: AsnTable | None = None, dialect: Dialect = DUCKDB
) -> tuple[str, str]:
    """(the grouped query, the totals query) of a statistic over ``flows WHERE where``, in ``dialect``."""
    d = dialect
    select, keys = _keys_select(spec, asn, d)
    regroup = STAT_FIELDS[spec.field][0] == "as" and asn is not None
    limit = f" LIMIT {int(n)}" if n and not regroup else ""
    key_list = ", ".join(keys)
    order_keys = ", ".join(f"{k} ASC NULLS LAST" for k in keys)  # spelled out: Spark puts NULLs first
    first, last = d.ms(f"min({d.q('start')})"), d.ms(f"max({d.q('end')})")
    sql = (
        f"SELECT {key_list}, {first} AS {d.q('first')}, {last} AS {d.q('last')}, count(*) AS flows,"
        f" CAST(coalesce(sum(packets), 0) AS {d.uint64}) AS packets,"
        f" CAST(coalesce(sum(bytes), 0) AS {d.uint64}) AS bytes"
        f" FROM (SELECT {select} FROM flows WHERE {where}) AS sides"
        f" GROUP BY {key_list} ORDER BY {spec.order} DESC, {order_keys}{limit}"
    )
    # a separate aggregate: a window sum over the groups stops DuckDB's top-N (3x slower at 1 M groups)
    totals = (
        f"SELECT count(*), coalesce(sum(packets), 0), coalesce(sum(bytes), 0) FROM (SELECT {_volume(spec)}"
        f" FROM flows WHERE {where}) AS v"
    )
    return sql, totals


def top_n(
    con: duckdb.DuckDBPyConnection,
    spec: StatSpec,
    where: str = "TRUE",
    params: list[Any] | None = None,
    n: int = 10,
    asn: AsnTable | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The top ``n`` (0 = all) values of ``spec.field`` over ``flows WHERE where``, and the totals.

    ``con`` has a ``flows`` view (:meth:`flowpivot.store.Store.connect`). With ``asn``, the AS
    statistics look the addresses up in the database instead of reading the exporter's AS fields.
    Each row: ``value``, ``first`` and ``last`` (ms), ``flows``, ``packets``, ``bytes``.
    The same on Spark: :func:`flowpivot.query.spark.top_n`.
    """
    sql, totals_sql = top_n_sql(spec, where, n, asn, DUCKDB)
    t = con.sql(sql, params=params or None).to_arrow_table()
    tot = con.sql(totals_sql, params=params or None).fetchall()[0]
    return top_n_rows(t, tot, spec, n, asn)


def top_n_rows(
    t: pa.Table, tot: tuple[Any, ...], spec: StatSpec, n: int = 10, asn: AsnTable | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows and totals of :func:`top_n` from the results of :func:`top_n_sql` (any engine's,
    as Arrow: ``k4`` an unsigned 32-bit or 64-bit integer, ``k6`` 16-byte binary)."""
    totals = {"flows": int(tot[0]), "packets": int(tot[1]), "bytes": int(tot[2])}
    keys = [c for c in t.column_names if c in ("k", "k4", "k6")]
    regroup = STAT_FIELDS[spec.field][0] == "as" and asn is not None
    if keys == ["k4", "k6"]:
        t = t.set_column(t.schema.get_field_index("k4"), "k4", t.column("k4").cast(pa.uint32()))
        if t.schema.field("k6").type != IP6:
            t = t.set_column(t.schema.get_field_index("k6"), "k6", pa.array(t.column("k6").to_pylist(), IP6))
        if regroup:
            assert asn is not None
            t = _to_as(t, asn)
            value = t.column("k")
        else:
            value = ip_strings(t.column("k4"), t.column("k6"))
    else:
        value = t.column("k")
    rows = []
    for v, r in zip(
        value.to_pylist(), t.select(["first", "last", "flows", "packets", "bytes"]).to_pylist(), strict=True
    ):
        rows.append({"value": v, **{k: int(x) for k, x in r.items()}})
    if regroup:
        rows.sort(key=lambda r: (-r[spec.order], r["value"]))
        rows = rows[: n or None]
    return rows, totals


def _to_as(t: pa.Table, asn: AsnTable) -> pa.Table:
    """Per-address rows -> per-ASN rows (ASN 0: not in the database)."""
    k4 = t.column("k4").combine_chunks()
    k6 = t.column("k6").combine_chunks()
    out = np.zeros(t.num_rows, np.uint32)
    i4 = np.flatnonzero(k4.is_valid().to_numpy(zero_copy_only=False))
    out[i4] = asn.lookup4(k4.take(pa.array(i4)).to_numpy(zero_copy_only=False))
    i6 = np.flatnonzero(k6.is_valid().to_numpy(zero_copy_only=False))
    out[i6] = asn.lookup6(k6.take(pa.array(i6)).to_pylist())
    per = pa.table(
        {
            "k": out,
            "first": t["first"],
            "last": t["last"],
            "flows": t["flows"],
            "packets": t["packets"],
            "bytes": t["bytes"],
        }
    )
    g = per.group_by("k").aggregate(
        [("first", "min"), ("last", "max"), ("flows", "sum"), ("packets", "sum"), ("bytes", "sum")]
    )
    return pa.table({"k": g["k"], **{c: g[f"{c}_{a}"] for c, a in (("first", "min"), ("last", "max"), ("flows", "sum"),
                                                                    ("packets", "sum"), ("bytes", "sum"))}})  # fmt: skip

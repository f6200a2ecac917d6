"""Render a filter tree as a SQL ``WHERE`` clause over the store's columns.

Integers are written into the SQL (the parser made and range-checked them, and literals let
DuckDB prune Parquet row groups by their statistics); text comes as ``?`` parameters. Everything
that is particular to one engine is in :class:`Dialect`; :data:`DUCKDB` is the one flowpivot runs.

Missing values read as 0, as nfdump reads a field the record does not carry: a number test that
0 passes (``src as 0``, ``port < 1024``) also passes NULL, and ``not`` is ``(x) IS NOT TRUE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ast import AddrIn, And, Const, Duration, Family, FlagsAll, FlagsNone, Node, Not, NumCmp, NumIn, Or, StrEq
from .grammar import _PY_OPS, AsnResolver, parse_filter

__all__ = ["Dialect", "DUCKDB", "render", "compile_filter"]


@dataclass(frozen=True)
class Dialect:
    """What differs between engines: how to write a 16-byte value and a flow's duration in ms."""

    name: str
    blob_template: str  # a 16-byte IPv6 address from its hex text
    duration_ms: str  # end - start in milliseconds

    def blob(self, value: int) -> str:
        return self.blob_template.format(hex=value.to_bytes(16, "big").hex())


DUCKDB = Dialect("duckdb", "from_hex('{hex}')", '(epoch_ms("end") - epoch_ms("start"))')


def _q(column: str) -> str:
    return f'"{column}"'


def _join(parts: list[str], op: str) -> str:
    if len(parts) == 1:
        return parts[0]
    return "(" + f" {op} ".join(parts) + ")"


def _or_null(sql: str, column: str, zero_matches: bool) -> str:
    """A missing number reads as 0, as in nfdump: where 0 passes the test, so does NULL."""
    return f"({sql} OR {_q(column)} IS NULL)" if zero_matches else sql


class _Renderer:
    def __init__(self, dialect: Dialect):
        self.d = dialect
        self.params: list[Any] = []

    def node(self, n: Node) -> str:
        if isinstance(n, And):
            return _join([self.node(i) for i in n.items], "AND")
        if isinstance(n, Or):
            return _join([self.node(i) for i in n.items], "OR")
        if isinstance(n, Not):
            return f"(({self.node(n.item)}) IS NOT TRUE)"
        if isinstance(n, Const):
            return "TRUE" if n.value else "FALSE"
        if isinstance(n, Family):
            col = "_v4" if n.version == 4 else "_v6"
            return f"({_q('src_addr' + col)} IS NOT NULL AND {_q('dst_addr' + col)} IS NOT NULL)"
        if isinstance(n, AddrIn):
            return _join([self.addr(side, n.ranges) for side in n.sides], "AND" if n.every else "OR")
        if isinstance(n, NumCmp):
            zero = _PY_OPS[n.op](0, n.value)
            return _join(
                [_or_null(f"{_q(s)} {n.op} {int(n.value)}", s, zero) for s in n.sides], "AND" if n.every else "OR"
            )
        if isinstance(n, NumIn):
            zero = any(lo <= 0 <= hi for lo, hi in n.ranges)
            return _join([_or_null(self.num_in(s, n.ranges), s, zero) for s in n.sides], "AND" if n.every else "OR")
        if isinstance(n, FlagsAll):
            return f"({_q('tcp_flags')} & {int(n.mask)}) = {int(n.mask)}"
        if isinstance(n, FlagsNone):
            return f"(coalesce({_q('tcp_flags')}, 0) & {int(n.mask)}) = 0"
        if isinstance(n, StrEq):
            self.params.extend(n.values)
            return f"{_q(n.column)} IN ({', '.join('?' for _ in n.values)})"
        if isinstance(n, Duration):
            return f"{self.d.duration_ms} {n.op} {int(n.value)}"
        raise TypeError(f"cannot render {n!r}")

    def addr(self, side: str, ranges: tuple[tuple[int, int, int], ...]) -> str:
        parts = []
        v4 = [(lo, hi) for v, lo, hi in ranges if v == 4]
        v6 = [(lo, hi) for v, lo, hi in ranges if v == 6]
        if v4:
            parts.append(self.num_in(f"{side}_v4", tuple(v4)))
        for lo, hi in v6:
            col = _q(f"{side}_v6")
            parts.append(
                f"{col} = {self.d.blob(lo)}" if lo == hi else f"{col} BETWEEN {self.d.blob(lo)} AND {self.d.blob(hi)}"
            )
        return _join(parts, "OR")

    @staticmethod
    def num_in(column: str, ranges: tuple[tuple[int, int], ...]) -> str:
        col = _q(column)
        singles = sorted({lo for lo, hi in ranges if lo == hi})
        parts = [f"{col} BETWEEN {int(lo)} AND {int(hi)}" for lo, hi in ranges if lo != hi]
        if len(singles) == 1:
            parts.append(f"{col} = {singles[0]}")
        elif singles:
            parts.append(f"{col} IN ({', '.join(str(int(v)) for v in singles)})")
        return _join(parts, "OR")


def render(node: Node, dialect: Dialect = DUCKDB) -> tuple[str, list[Any]]:
    """A filter tree -> ``(sql_where, params)`` for ``dialect``."""
    r = _Renderer(dialect)
    return r.node(node), r.params


def compile_filter(expr: str, asn: AsnResolver | None = None, dialect: Dialect = DUCKDB) -> tuple[str, list[Any]]:
    """An nfdump filter expression -> ``(sql_where, params)``. Raises :class:`FilterError` on a bad one.

    ``asn``: resolve ``as N`` through an ASN database (:func:`flowpivot.query.asn_resolver`)
    instead of comparing the AS fields the exporter sent.
    """
    return render(parse_filter(expr, asn), dialect)

"""Render a filter tree as a SQL ``WHERE`` clause over the store's columns.

Integers are written into the SQL (the parser made and range-checked them, and literals let
DuckDB prune Parquet row groups by their statistics); text comes as ``?`` parameters. Everything
that is particular to one engine is in :class:`Dialect`: :data:`DUCKDB`, the embedded default, and
:data:`SPARK` (Spark SQL, ``--engine spark``). The grammar and the tree are one; only these helpers
differ: how a column name is quoted, a 16-byte literal, a time and a duration in milliseconds, the
unsigned 64-bit type, and how one scan yields both sides of a flow (``top_n``).

Missing values read as 0, as nfdump reads a field the record does not carry: a number test that
0 passes (``src as 0``, ``port < 1024``) also passes NULL, and ``not`` is ``(x) IS NOT TRUE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine import DUCKDB as ENGINE_DUCKDB
from ..engine import SPARK as ENGINE_SPARK
from ..engine import Dialect as EngineDialect
from .ast import AddrIn, And, Const, Duration, Family, FlagsAll, FlagsNone, Node, Not, NumCmp, NumIn, Or, StrEq
from .grammar import _PY_OPS, AsnResolver, parse_filter

__all__ = ["Dialect", "DUCKDB", "SPARK", "render", "compile_filter", "time_window"]


@dataclass(frozen=True)
class Dialect:
    """What differs between engines for a filter; everything else in the SQL is written once.
    Times and the unsigned type come from the hunt's :class:`flowpivot.engine.Dialect` of the same
    name, so that the filters and the hunt's stages spell them one way."""

    name: str
    blob_template: str  # a 16-byte IPv6 address from its hex text
    duration_template: str = ""  # end - start in milliseconds; "" = from the engine's time helper
    quote_char: str = '"'  # around a column name ("end" is a keyword in both)

    @property
    def engine(self) -> EngineDialect:
        return ENGINE_SPARK if self.name == "spark" else ENGINE_DUCKDB

    def blob(self, value: int) -> str:
        return self.blob_template.format(hex=value.to_bytes(16, "big").hex())

    def q(self, column: str) -> str:
        return f"{self.quote_char}{column}{self.quote_char}"

    def ms(self, expr: str) -> str:
        """A timestamp -> ms since 1970."""
        return self.engine.epoch_ms(expr)

    def ts(self, ms: int) -> str:
        """ms since 1970 -> a timestamp literal."""
        return self.engine.ts_ms(ms)

    @property
    def uint64(self) -> str:
        """The type packets and bytes sums are cast to."""
        return self.engine.ubigint

    @property
    def duration_ms(self) -> str:
        """end - start in milliseconds."""
        return self.duration_template or f"({self.ms(self.q('end'))} - {self.ms(self.q('start'))})"

    def sides(self, keys: dict[str, list[str]]) -> str:
        """A SELECT-list fragment that turns one flow into one row per side: ``keys`` maps each
        output column to its expression per side (all lists of one length, taken in step)."""
        if all(len(v) == 1 for v in keys.values()):
            return ", ".join(f"{v[0]} AS {k}" for k, v in keys.items())
        if self.engine.spark:  # one generator per SELECT: a struct per side, inlined
            n = len(next(iter(keys.values())))
            structs = ["named_struct(" + ", ".join(f"'{k}', {v[i]}" for k, v in keys.items()) + ")" for i in range(n)]
            return f"inline(array({', '.join(structs)}))"
        return ", ".join(f"unnest([{', '.join(v)}]) AS {k}" for k, v in keys.items())


DUCKDB = Dialect("duckdb", "from_hex('{hex}')")
#: Spark SQL: backquoted names (any session; flowpivot's own also reads "end"), X'..' literals
SPARK = Dialect("spark", "X'{hex}'", quote_char="`")


def time_window(since: int | None = None, until: int | None = None, dialect: Dialect = DUCKDB) -> str:
    """Flows that end at or after ``since`` and start before ``until`` (ms), as SQL."""
    conds = ["TRUE"]
    if since is not None:
        conds.append(f"{dialect.q('end')} >= {dialect.ts(since)}")
    if until is not None:
        conds.append(f"{dialect.q('start')} < {dialect.ts(until)}")
    return " AND ".join(conds)


def _join(parts: list[str], op: str) -> str:
    if len(parts) == 1:
        return parts[0]
    return "(" + f" {op} ".join(parts) + ")"


def _or_null(sql: str, column: str, zero_matches: bool) -> str:
    """A missing number reads as 0, as in nfdump: where 0 passes the test, so does NULL."""
    return f"({sql} OR {column} IS NULL)" if zero_matches else sql


class _Renderer:
    def __init__(self, dialect: Dialect):
        self.d = dialect
        self.params: list[Any] = []

    def _q(self, column: str) -> str:
        return self.d.q(column)

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
            return f"({self._q('src_addr' + col)} IS NOT NULL AND {self._q('dst_addr' + col)} IS NOT NULL)"
        if isinstance(n, AddrIn):
            return _join([self.addr(side, n.ranges) for side in n.sides], "AND" if n.every else "OR")
        if isinstance(n, NumCmp):
            zero = _PY_OPS[n.op](0, n.value)
            return _join(
                [_or_null(f"{self._q(s)} {n.op} {int(n.value)}", self._q(s), zero) for s in n.sides],
                "AND" if n.every else "OR",
            )
        if isinstance(n, NumIn):
            zero = any(lo <= 0 <= hi for lo, hi in n.ranges)
            return _join(
                [_or_null(self.num_in(s, n.ranges), self._q(s), zero) for s in n.sides], "AND" if n.every else "OR"
            )
        if isinstance(n, FlagsAll):
            return f"({self._q('tcp_flags')} & {int(n.mask)}) = {int(n.mask)}"
        if isinstance(n, FlagsNone):
            return f"(coalesce({self._q('tcp_flags')}, 0) & {int(n.mask)}) = 0"
        if isinstance(n, StrEq):
            self.params.extend(n.values)
            return f"{self._q(n.column)} IN ({', '.join('?' for _ in n.values)})"
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
            col = self._q(f"{side}_v6")
            parts.append(
                f"{col} = {self.d.blob(lo)}" if lo == hi else f"{col} BETWEEN {self.d.blob(lo)} AND {self.d.blob(hi)}"
            )
        return _join(parts, "OR")

    def num_in(self, column: str, ranges: tuple[tuple[int, int], ...]) -> str:
        col = self._q(column)
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

"""The filter tree: what a filter means, free of any SQL dialect.

The parser (:mod:`flowpivot.query.grammar`) builds these nodes; a renderer (:mod:`flowpivot.query.sql`
for DuckDB) turns them into a query. Another engine (Spark, a web API) renders the same tree.

Columns are the canonical field names of :mod:`flowpivot.schema`. ``sides`` holds one or two
columns and ``every`` says how they combine: ``False`` = any of them matches (nfdump's
``port 80``, ``src or dst port 80``), ``True`` = all of them match (``src and dst port 80``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Node", "And", "Or", "Not", "Const", "Family", "AddrIn", "NumCmp", "NumIn", "FlagsAll", "FlagsNone", "StrEq",
    "Duration", "negate",
]  # fmt: skip


class Node:
    """A filter node."""


@dataclass(frozen=True)
class And(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    item: Node


@dataclass(frozen=True)
class Const(Node):
    """``any`` (True) or a filter that can match nothing (False)."""

    value: bool


@dataclass(frozen=True)
class Family(Node):
    """Both addresses of the flow are of this IP version (nfdump ``ipv4``/``inet6``)."""

    version: int


@dataclass(frozen=True)
class AddrIn(Node):
    """An address column lies in one of ``ranges``: ``(version, first, last)`` as integers."""

    sides: tuple[str, ...]
    ranges: tuple[tuple[int, int, int], ...]
    every: bool = False


@dataclass(frozen=True)
class NumCmp(Node):
    """``column op value`` for an integer column; ``op`` is one of = < > <= >=."""

    sides: tuple[str, ...]
    op: str
    value: int
    every: bool = False


@dataclass(frozen=True)
class NumIn(Node):
    """An integer column lies in one of the closed ranges ``(lo, hi)``."""

    sides: tuple[str, ...]
    ranges: tuple[tuple[int, int], ...]
    every: bool = False


@dataclass(frozen=True)
class FlagsAll(Node):
    """Every bit of ``mask`` is set in ``tcp_flags``."""

    mask: int


@dataclass(frozen=True)
class FlagsNone(Node):
    """No bit of ``mask`` is set in ``tcp_flags`` (nfdump's ``not flags LETTERS``)."""

    mask: int


@dataclass(frozen=True)
class StrEq(Node):
    """A text column equals one of ``values``."""

    column: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Duration(Node):
    """``end - start`` (milliseconds) compared with ``value``."""

    op: str
    value: int


def negate(node: Node) -> Node:
    """``not node``, pushed down to the primitives (De Morgan) as nfdump evaluates it.

    nfdump reads ``not flags AFRPU`` as "none of A F R P U set" (its manual's idiom for SYN-only
    flows is ``flags S and not flags AFRPU``), while ``flags AFRPU`` means "all of them set". The
    push-down keeps that reading wherever the negated flags sit, e.g. ``not (flags AP or port 25)``.
    """
    if isinstance(node, Not):
        return node.item
    if isinstance(node, And):
        return Or(tuple(negate(i) for i in node.items))
    if isinstance(node, Or):
        return And(tuple(negate(i) for i in node.items))
    if isinstance(node, Const):
        return Const(not node.value)
    if isinstance(node, FlagsAll):
        return FlagsNone(node.mask)
    if isinstance(node, FlagsNone):
        return FlagsAll(node.mask)
    return Not(node)

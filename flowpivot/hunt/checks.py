"""What a hunt tells its user besides its result: the store it was given, and what looks wrong.

A hunt that ran on nothing must not look like a hunt that found nothing. :func:`require_store`
refuses a path that is not a flow store before any work starts. :func:`hunt_warnings` names what
is only odd (most of the store outside the default window, seeds that are domains, no ASN
database) and what left the hunt with nothing to work on (no flows in the window, no seed
address); the latter carry ``nothing: True``, and the CLI exits with ``EXIT_NOTHING`` for them
(docs/cli.md, "Exit codes").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..store.check import NotAStoreError, require_store
from .keys import iso

__all__ = ["NotAStoreError", "require_store", "hunt_warnings", "store_span"]

#: A default window holding less than this share of the store's flows is worth a warning.
HIDDEN_SHARE = 0.5


def store_span(
    stats: list[tuple[Path, list[tuple[int, int, int]] | None]],
) -> tuple[int, int | None, int | None] | None:
    """(flows, first start, last start) of the store from its files' footers; None when a file
    lacks the statistics."""
    n, lo, hi = 0, None, None
    for _, groups in stats:
        if groups is None:
            return None
        for rows, a, b in groups:
            n += rows
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
    return n, lo, hi


def _day(ms: int | None) -> str:
    return (iso(ms) or "?")[:10]


def _w(code: str, message: str, nothing: bool = False) -> dict[str, Any]:
    return {"code": code, "message": message, **({"nothing": True} if nothing else {})}


def hunt_warnings(
    *,
    span: tuple[int, int | None, int | None] | None,
    since_ms: int,
    until_ms: int,
    default_window: bool,
    flows_in_window: int,
    seed_input: dict[str, Any],
    seeds_in_window: int,
    asn_dbs: list[str],
) -> list[dict[str, Any]]:
    """The warnings of a hunt, each ``{code, message[, nothing]}``; see the module doc."""
    out: list[dict[str, Any]] = []
    win = f"{_day(since_ms)} .. {_day(until_ms)}"
    total = span[0] if span else None
    if total == 0:
        out.append(_w("empty-store", "the store holds no flows: ingest some first (flowpivot ingest)", True))
    elif flows_in_window == 0:
        where = f"; the store spans {_day(span[1])} .. {_day(span[2])}" if span and span[1] is not None else ""
        out.append(_w("empty-window", f"the window {win} holds no flows{where}; use --since/--until", True))
    elif default_window and span and total and span[1] is not None and flows_in_window < HIDDEN_SHARE * total:
        out.append(
            _w(
                "window-hides-store",
                f"the store spans {_day(span[1])} .. {_day(span[2])}; the window {win} holds "
                f"{flows_in_window:,} of {total:,} flows; use --since (or --days)",
            )
        )
    skipped = seed_input.get("skipped") or {}
    count = int(seed_input.get("count") or 0)
    not_ips = {k: v for k, v in skipped.items() if v}
    if not_ips:
        what = ", ".join(f"{v:,} {k.replace('-', ' ')}{'' if k.endswith('s') else 's'}" for k, v in not_ips.items())
        out.append(_w("seeds-skipped", f"{what} skipped: flowpivot matches addresses"))
    if count == 0:
        out.append(_w("no-seeds", "no seed address was read from the seed input(s)", True))
    elif seeds_in_window == 0 and flows_in_window:
        out.append(_w("seeds-unseen", f"none of the {count:,} seeds appears in the window's flows", True))
    if not asn_dbs:
        out.append(
            _w(
                "no-asn-db",
                "no ASN database: clusters are by address block (/16, /32 for IPv6) only; give --asn-db",
            )
        )
    return out

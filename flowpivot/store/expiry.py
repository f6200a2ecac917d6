"""Which day partitions an ``expire`` would remove, without removing them (``--dry-run``, and the
question asked before every partition goes)."""

from __future__ import annotations

import datetime as dt
import time

from . import DAY_MS, Store

__all__ = ["days", "expiring_days"]


def days(store: Store) -> list[str]:
    """The store's day partitions (``YYYY-MM-DD``), oldest first."""
    if not store.flows_dir.exists():
        return []
    out = []
    for part in sorted(store.flows_dir.glob("day=*")):
        try:
            dt.date.fromisoformat(part.name[4:])
        except ValueError:
            continue
        out.append(part.name[4:])
    return out


def expiring_days(store: Store, older_than_ms: int, now_ms: int | None = None) -> list[str]:
    """The days :meth:`Store.expire` removes with the same arguments: those that end at or before
    ``now - older_than``."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cutoff = now_ms - older_than_ms
    return [d for d in days(store) if (dt.date.fromisoformat(d) - dt.date(1970, 1, 1)).days * DAY_MS + DAY_MS <= cutoff]

"""What a store holds, in a few numbers and one fingerprint: a run records it, ``watch`` compares it.

A store changes only by files appearing, being replaced or going (ingest, collector rotation,
expiry), each renamed into place whole (flowpivot/store/__init__.py). So the sorted list of
visible Parquet files with their sizes and modification times, hashed, changes exactly when a
reader would see other flows. Hidden temporary files (``.tmp-*``) are never counted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

__all__ = ["store_state", "store_changed"]


def store_state(store: Any) -> dict[str, Any]:
    """``{"files", "bytes", "days", "first_day", "last_day", "sources", "fingerprint"}`` of a store
    (a :class:`~flowpivot.store.Store` or its directory). Reads directory entries only."""
    # a Store has .root; so has a Path (its anchor, "/" or ""): tell them apart first
    root = Path(store) if isinstance(store, (str, os.PathLike)) else Path(store.root)
    flows = root / "flows"
    h = hashlib.sha256()
    files = 0
    size = 0
    days: set[str] = set()
    entries: list[tuple[str, int, int]] = []
    if flows.is_dir():
        for day in flows.iterdir():
            if not day.name.startswith("day=") or not day.is_dir():
                continue
            for f in day.iterdir():
                if f.name.startswith(".") or not f.name.endswith(".parquet"):
                    continue
                try:
                    st = f.stat()
                except FileNotFoundError:  # expired between listing and stat
                    continue
                entries.append((f"{day.name}/{f.name}", st.st_size, st.st_mtime_ns))
                days.add(day.name[4:])
    for name, sz, mtime in sorted(entries):
        h.update(f"{name}\0{sz}\0{mtime}\n".encode())
        files += 1
        size += sz
    sources_dir = root / "sources"
    sources = sum(1 for p in sources_dir.glob("*.json") if not p.name.startswith(".")) if sources_dir.is_dir() else 0
    return {
        "store": os.fspath(root),
        "files": files,
        "bytes": size,
        "days": len(days),
        "first_day": min(days) if days else None,
        "last_day": max(days) if days else None,
        "sources": sources,
        "fingerprint": h.hexdigest()[:32],
    }


def store_changed(before: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    """True when ``now`` shows other flows than ``before`` (None: never looked)."""
    return before is None or before.get("fingerprint") != now.get("fingerprint")

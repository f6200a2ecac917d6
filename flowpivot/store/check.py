"""Is a path a flow store? A clear error when it is not, naming what it holds instead."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StoreError
from . import Store

__all__ = ["NotAStoreError", "require_store"]


# The first bytes that show what a folder holds instead of a store.
_MAGIC = (
    (b"\x0c\xa5", "nfdump"),
    (b"\xd4\xc3\xb2\xa1", "pcap"),
    (b"\xa1\xb2\xc3\xd4", "pcap"),
    (b"\x4d\x3c\xb2\xa1", "pcap"),
    (b"\xa1\xb2\x3c\x4d", "pcap"),
    (b"\x0a\x0d\x0d\x0a", "pcapng"),
    (b"#separator", "Zeek log"),
    (b"\x1f\x8b", "gzipped"),
)


def _flow_files(root: Path, limit: int = 200) -> set[str]:
    """The kinds of flow files among the first ``limit`` files under ``root`` (by their first bytes)."""
    kinds: set[str] = set()
    try:
        for i, p in enumerate(root.rglob("*")):
            if i >= limit:
                break
            if not p.is_file():
                continue
            with open(p, "rb") as fh:
                head = fh.read(10)
            kinds.update(kind for magic, kind in _MAGIC if head.startswith(magic))
    except OSError:
        pass
    return kinds


class NotAStoreError(StoreError):
    """The path given as a store is not one."""


def require_store(path: str | os.PathLike[str] | Store) -> Store:
    """The store at ``path``; a clear error when the path is missing or is not a flow store (a
    store holds ``flows/`` or ``sources/``; a folder of nfdump or Zeek files is not one)."""
    st = path if isinstance(path, Store) else Store(path)
    root = st.root
    if not root.exists():
        raise NotAStoreError(f"no flow store at {root}: the path does not exist (create one with flowpivot ingest)")
    if not root.is_dir():
        raise NotAStoreError(f"{root} is a file, not a flow store (a store is a directory; ingest the file into one)")
    if st.flows_dir.is_dir() or st.sources_dir.is_dir():
        return st
    hint = ""
    kinds = _flow_files(root)
    if kinds:
        hint = (
            f"; it holds {' and '.join(sorted(kinds))} files: ingest them first (flowpivot ingest {root} --store STORE)"
        )
    raise NotAStoreError(f"{root} is not a flow store (no flows/ or sources/ in it){hint}")

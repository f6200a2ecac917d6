"""What every ASN database reader shares: the flattened :class:`AsnSource`, detection of a file's
kind, the cache directory, and the interning of names and countries while a file is read."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EnrichError, Problem
from ..ranges import U64, Steps, split128
from ..textio import open_bytes

__all__ = ["AsnSource", "addr_text", "default_cache_dir", "detect_kind", "MMDB_MARKER"]


MMDB_MARKER = b"\xab\xcd\xefMaxMind.com"


def default_cache_dir() -> Path:
    """``$FLOWPIVOT_CACHE_DIR``, else ``$XDG_CACHE_HOME/flowpivot``, else ``~/.cache/flowpivot``."""
    if os.environ.get("FLOWPIVOT_CACHE_DIR"):
        return Path(os.environ["FLOWPIVOT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flowpivot"


@dataclass
class AsnSource:
    """One database, flattened. Entry ``i`` is one network or range of the file."""

    path: str
    kind: str  # mmdb, ip2asn, pfx2as
    v4: Steps
    v6: Steps
    first_hi: np.ndarray
    first_lo: np.ndarray
    last_hi: np.ndarray
    last_lo: np.ndarray
    is_v6: np.ndarray  # bool
    asn: np.ndarray  # uint32, 0 = no ASN in this entry
    name: np.ndarray  # int32 into names, -1 = none
    country: np.ndarray  # int32 into countries, -1 = none
    names: list[str]
    countries: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    key: str = ""  # cache key of the file this was read from ("" = not cached)

    @property
    def entries(self) -> int:
        return len(self.asn)

    def provenance(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": Path(self.path).name,
            "kind": self.kind,
            "entries": self.entries,
            **self.meta,
            "problems": len(self.problems),
        }


# ----------------------------------------------------------------------------- detection


def detect_kind(path: str | Path) -> str:
    """``mmdb``, ``ip2asn``, ``pfx2as`` or ``as2org`` from the file's content."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 128 * 1024))
        if MMDB_MARKER in fh.read():
            return "mmdb"
    try:
        with open_bytes(path) as fh:
            head = fh.read(64 * 1024)
    except (OSError, EOFError) as e:
        raise EnrichError(f"{path}: cannot read ({e})") from None
    lines = [ln for ln in head.split(b"\n")[:50] if ln.strip()]
    if any(ln.startswith(b"# format:") for ln in lines) or (
        lines and all(ln.count(b"|") >= 4 for ln in lines[:5] if not ln.startswith(b"#"))
    ):
        return "as2org"
    data = [ln for ln in lines if not ln.startswith(b"#")]
    for ln in data[:3]:  # the first data line, or the one after a header line
        parts = ln.rstrip(b"\r").split(b"\t")
        if len(parts) >= 4 and _ip_int(parts[0]) is not None:
            return "ip2asn"
        if len(parts) == 3 and parts[1].isdigit() and _ip_int(parts[0]) is not None:
            return "pfx2as"
    raise EnrichError(f"{path}: not an MMDB, ip2asn TSV, pfx2as or as2org file; give one of those to --asn-db")


def _ip_int(text: bytes) -> tuple[int, bool] | None:
    """``(value, is_v6)`` of an address in text (or a decimal uint32), None if it is not one."""
    s = text.strip().decode("ascii", "replace")
    if s.isdigit():
        v = int(s)
        return (v, False) if v < 1 << 32 else None
    try:
        if ":" in s:
            return int.from_bytes(socket.inet_pton(socket.AF_INET6, s), "big"), True
        return int.from_bytes(socket.inet_pton(socket.AF_INET, s), "big"), False
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- interning


class _Strings:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, s: str | None) -> int:
        if s is None or s == "":
            return -1
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.items)
            self.items.append(s)
        return i


class _Entries:
    """The per-entry columns of a source, filled one address family at a time (IPv4 first)."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {k: [] for k in ("fh", "fl", "lh", "ll", "v6", "asn", "name", "cc")}
        self.count = 0

    def add(self, v6: bool, *arrays: np.ndarray) -> np.ndarray:
        """Append one family's entries (first hi/lo, last hi/lo, asn, name, cc); returns their entry ids."""
        fh, fl, lh, ll, asn, name, cc = arrays
        k = len(asn)
        for key, arr in zip(self.cols, (fh, fl, lh, ll, np.full(k, v6), asn, name, cc), strict=True):
            self.cols[key].append(arr)
        self.count += k
        return np.arange(self.count - k, self.count, dtype=np.int64)

    def add_rows(self, v6: bool, rows: Sequence[tuple[int, ...]]) -> tuple[np.ndarray, ...]:
        """Append rows ``(first, last, asn, name, cc, ...)``; returns first hi/lo, last hi/lo and entry ids."""
        k = len(rows)
        fh, fl = split128([r[0] for r in rows])
        lh, ll = split128([r[1] for r in rows])
        ids = self.add(
            v6,
            fh,
            fl,
            lh,
            ll,
            np.fromiter((r[2] for r in rows), np.uint32, k),
            np.fromiter((r[3] for r in rows), np.int32, k),
            np.fromiter((r[4] for r in rows), np.int32, k),
        )
        return fh, fl, lh, ll, ids

    def source(
        self,
        path: Path,
        kind: str,
        steps: dict[bool, Steps],
        names: _Strings,
        countries: _Strings,
        meta: dict[str, Any],
        problems: list[Problem],
    ) -> AsnSource:
        cat = {k: np.concatenate(v) for k, v in self.cols.items()}
        return AsnSource(
            str(path),
            kind,
            steps[False],
            steps[True],
            cat["fh"].astype(U64, copy=False),
            cat["fl"].astype(U64, copy=False),
            cat["lh"].astype(U64, copy=False),
            cat["ll"].astype(U64, copy=False),
            cat["v6"].astype(bool, copy=False),
            cat["asn"].astype(np.uint32, copy=False),
            cat["name"].astype(np.int32, copy=False),
            cat["cc"].astype(np.int32, copy=False),
            names.items,
            countries.items,
            meta,
            problems,
        )


def addr_text(value: int, v6: bool) -> str:
    return str(ipaddress.IPv6Address(value) if v6 else ipaddress.IPv4Address(value))

"""Exactly once: what an input's content is, whether the store has it already, and what grew.

The key of an input is its format and the SHA-256 of its *content*: the bytes a reader sees, so
gunzipped for a gzip file. ``conn.log`` and ``conn.log.gz`` are one input. Stores written before
hashed the raw bytes; for a compressed file that older key is checked too (``legacy_key``), and
for a plain file the two are the same.

A file that grew since it was ingested (a capture still being written, a log that is appended to)
is found by its path: the store remembers, per input path, the keys ingested from it with their
content length and hash. When the new content starts with the content of an earlier key, only
what follows is read (:mod:`flowpivot.ingest.resume`). Any other change is a new input.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store import Store

__all__ = ["Digest", "content_digest", "earlier_versions", "remember_path", "GZIP_MAGIC"]

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20
_PATHS_DIR = "paths"


@dataclass
class Digest:
    """The content of one input file.

    ``key``: format + SHA-256 of the content (decompressed). ``legacy_key``: the key stores
    before this version gave a compressed file (hash of the raw bytes), else None.
    ``length``: content bytes. ``prefixes``: content length -> (SHA-256 hex of that many first
    bytes, number of line ends among them), for the lengths asked for.
    ``sha256``: the full content hash. ``last_newline_end``: offset after the last ``\\n``.
    """

    key: str
    sha256: str
    length: int
    compressed: bool = False
    legacy_key: str | None = None
    prefixes: dict[int, tuple[str, int]] = field(default_factory=dict)
    last_newline_end: int = 0


def content_digest(path: str | os.PathLike[str], fmt: str, prefix_lengths: tuple[int, ...] = ()) -> Digest:
    """Hash the content of ``path`` (gunzipped when it is gzip), one pass, with the hashes of the
    given prefix lengths on the way. Raises OSError when the file cannot be read; a gzip file
    damaged part way is hashed up to the damage (its readers stop there too)."""
    path = Path(path)
    with open(path, "rb") as fh:
        compressed = fh.read(2) == GZIP_MAGIC
    legacy: str | None = None
    if compressed:
        raw = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                raw.update(block)
        legacy = f"{fmt}-{raw.hexdigest()[:32]}"
    h = hashlib.sha256()
    wanted = sorted({n for n in prefix_lengths if n > 0})
    prefixes: dict[int, tuple[str, int]] = {}
    pos = lines = last_nl = 0
    with gzip.open(path, "rb") if compressed else open(path, "rb") as fh:
        try:
            while block := fh.read(CHUNK):
                while wanted and pos + len(block) >= wanted[0]:
                    cut = wanted.pop(0) - pos
                    h.update(block[:cut])
                    lines += block.count(b"\n", 0, cut)
                    prefixes[pos + cut] = (h.hexdigest(), lines)
                    nl = block.rfind(b"\n", 0, cut)
                    if nl >= 0:
                        last_nl = pos + nl + 1
                    block, pos = block[cut:], pos + cut
                h.update(block)
                lines += block.count(b"\n")
                nl = block.rfind(b"\n")
                if nl >= 0:
                    last_nl = pos + nl + 1
                pos += len(block)
        except (EOFError, zlib.error, gzip.BadGzipFile):
            pass
    return Digest(f"{fmt}-{h.hexdigest()[:32]}", h.hexdigest(), pos, compressed, legacy, prefixes, last_nl)


def _path_dir(store: Store, path: Path) -> Path:
    name = hashlib.sha256(str(path).encode()).hexdigest()[:24]
    return store.sources_dir / _PATHS_DIR / name


def remember_path(store: Store, path: Path, key: str, digest: Digest, extra: dict[str, Any] | None = None) -> None:
    """Note that ``key`` was ingested from ``path`` (one small file per key: no lost updates)."""
    d = _path_dir(store, path)
    d.mkdir(parents=True, exist_ok=True)
    rec = {
        "path": str(path),
        "key": key,
        "length": digest.length,
        "sha256": digest.sha256,
        "last_newline_end": digest.last_newline_end,
        **(extra or {}),
    }
    tmp = d / f".tmp-{key}.json"
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, d / f"{key}.json")


def earlier_versions(store: Store, path: Path, fmt: str) -> list[dict[str, Any]]:
    """What the store holds from ``path`` in format ``fmt`` before: records of
    :func:`remember_path`, longest content first."""
    d = _path_dir(store, path)
    out: list[dict[str, Any]] = []
    for f in d.glob("*.json") if d.exists() else []:
        if f.name.startswith("."):
            continue
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if (
            rec.get("path") == str(path)
            and str(rec.get("key", "")).startswith(f"{fmt}-")
            and store.has_source(rec["key"])
        ):
            out.append(rec)
    out.sort(key=lambda r: -int(r.get("length", 0)))
    return out

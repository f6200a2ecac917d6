"""Exactly once: what an input's content is, whether the store has it already, and what grew.

The key of an input is its format and the SHA-256 of its *content*: the bytes a reader sees, so
gunzipped for a gzip file. ``conn.log`` and ``conn.log.gz`` are one input. Stores written before
hashed the raw bytes; for a compressed file that older key is checked too (``legacy_key``), and
for a plain file the two are the same.

A file that grew since it was ingested (a capture still being written, a log that is appended to)
is found by its path, or by its first :data:`HEAD` bytes of content (the same log rotated and
gzipped under another name): the store remembers, per input path and per head, the keys ingested
with their content length and hash. When the new content starts with the content of an earlier
key, only what follows is read (:mod:`flowpivot.ingest.resume`). Any other change is a new input.
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

__all__ = ["Digest", "content_digest", "content_head", "earlier_versions", "remember_path", "GZIP_MAGIC", "HEAD"]

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20
#: Content of at least this many bytes is also found by the hash of its first HEAD bytes.
HEAD = 4096
_PATHS_DIR = "paths"
_HEADS_DIR = "heads"


def content_head(path: str | os.PathLike[str]) -> bytes:
    """The first :data:`HEAD` bytes of the content of ``path`` (gunzipped); fewer when it is shorter."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == GZIP_MAGIC
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
            return fh.read(HEAD)
    except (EOFError, zlib.error, gzip.BadGzipFile):
        return b""


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


def _head_dir(store: Store, fmt: str, head: bytes) -> Path | None:
    if len(head) < HEAD:
        return None
    return store.sources_dir / _HEADS_DIR / f"{fmt}-{hashlib.sha256(head[:HEAD]).hexdigest()[:24]}"


def _put(d: Path, key: str, rec: dict[str, Any]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".tmp-{key}.json"
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, d / f"{key}.json")


def remember_path(store: Store, path: Path, key: str, digest: Digest, head: bytes = b"") -> None:
    """Note that ``key`` was ingested from ``path`` whose content starts with ``head`` (one small
    file per key and place: no lost updates between writers)."""
    rec = {
        "path": str(path),
        "key": key,
        "length": digest.length,
        "sha256": digest.sha256,
        "last_newline_end": digest.last_newline_end,
    }
    _put(_path_dir(store, path), key, rec)
    fmt = key.rsplit("-", 1)[0]
    hd = _head_dir(store, fmt, head)
    if hd is not None:
        _put(hd, key, rec)


def earlier_versions(store: Store, path: Path, fmt: str, head: bytes = b"") -> list[dict[str, Any]]:
    """What the store holds from ``path``, or from any file whose content began with the same
    ``head``, in format ``fmt``: records of :func:`remember_path`, longest content first."""
    found: dict[str, dict[str, Any]] = {}
    for d, same_path in ((_path_dir(store, path), True), (_head_dir(store, fmt, head), False)):
        for f in d.glob("*.json") if d is not None and d.exists() else []:
            if f.name.startswith("."):
                continue
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            key = str(rec.get("key", ""))
            if (
                (rec.get("path") == str(path) or not same_path)
                and key.startswith(f"{fmt}-")
                and key not in found
                and store.has_source(key)
            ):
                found[key] = rec
    return sorted(found.values(), key=lambda r: -int(r.get("length", 0)))

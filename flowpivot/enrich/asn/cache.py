"""The flattened form of a source on disk (``.npz``), keyed by the file's size, mtime and a hash of
its first and last 64 KiB, so a second open costs a file read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ...errors import Problem
from ..ranges import Steps
from ..textio import atomic_file
from .source import AsnSource

__all__ = ["CACHE_VERSION"]

CACHE_VERSION = 3


def _cache_key(path: Path, extra: str = "") -> str:
    st = path.stat()
    h = hashlib.sha256(f"v{CACHE_VERSION}|{st.st_size}|{st.st_mtime_ns}|{extra}".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(65536))
        if st.st_size > 65536:
            fh.seek(max(65536, st.st_size - 65536))
            h.update(fh.read(65536))
    return h.hexdigest()[:32]


def _pack_strings(items: list[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = [s.encode("utf-8", "surrogatepass") for s in items]
    offsets = np.zeros(len(enc) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in enc]) if enc else []
    return np.frombuffer(b"".join(enc), np.uint8), offsets


def _unpack_strings(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = blob.tobytes()
    o = offsets.tolist()
    return [raw[o[i] : o[i + 1]].decode("utf-8", "surrogatepass") for i in range(len(o) - 1)]


def _save(src: AsnSource, file: Path) -> None:
    nb, no = _pack_strings(src.names)
    cb, co = _pack_strings(src.countries)
    arrays = {
        "v4h": src.v4.start_hi,
        "v4l": src.v4.start_lo,
        "v4e": src.v4.entry,
        "v6h": src.v6.start_hi,
        "v6l": src.v6.start_lo,
        "v6e": src.v6.entry,
        "fh": src.first_hi,
        "fl": src.first_lo,
        "lh": src.last_hi,
        "ll": src.last_lo,
        "is6": src.is_v6,
        "asn": src.asn,
        "name": src.name,
        "cc": src.country,
        "nb": nb,
        "no": no,
        "cb": cb,
        "co": co,
        "meta": np.frombuffer(
            json.dumps({"kind": src.kind, "meta": src.meta, "problems": [p.as_dict() for p in src.problems]}).encode(),
            np.uint8,
        ),
    }
    with atomic_file(file, ".npz") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]


def _load(path: Path, file: Path) -> AsnSource:
    with np.load(file, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    info = json.loads(a["meta"].tobytes())
    return AsnSource(
        str(path),
        info["kind"],
        Steps(a["v4h"], a["v4l"], a["v4e"]),
        Steps(a["v6h"], a["v6l"], a["v6e"]),
        a["fh"],
        a["fl"],
        a["lh"],
        a["ll"],
        a["is6"],
        a["asn"],
        a["name"],
        a["cc"],
        _unpack_strings(a["nb"], a["no"]),
        _unpack_strings(a["cb"], a["co"]),
        info["meta"],
        [Problem(**p) for p in info["problems"]],
    )

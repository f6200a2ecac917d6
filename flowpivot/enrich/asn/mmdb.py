"""MaxMind DB (MMDB): GeoLite2-ASN, GeoLite2-Country/City, IPtoASN and ip-location-db builds.

The search tree is walked level by level with NumPy; each distinct data record is decoded once by
the ``maxminddb`` package itself (at the first address of a network that points to it)."""

from __future__ import annotations

import ipaddress
import struct
import time
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np

from ...errors import EnrichError, Problem
from ..ranges import U64, Steps
from ..textio import add_problem, as_text
from .source import AsnSource, _Entries, _Strings

__all__ = ["read_mmdb"]


def _mmdb_fields(rec: Any) -> tuple[int, str | None, str | None]:
    """ASN, AS organisation and ISO country of a record in any of the common MMDB schemas."""
    if not isinstance(rec, dict):
        return 0, None, None
    traits: dict[str, Any] = rec["traits"] if isinstance(rec.get("traits"), dict) else {}
    asn = rec.get("autonomous_system_number", traits.get("autonomous_system_number", rec.get("asn")))
    org = rec.get(
        "autonomous_system_organization",
        traits.get("autonomous_system_organization", rec.get("as_name", rec.get("organization"))),
    )
    cc = None
    for key in ("country", "registered_country"):
        c = rec.get(key)
        if isinstance(c, dict) and c.get("iso_code"):
            cc = c["iso_code"]
            break
    if cc is None and rec.get("country_code"):
        cc = rec["country_code"]
    try:
        if isinstance(asn, str):
            asn = asn.upper().removeprefix("AS")
        asn_i = int(asn) if asn is not None else 0
    except (TypeError, ValueError):
        asn_i = 0
    if not 0 <= asn_i < 1 << 32:
        asn_i = 0
    return asn_i, (None if org is None else str(org)), (None if cc is None else str(cc))


def _mmdb_children(path: Path, reader: Any) -> tuple[np.ndarray, int]:
    m = reader.metadata()
    n, rs = int(m.node_count), int(m.record_size)
    nb = rs * 2 // 8
    if rs not in (24, 28, 32):
        raise EnrichError(f"{path}: MMDB record size {rs} is not 24, 28 or 32")
    raw = np.fromfile(path, dtype=np.uint8, count=n * nb)
    if len(raw) < n * nb:
        raise EnrichError(f"{path}: MMDB search tree is truncated ({len(raw)} of {n * nb} bytes)")
    t = raw.reshape(n, nb).astype(np.uint32)
    if rs == 24:
        left = (t[:, 0] << 16) | (t[:, 1] << 8) | t[:, 2]
        right = (t[:, 3] << 16) | (t[:, 4] << 8) | t[:, 5]
    elif rs == 28:
        left = ((t[:, 3] >> 4) << 24) | (t[:, 0] << 16) | (t[:, 1] << 8) | t[:, 2]
        right = ((t[:, 3] & 15) << 24) | (t[:, 4] << 16) | (t[:, 5] << 8) | t[:, 6]
    else:
        left = (t[:, 0] << 24) | (t[:, 1] << 16) | (t[:, 2] << 8) | t[:, 3]
        right = (t[:, 4] << 24) | (t[:, 5] << 16) | (t[:, 6] << 8) | t[:, 7]
    return np.stack([left, right], 1), n


def _walk(children: np.ndarray, n: int, root: int, bits: int, path: Path) -> tuple[np.ndarray, ...]:
    """Every leaf under ``root``: start (hi, lo), prefix length and record, sorted by start.

    The walk goes one level at a time over the whole frontier. A tree that loops back on itself
    (a hostile file) would grow the frontier without end, so the work is capped.
    """
    node = np.array([root], np.uint32)
    hi = np.zeros(1, U64)
    lo = np.zeros(1, U64)
    if root >= n:
        return hi, lo, np.zeros(1, np.uint8), np.array([root], np.uint32)
    outs = []
    budget = 8 * n + 1024
    pair = np.array([0, 1], U64)
    for d in range(bits):
        c = children[node]
        node = c.reshape(-1)
        budget -= len(node)
        if budget < 0:
            raise EnrichError(
                f"{path}: MMDB search tree loops or is far larger than its node count; not a valid database"
            )
        hi = np.repeat(hi, 2)
        lo = np.repeat(lo, 2)
        b = bits - 1 - d
        bit = np.tile(pair, len(c))
        if b >= 64:
            hi |= bit << U64(b - 64)
        else:
            lo |= bit << U64(b)
        term = node >= n
        if term.any():
            outs.append((hi[term], lo[term], np.full(int(term.sum()), d + 1, np.uint8), node[term]))
            keep = ~term
            node, hi, lo = node[keep], hi[keep], lo[keep]
        if len(node) == 0:
            break
    if len(node):  # nodes still open after the last bit: the tree is deeper than the address
        raise EnrichError(f"{path}: MMDB search tree is deeper than {bits} bits; not a valid database")
    H = np.concatenate([o[0] for o in outs])
    L = np.concatenate([o[1] for o in outs])
    D = np.concatenate([o[2] for o in outs])
    V = np.concatenate([o[3] for o in outs])
    order = np.lexsort((L, H))
    return H[order], L[order], D[order], V[order]


MAX_DEPTH = 32


def _decode_leniently(buf: bytes, node_count: int, record_size: int, offset: int) -> Any:
    """One record of an MMDB file's data section (``buf`` is the whole file), decoded by flowpivot:
    text that is not UTF-8 is kept as Latin-1 (every byte survives). None if it is not valid MMDB data."""
    base = node_count * record_size // 4 + 16

    def size_of(pos: int, size: int) -> tuple[int, int]:
        if size == 29:
            return 29 + buf[pos], pos + 1
        if size == 30:
            return 285 + int.from_bytes(buf[pos : pos + 2], "big"), pos + 2
        if size == 31:
            return 65821 + int.from_bytes(buf[pos : pos + 3], "big"), pos + 3
        return size, pos

    def value(pos: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise ValueError("nested too deep")
        ctrl = buf[pos]
        pos += 1
        typ = ctrl >> 5
        if typ == 1:  # pointer: 1-4 more bytes, and an offset that depends on the width
            ss, vvv = (ctrl >> 3) & 3, ctrl & 7
            width = ss + 1
            raw = int.from_bytes(buf[pos : pos + width], "big")
            if ss == 3:
                target = raw
            else:
                target = ((vvv << (8 * width)) | raw) + (0, 2048, 526336)[ss]
            return value(base + target, depth + 1)[0], pos + width
        if typ == 0:
            typ = 7 + buf[pos]
            pos += 1
        size, pos = size_of(pos, ctrl & 0x1F)
        end = pos + size
        if typ == 2:
            return as_text(bytes(buf[pos:end])), end
        if typ in (5, 6, 9, 10):
            return int.from_bytes(buf[pos:end], "big"), end
        if typ == 8:
            return int.from_bytes(buf[pos:end].rjust(4, b"\x00"), "big", signed=True), end
        if typ == 3:
            return struct.unpack(">d", buf[pos : pos + 8])[0], pos + 8
        if typ == 15:
            return struct.unpack(">f", buf[pos : pos + 4])[0], pos + 4
        if typ == 4:
            return bytes(buf[pos:end]), end
        if typ == 14:
            return bool(size), pos
        if typ == 7:
            out: dict[str, Any] = {}
            for _ in range(size):
                k, pos = value(pos, depth + 1)
                out[str(k)], pos = value(pos, depth + 1)
            return out, pos
        if typ == 11:
            items = []
            for _ in range(size):
                item, pos = value(pos, depth + 1)
                items.append(item)
            return items, pos
        raise ValueError(f"data type {typ} cannot be a record value")

    try:
        return value(base + offset, 0)[0]
    except (IndexError, ValueError, struct.error, RecursionError):
        return None


def _last_of(hi: np.ndarray, lo: np.ndarray, plen: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Last address of each prefix ``(hi, lo)/plen`` in a ``bits``-wide space."""
    host = (bits - plen.astype(np.int64)).astype(np.int64)
    lo_bits = np.minimum(host, 64)
    hi_bits = np.clip(host - 64, 0, 64)
    all1 = np.uint64(0xFFFFFFFFFFFFFFFF)
    lo_mask = np.where(lo_bits >= 64, all1, (np.uint64(1) << np.minimum(lo_bits, 63).astype(U64)) - np.uint64(1))
    hi_mask = np.where(hi_bits >= 64, all1, (np.uint64(1) << np.minimum(hi_bits, 63).astype(U64)) - np.uint64(1))
    return hi | hi_mask, lo | lo_mask


def read_mmdb(path: Path) -> AsnSource:
    try:
        reader = maxminddb.open_database(str(path), maxminddb.MODE_MMAP_EXT)
    except Exception as e:  # the package raises InvalidDatabaseError, ValueError, OSError...
        raise EnrichError(f"{path}: not a readable MaxMind DB ({e})") from None
    problems: list[Problem] = []
    try:
        m = reader.metadata()
        children, n = _mmdb_children(path, reader)
        is6 = int(m.ip_version) == 6
        parts = []
        if is6:
            parts.append((True, _walk(children, n, 0, 128, path)))
            v4root = 0
            for _ in range(96):
                if v4root >= n:
                    break
                v4root = int(children[v4root, 0])
            parts.append((False, _walk(children, n, v4root, 32, path)))
        else:
            parts.append((False, _walk(children, n, 0, 32, path)))
        # Decode each distinct record once, through maxminddb, at an address that reaches it.
        names, countries = _Strings(), _Strings()
        rec_fields: dict[int, tuple[int, int, int]] = {}
        raw_file: bytes | None = None
        ent: dict[bool, tuple[np.ndarray, ...]] = {}
        for v6, (H, L, D, V) in parts:
            data = V > n
            idx = np.nonzero(data)[0]
            uniq, first = np.unique(V[idx], return_index=True)
            for rec_id, i in zip(uniq.tolist(), idx[first].tolist(), strict=True):
                if rec_id in rec_fields:
                    continue
                addr = (int(H[i]) << 64) | int(L[i])
                try:
                    rec = reader.get(ipaddress.IPv6Address(addr) if v6 else ipaddress.IPv4Address(addr))
                except Exception as e:  # e.g. a string that is not UTF-8: decode it ourselves, as data
                    if raw_file is None:
                        raw_file = path.read_bytes()
                    rec = _decode_leniently(raw_file, n, int(m.record_size), rec_id - n - 16)
                    add_problem(
                        problems,
                        str(path),
                        f"data record at offset {rec_id - n - 16}",
                        f"maxminddb cannot decode it ({e}); "
                        + (
                            "read with non-UTF-8 text kept as Latin-1"
                            if rec is not None
                            else "its networks are left out"
                        ),
                    )
                asn, org, cc = _mmdb_fields(rec)
                rec_fields[rec_id] = (asn, names.add(org), countries.add(cc))
            ent[v6] = (H, L, D, V)
        build = int(getattr(m, "build_epoch", 0) or 0)
        meta = {
            "database_type": str(m.database_type),
            "ip_version": int(m.ip_version),
            "build_date": time.strftime("%Y-%m-%d", time.gmtime(build)) if build else None,
        }
    finally:
        reader.close()
    entries = _Entries()
    steps = {}
    for v6 in (False, True):
        if v6 not in ent:
            steps[v6] = Steps(np.zeros(1, U64), np.zeros(1, U64), np.full(1, -1, np.int64))
            continue
        AH, AL, AD, AV = ent[v6]
        data = AV > n
        H, L, D, V = AH[data], AL[data], AD[data], AV[data]
        uv = np.unique(V)
        fields = np.array([rec_fields[r] for r in uv.tolist()], np.int64).reshape(-1, 3)
        pos = np.searchsorted(uv, V)
        lh, ll = _last_of(H, L, D, 128 if v6 else 32)
        ids = entries.add(
            v6,
            H,
            L,
            lh,
            ll,
            fields[pos, 0].astype(np.uint32),
            fields[pos, 1].astype(np.int32),
            fields[pos, 2].astype(np.int32),
        )
        # The leaves already partition the space: they are the steps.
        leaf_entry = np.full(len(AV), -1, np.int64)
        leaf_entry[data] = ids
        steps[v6] = Steps(AH, AL, leaf_entry).compact()
    return entries.source(path, "mmdb", steps, names, countries, meta, problems)

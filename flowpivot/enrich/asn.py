"""Offline ASN, AS name and country databases, flattened to step functions for vectorised lookups.

Formats read (detected from the content, plain or gzip):

- MaxMind DB (MMDB): GeoLite2-ASN, GeoLite2-Country/City, IPtoASN and ip-location-db builds. The
  search tree is walked level by level with NumPy; each distinct data record is decoded once by
  the ``maxminddb`` package itself (at the first address of a network that points to it).
- iptoasn.com ip2asn TSV: ``range_start range_end AS_number country_code AS_description``;
  AS 0 / ``Not routed`` rows say the range is unrouted.
- CAIDA Routeviews pfx2as (``prefix length AS``; ``a_b`` multi-origin, ``a,b`` AS sets) and CAIDA
  as2org (``as-org2info.txt``), which names the ASes of every pfx2as source opened with it.

A flattened source is cached on disk (``.npz``), keyed by the file's size, mtime and a hash of
its first and last 64 KiB, so a second open costs a file read.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np

from ..errors import EnrichError, Problem
from .ranges import U64, Steps, split128, steps_from_disjoint, steps_from_nested
from .textio import add_problem, as_text, atomic_file, numbered_lines, open_bytes

__all__ = ["AsnSource", "open_source", "detect_kind", "read_as2org", "default_cache_dir", "CACHE_VERSION"]

log = logging.getLogger(__name__)

CACHE_VERSION = 3
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


# ----------------------------------------------------------------------------- MMDB


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


def addr_text(value: int, v6: bool) -> str:
    return str(ipaddress.IPv6Address(value) if v6 else ipaddress.IPv4Address(value))


# ----------------------------------------------------------------------------- ip2asn TSV


def read_ip2asn(path: Path) -> AsnSource:
    """iptoasn.com TSV. Overlapping rows are reported and dropped (the earlier range is kept)."""
    problems: list[Problem] = []
    src = str(path)
    names, countries = _Strings(), _Strings()
    rows: dict[bool, list[tuple[int, int, int, int, int, int]]] = {False: [], True: []}
    for n, line in numbered_lines(path, problems):
        if not line.strip() or line.startswith(b"#"):
            continue
        parts = line.split(b"\t")
        if n == 1 and parts[0].strip().lower() in (b"range_start", b"start", b"ip_start", b"start_ip"):
            continue  # a header line
        if len(parts) < 3:
            add_problem(problems, src, f"line {n}", f"expected 5 tab-separated fields, found {len(parts)}")
            continue
        a, b = _ip_int(parts[0]), _ip_int(parts[1])
        if a is None or b is None or a[1] != b[1] or a[0] > b[0]:
            add_problem(problems, src, f"line {n}", "range_start/range_end are not an address range of one family")
            continue
        asn_t = parts[2].strip().upper().removeprefix(b"AS")
        if not asn_t.isdigit() or int(asn_t) >= 1 << 32:
            add_problem(problems, src, f"line {n}", "AS_number is not a number below 2**32")
            continue
        asn = int(asn_t)
        cc_t = as_text(parts[3].strip()) if len(parts) > 3 else ""
        desc = as_text(b"\t".join(parts[4:]).strip()) if len(parts) > 4 else ""
        if asn == 0 or desc.lower() == "not routed":
            asn, desc, cc_t = 0, "", ""  # an explicit statement that nobody routes it
        cc = "" if cc_t in ("None", "ZZ", "-", "") else cc_t
        rows[a[1]].append((a[0], b[0], asn, names.add(desc), countries.add(cc), n))
    return _source_from_ranges(path, "ip2asn", rows, names, countries, problems, {})


def _source_from_ranges(
    path: Path,
    kind: str,
    rows: dict[bool, list[tuple[int, int, int, int, int, int]]],
    names: _Strings,
    countries: _Strings,
    problems: list[Problem],
    meta: dict[str, Any],
) -> AsnSource:
    entries = _Entries()
    steps = {}
    for v6 in (False, True):
        kept = []
        prev_last = -1
        for r in sorted(rows[v6]):
            if r[0] <= prev_last:
                add_problem(
                    problems,
                    str(path),
                    f"line {r[5]}",
                    f"range {addr_text(r[0], v6)}-{addr_text(r[1], v6)} overlaps an earlier row; dropped",
                )
                continue
            kept.append(r)
            prev_last = r[1]
        fh, fl, lh, ll, ids = entries.add_rows(v6, kept)
        steps[v6] = steps_from_disjoint(fh, fl, lh, ll, ids)
        if not v6:
            steps[v6] = steps[v6].below(1 << 32)
    return entries.source(path, kind, steps, names, countries, problems=problems, meta=meta)


# ----------------------------------------------------------------------------- CAIDA pfx2as + as2org


def read_as2org(path: str | Path, problems: list[Problem] | None = None) -> dict[int, tuple[str, str | None]]:
    """ASN -> (AS name, country) from CAIDA's as-org2info: ``aut|changed|aut_name|org_id|opaque_id|source``
    joined with ``org_id|changed|org_name|country|source``. The name is ``aut_name org_name``."""
    problems = problems if problems is not None else []
    path = Path(path)
    auts: dict[int, tuple[str, str]] = {}
    orgs: dict[str, tuple[str, str]] = {}
    section = None
    for n, line in numbered_lines(path, problems):
        if line.startswith(b"# format:"):
            section = "aut" if b"aut_name" in line else "org" if b"org_name" in line else None
            continue
        if not line.strip() or line.startswith(b"#"):
            continue
        f = [as_text(x) for x in line.split(b"|")]
        if section == "org" and len(f) >= 4:
            orgs[f[0]] = (f[2], f[3])
        elif section == "aut" and len(f) >= 4 and f[0].isdigit():
            auts[int(f[0])] = (f[2], f[3])
        else:
            add_problem(problems, str(path), f"line {n}", "not an as2org aut or org line")
    out: dict[int, tuple[str, str | None]] = {}
    for asn, (aut_name, org_id) in auts.items():
        org_name, cc = orgs.get(org_id, ("", ""))
        name = " ".join(x for x in (aut_name, org_name) if x)
        out[asn] = (name, cc or None)
    return out


def read_pfx2as(path: Path, as2org: dict[int, tuple[str, str | None]] | None = None) -> AsnSource:
    """Routeviews pfx2as; prefixes nest, and the most specific announced one answers.

    Multi-origin (``a_b``) and AS-set (``a,b``) origins answer with the first AS.
    """
    problems: list[Problem] = []
    src = str(path)
    names, countries = _Strings(), _Strings()
    as2org = as2org or {}
    rows: dict[bool, list[tuple[int, int, int, int, int]]] = {False: [], True: []}
    for n, line in numbered_lines(path, problems):
        if not line.strip() or line.startswith(b"#"):
            continue
        parts = line.split(b"\t")
        if len(parts) != 3:
            parts = line.split()
        a = _ip_int(parts[0]) if parts else None
        if len(parts) != 3 or a is None or not parts[1].strip().isdigit():
            add_problem(problems, src, f"line {n}", "expected `prefix<TAB>length<TAB>AS`")
            continue
        bits = 128 if a[1] else 32
        plen = int(parts[1])
        first_as = parts[2].strip().replace(b",", b"_").split(b"_")[0]
        if plen > bits or not first_as.isdigit() or int(first_as) >= 1 << 32:
            add_problem(problems, src, f"line {n}", "prefix length or AS number out of range")
            continue
        host = bits - plen
        start = (a[0] >> host) << host
        asn = int(first_as)
        name, cc = as2org.get(asn, (None, None))
        rows[a[1]].append((start, start | ((1 << host) - 1), asn, names.add(name), countries.add(cc)))
    entries = _Entries()
    steps = {}
    for v6 in (False, True):
        rs = rows[v6]
        fh, fl, lh, ll, ids = entries.add_rows(v6, rs)
        plen_a = np.fromiter(
            ((128 if v6 else 32) - ((r[1] - r[0] + 1).bit_length() - 1) for r in rs), np.int16, len(rs)
        )
        steps[v6] = steps_from_nested(fh, fl, lh, ll, plen_a, ids)
        if not v6:
            steps[v6] = steps[v6].below(1 << 32)
    return entries.source(path, "pfx2as", steps, names, countries, {"as2org": bool(as2org)}, problems)


# ----------------------------------------------------------------------------- cache


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


def open_source(
    path: str | Path,
    *,
    as2org: str | Path | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    kind: str | None = None,
) -> AsnSource:
    """Read one ASN/country database (cached flattened form if the file has not changed). ``kind`` is
    :func:`detect_kind`'s answer when the caller has it already (it reads the file's head and tail)."""
    path = Path(path)
    if not path.is_file():
        raise EnrichError(f"{path}: no such database file")
    kind = kind or detect_kind(path)
    if kind == "as2org":
        raise EnrichError(f"{path}: is a CAIDA as2org file; give it with a pfx2as file")
    extra = ""
    if kind == "pfx2as" and as2org is not None:
        extra = _cache_key(Path(as2org))
    cache_file = None
    if use_cache:
        cache_file = (cache_dir or default_cache_dir()) / f"asn-{kind}-{_cache_key(path, extra)}.npz"
        if cache_file.exists():
            try:
                src = _load(path, cache_file)
                src.key = cache_file.stem
                log.debug("loaded %s from cache %s", path, cache_file)
                return src
            except (OSError, ValueError, KeyError, EOFError) as e:
                log.warning("cache %s unreadable (%s); rebuilding", cache_file, e)
    t0 = time.perf_counter()
    if kind == "mmdb":
        src = read_mmdb(path)
    elif kind == "ip2asn":
        src = read_ip2asn(path)
    else:
        src = read_pfx2as(path, read_as2org(as2org) if as2org else None)
    log.debug("flattened %s (%s, %d entries) in %.2fs", path, kind, src.entries, time.perf_counter() - t0)
    if cache_file is not None:
        src.key = cache_file.stem
        try:
            _save(src, cache_file)
        except OSError as e:
            log.warning("cannot write cache %s (%s)", cache_file, e)
    return src

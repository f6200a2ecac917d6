"""A small MaxMind DB writer (MaxMind DB File Format Specification 2.0), for scenario and test databases.

Networks are inserted in order into an IPv6 tree (IPv4 at ``::/96``, as MaxMind's own databases
do); a later, more specific network overrides an earlier, wider one where they overlap. Good for
thousands of networks, not for rebuilding GeoLite2.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["write_mmdb"]

_MARKER = b"\xab\xcd\xefMaxMind.com"


def _ctrl(type_: int, size: int) -> bytes:
    if size < 29:
        first, extra = size, b""
    elif size < 29 + 256:
        first, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        first, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        first, extra = 31, (size - 65821).to_bytes(3, "big")
    if type_ <= 7:
        return bytes([(type_ << 5) | first]) + extra
    return bytes([first, type_ - 7]) + extra


class _Uint:
    """An unsigned integer of a fixed MMDB type (the metadata keys must have exactly their type)."""

    def __init__(self, type_: int, value: int):
        self.type, self.value = type_, value


def _encode(v: Any) -> bytes:
    if isinstance(v, _Uint):
        b = v.value.to_bytes(16, "big").lstrip(b"\x00")
        return _ctrl(v.type, len(b)) + b
    if isinstance(v, bool):
        return _ctrl(14, int(v))
    if isinstance(v, str):
        b = v.encode("utf-8", "surrogateescape")
        return _ctrl(2, len(b)) + b
    if isinstance(v, bytes):
        return _ctrl(4, len(v)) + v
    if isinstance(v, float):
        return _ctrl(3, 8) + struct.pack(">d", v)
    if isinstance(v, int):
        if v < 0:
            b = v.to_bytes(4, "big", signed=True)
            return _ctrl(8, 4) + b
        for type_, width in ((5, 2), (6, 4), (9, 8), (10, 16)):
            if v < 1 << (8 * width):
                b = v.to_bytes(width, "big").lstrip(b"\x00")
                return _ctrl(type_, len(b)) + b
        raise ValueError(f"integer too large for MMDB: {v}")
    if isinstance(v, dict):
        return _ctrl(7, len(v)) + b"".join(_encode(str(k)) + _encode(x) for k, x in v.items())
    if isinstance(v, list | tuple):
        return _ctrl(11, len(v)) + b"".join(_encode(x) for x in v)
    raise TypeError(f"cannot encode {type(v).__name__} in an MMDB")


def write_mmdb(
    path: str | Path,
    networks: Iterable[tuple[str, dict[str, Any]]],
    database_type: str = "flowpivot-test",
    build_epoch: int | None = None,
    description: str = "written by flowpivot",
) -> Path:
    """Write ``(cidr, record)`` pairs as an IPv6 MaxMind DB with 28- or 32-bit records."""
    root: list[Any] = [None, None]
    data = bytearray()
    offsets: dict[bytes, int] = {}
    for cidr, rec in networks:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.version == 4:
            value, plen = int(net.network_address), net.prefixlen + 96
        else:
            value, plen = int(net.network_address), net.prefixlen
        blob = _encode(rec)
        if blob not in offsets:
            offsets[blob] = len(data)
            data += blob
        leaf = ("d", offsets[blob])
        if plen == 0:
            root = [leaf, leaf]
            continue
        node = root
        for depth in range(plen):
            bit = (value >> (127 - depth)) & 1
            if depth == plen - 1:
                node[bit] = leaf
                break
            child = node[bit]
            if not isinstance(child, list):
                child = [child, child]  # split a wider leaf: both halves keep its record
                node[bit] = child
            node = child
    nodes: list[list[Any]] = []
    ids: dict[int, int] = {}
    stack = [root]
    while stack:  # number nodes depth-first, as in MaxMind's files
        n = stack.pop()
        ids[id(n)] = len(nodes)
        nodes.append(n)
        for c in (n[1], n[0]):
            if isinstance(c, list):
                stack.append(c)
    count = len(nodes)
    record_size = 28 if count + 16 + len(data) < 1 << 28 else 32

    def record(c: Any) -> int:
        if c is None:
            return count
        if isinstance(c, list):
            return ids[id(c)]
        return count + 16 + c[1]

    tree = bytearray()
    for n in nodes:
        left, right = record(n[0]), record(n[1])
        if record_size == 28:
            tree += (
                (left & 0xFFFFFF).to_bytes(3, "big")
                + bytes([((left >> 24) << 4) | (right >> 24)])
                + (right & 0xFFFFFF).to_bytes(3, "big")
            )
        else:
            tree += left.to_bytes(4, "big") + right.to_bytes(4, "big")
    meta = {
        "binary_format_major_version": _Uint(5, 2),
        "binary_format_minor_version": _Uint(5, 0),
        "build_epoch": _Uint(9, int(build_epoch if build_epoch is not None else time.time())),
        "database_type": database_type,
        "description": {"en": description},
        "ip_version": _Uint(5, 6),
        "languages": ["en"],
        "node_count": _Uint(6, count),
        "record_size": _Uint(5, record_size),
    }
    p = Path(path)
    p.write_bytes(bytes(tree) + b"\x00" * 16 + bytes(data) + _MARKER + _encode(meta))
    return p

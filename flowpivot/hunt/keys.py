"""Address keys and small conversions the hunt's stages share.

SQL builds pair keys as dotted quads (IPv4) or ``v6:<hex>`` (IPv6); these map them to and from
canonical strings, and load key lists into DuckDB as anchor tables (key, v4, v6, id).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ..store import DAY_MS

__all__ = ["key_of", "ip_of", "iso", "day_of", "ip_sort_key", "anchor_table", "load_anchors"]


def key_of(ip: str) -> str:
    a = ipaddress.ip_address(ip)
    return str(a) if a.version == 4 else "v6:" + a.packed.hex()


def ip_of(key: str) -> str:
    return str(ipaddress.IPv6Address(bytes.fromhex(key[3:]))) if key.startswith("v6:") else key


def iso(ms: int | float | None) -> str | None:
    """ISO 8601 UTC with milliseconds; times before 1970 and after 9999 are written too."""
    if ms is None:
        return None
    ms = int(ms)
    d = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def day_of(ms: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(ms) // DAY_MS)).isoformat()


def ip_sort_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return (a.version, int(a))


def key_sort(k: str) -> tuple[int, int]:
    return ip_sort_key(ip_of(k))


def anchor_table(keys: Sequence[str]) -> pa.Table:
    v4: list[int | None] = []
    v6: list[bytes | None] = []
    for k in keys:
        if k.startswith("v6:"):
            v4.append(None)
            v6.append(bytes.fromhex(k[3:]))
        else:
            v4.append(int(ipaddress.IPv4Address(k)))
            v6.append(None)
    return pa.table(
        {
            "key": pa.array(list(keys), pa.string()),
            "v4": pa.array(v4, pa.uint32()),
            "v6": pa.array(v6, pa.binary()),
            "id": pa.array(range(len(keys)), pa.uint32()),
        }
    )


def load_anchors(con: Any, name: str, keys: Sequence[str]) -> None:
    """Stage table ``name`` (key, v4, v6, id) of ``keys``."""
    con.load_table(name, anchor_table(keys))


def key_list(con: Any, name: str, keys: Sequence[str] | set[str]) -> None:
    """Register an Arrow table ``name`` with one string column ``k`` (unregister when done)."""
    con.register(name, pa.table({"k": pa.array(sorted(keys), pa.string())}))

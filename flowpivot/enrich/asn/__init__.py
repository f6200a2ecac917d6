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

One module per source format (``mmdb``, ``ip2asn``, ``caida``), the shared ``source`` and the
``cache``; every name is importable from here as before the split.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ...errors import EnrichError
from .cache import CACHE_VERSION, _cache_key, _load, _pack_strings, _save, _unpack_strings  # noqa: F401  (importable as before the split)
from .caida import read_as2org, read_pfx2as
from .ip2asn import _source_from_ranges, read_ip2asn  # noqa: F401
from .mmdb import MAX_DEPTH, _decode_leniently, _last_of, _mmdb_children, _mmdb_fields, _walk, read_mmdb  # noqa: F401
from .source import MMDB_MARKER, AsnSource, _Entries, _ip_int, _Strings, addr_text, default_cache_dir, detect_kind  # noqa: F401

__all__ = [
    "AsnSource",
    "open_source",
    "detect_kind",
    "read_as2org",
    "default_cache_dir",
    "CACHE_VERSION",
    "addr_text",
    "read_ip2asn",
    "read_mmdb",
    "read_pfx2as",
]

log = logging.getLogger(__name__)


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

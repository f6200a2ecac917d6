"""Enrichment: who holds an address (ASN, AS name, country) and through whom it was bought
(the whois allocation chain, with the reseller), from offline databases, fast and in bulk.

    asn.py       MMDB / ip2asn TSV / pfx2as+as2org readers, flattened and cached
    ranges.py    step functions over 128-bit keys: flatten, layer, vectorised search
    rpsl.py      RPSL whois dumps -> on-disk SQLite index -> allocation chains
    rdap.py      live RDAP for a handful of addresses, cached on disk
    enricher.py  Enricher: the layered lookup the hunt and the CLI call
"""

from __future__ import annotations

from .asn import AsnSource, default_cache_dir, detect_kind, open_source, read_as2org
from .enricher import Enricher, ip_to_u32
from .rdap import RdapClient, network_link
from .rpsl import RESELLER_STATUSES, WhoisIndex, abuse_mailbox_of, parse_objects, reseller_of

__all__ = [
    "Enricher",
    "ip_to_u32",
    "AsnSource",
    "open_source",
    "detect_kind",
    "read_as2org",
    "default_cache_dir",
    "WhoisIndex",
    "parse_objects",
    "reseller_of",
    "abuse_mailbox_of",
    "RESELLER_STATUSES",
    "RdapClient",
    "network_link",
]

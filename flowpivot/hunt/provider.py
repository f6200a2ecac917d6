"""Who runs an address: ASN and allocation lookups through flowpivot.enrich, cached for one hunt."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["Provider", "enriched"]


class Provider:
    """ASN / allocation lookups through flowpivot.enrich, or nothing when no database is given."""

    def __init__(self, asn_dbs: Sequence[str | os.PathLike[str]], whois: str | os.PathLike[str] | None):
        self.enr: Any = None
        self.whois = whois is not None
        self.cache: dict[str, dict[str, Any]] = {}
        if asn_dbs or whois:
            from ..enrich import Enricher

            self.enr = Enricher.open(asn_dbs=[str(p) for p in asn_dbs], whois=str(whois) if whois else None)

    @property
    def sources(self) -> list[Any]:
        return list(getattr(self.enr, "sources", []) or []) if self.enr is not None else []

    def lookup(self, ips: Sequence[str]) -> dict[str, dict[str, Any]]:
        todo = sorted({ip for ip in ips if ip not in self.cache})
        if todo:
            if self.enr is None:
                rows: list[dict[str, Any]] = [{"ip": ip} for ip in todo]
            else:
                rows = list(self.enr.lookup(todo))
            for ip, row in zip(todo, rows, strict=True):
                self.cache[ip] = row or {}
        return {ip: self.cache[ip] for ip in ips}

    def key(self, info: dict[str, Any]) -> tuple[Any, ...]:
        """The provider a member belongs to: its ASN, and with whois its allocation (the reseller's
        organisation when the chain has one, else the most specific allocation's)."""
        asn = info.get("asn")
        if asn is None and info.get("ip"):
            # no ASN known: the address block (/16, IPv6 /32) stands in for the provider, so
            # groups in unrelated networks are not joined through the seeds they share
            a = ipaddress.ip_address(info["ip"])
            return ("block", str(ipaddress.ip_network(f"{a}/{16 if a.version == 4 else 32}", strict=False)))
        if not self.whois:
            return (asn,)
        reseller = info.get("reseller") or None
        if reseller:
            return (asn, reseller.get("org") or reseller.get("netname") or reseller.get("range"))
        alloc = info.get("allocation") or []
        if alloc:
            a = alloc[0]
            return (asn, a.get("org") or a.get("netname") or a.get("range"))
        return (asn,)


def enriched(info: dict[str, Any]) -> dict[str, Any]:
    return {"asn": info.get("asn"), "as_name": info.get("as_name"), "country": info.get("country")}

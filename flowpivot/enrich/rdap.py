"""Live RDAP (RFC 9082 queries, RFC 9083 responses) for a handful of addresses, cached on disk.

``GET {base}/ip/{address}`` (``https://rdap.org`` redirects to the right RIR), then the network's
``up`` links for the enclosing ranges. Responses are cached as files, so a second run, or a test
with recorded responses, needs no network. Response JSON is data: fields of the wrong type are
ignored, never evaluated.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import EnrichError
from .ranges import whois_range_text
from .textio import atomic_file

__all__ = ["RdapClient", "network_link", "DEFAULT_BASE"]

log = logging.getLogger(__name__)

DEFAULT_BASE = "https://rdap.org"
MAX_BODY = 2 << 20
MAX_UP = 4


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _vcard(entity: dict[str, Any], prop: str) -> str | None:
    card = entity.get("vcardArray")
    if not (isinstance(card, list) and len(card) == 2 and isinstance(card[1], list)):
        return None
    for item in card[1]:
        if isinstance(item, list) and len(item) >= 4 and item[0] == prop:
            value = item[3]
            if isinstance(value, list):
                value = " ".join(x for x in value if isinstance(x, str))
            return _s(value)
    return None


def _entities(obj: dict[str, Any], depth: int = 0) -> list[dict[str, Any]]:
    out = []
    ents = obj.get("entities")
    if isinstance(ents, list) and depth < 4:
        for e in ents:
            if isinstance(e, dict):
                out.append(e)
                out.extend(_entities(e, depth + 1))
    return out


def _roles(e: dict[str, Any]) -> list[str]:
    r = e.get("roles")
    return [x for x in r if isinstance(x, str)] if isinstance(r, list) else []


def network_link(obj: dict[str, Any]) -> dict[str, Any] | None:
    """One allocation-chain link from an RDAP ``ip network`` object."""
    if not isinstance(obj, dict) or obj.get("objectClassName") not in (None, "ip network"):
        return None
    start, end = _s(obj.get("startAddress")), _s(obj.get("endAddress"))
    rng = None
    if start and end:
        try:
            rng = whois_range_text(ipaddress.ip_address(start), ipaddress.ip_address(end))
        except (ValueError, TypeError):
            rng = f"{start} - {end}"
    ents = _entities(obj)
    registrant = next((e for e in ents if "registrant" in _roles(e)), None)
    abuse = next((e for e in ents if "abuse" in _roles(e)), None)
    return {
        "range": rng,
        "netname": _s(obj.get("name")),
        "org": _s(registrant.get("handle")) if registrant else None,
        "org_name": _vcard(registrant, "fn") if registrant else None,
        "status": _s(obj.get("type")),
        "country": _s(obj.get("country")),
        "abuse_mailbox": _vcard(abuse, "email") if abuse else None,
        "source": "rdap",
    }


class RdapClient:
    """RDAP look-ups with an on-disk cache; at most ``max_queries`` network requests per client."""

    def __init__(
        self,
        cache_dir: Path,
        base_url: str = DEFAULT_BASE,
        timeout: float = 10.0,
        max_queries: int = 20,
        max_age_s: float = 30 * 86400,
        public_only: bool = True,
    ):
        self.cache_dir = Path(cache_dir) / "rdap"
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_queries = max_queries
        self.max_age_s = max_age_s
        self.public_only = public_only  # private, documentation and benchmarking space is never sent out
        self.queries = 0
        self.errors: list[str] = []

    def _cache_file(self, url: str) -> Path:
        return self.cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:40] + ".json")

    def fetch(self, url: str) -> dict[str, Any] | None:
        """The JSON at ``url``, from the cache when fresh; None when not found, refused or over budget."""
        f = self._cache_file(url)
        if f.exists():
            with contextlib.suppress(OSError, ValueError):
                rec = json.loads(f.read_text())
                if time.time() - float(rec.get("fetched", 0)) < self.max_age_s:
                    return rec.get("body") if isinstance(rec.get("body"), dict) else None
        if self.queries >= self.max_queries:
            self.errors.append(f"{url}: not asked, more than {self.max_queries} RDAP queries in one run")
            return None
        self.queries += 1
        req = urllib.request.Request(
            url, headers={"Accept": "application/rdap+json, application/json", "User-Agent": "flowpivot"}
        )
        body: dict[str, Any] | None = None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (http(s) URL built here)
                raw = resp.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                raise ValueError(f"response larger than {MAX_BODY} bytes")
            parsed = json.loads(raw)
            body = parsed if isinstance(parsed, dict) else None
        except urllib.error.HTTPError as e:
            if e.code != 404:
                self.errors.append(f"{url}: HTTP {e.code}")
                return None
        except (urllib.error.URLError, OSError, ValueError) as e:
            self.errors.append(f"{url}: {e}")
            return None
        self._store(f, {"url": url, "fetched": time.time(), "body": body})
        return body

    def _store(self, f: Path, rec: dict[str, Any]) -> None:
        try:
            with atomic_file(f) as fh:
                fh.write(json.dumps(rec).encode())
        except OSError as e:
            log.warning("cannot cache RDAP answer in %s (%s)", f, e)

    def chain(self, ip: str) -> list[dict[str, Any]]:
        """The network holding ``ip`` and the ranges above it (``up`` links), most specific first."""
        try:
            a = ipaddress.ip_address(ip)
        except ValueError as e:
            raise EnrichError(f"{ip!r} is not an IP address") from e
        if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
            a = a.ipv4_mapped
        if self.public_only and not a.is_global:
            return []
        links: list[dict[str, Any]] = []
        url: str | None = f"{self.base_url}/ip/{a}"
        seen: set[str] = set()
        while url and url not in seen and len(links) <= MAX_UP:
            seen.add(url)
            obj = self.fetch(url)
            if obj is None:
                break
            link = network_link(obj)
            if link is None:
                break
            links.append(link)
            url = None
            for lk in obj.get("links") or []:
                if (
                    isinstance(lk, dict)
                    and lk.get("rel") == "up"
                    and isinstance(lk.get("href"), str)
                    and lk["href"].startswith(("http://", "https://"))
                ):
                    url = lk["href"]
                    break
        return links

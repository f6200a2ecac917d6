"""IANA's special-purpose address registries: what an address that no provider announces is.

An address in 192.168.0.0/16 is not "unrouted, unknown provider": it is private-use space, and an
analyst reading a profile or a report should see that at once. The table below follows the IANA
IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and the RFCs each entry names), plus
multicast and the IPv4 reserved block, which have their own registries. The most specific entry
wins (``192.0.0.9/32`` is Port Control Protocol anycast inside ``192.0.0.0/24``).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

__all__ = ["special_purpose", "SPECIAL_RANGES"]

#: (network, name, RFC), in registry order.
SPECIAL_RANGES: tuple[tuple[str, str, str], ...] = (
    ("0.0.0.0/8", "this network", "RFC 791"),
    ("0.0.0.0/32", "this host on this network", "RFC 1122"),
    ("10.0.0.0/8", "private-use", "RFC 1918"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)", "RFC 6598"),
    ("127.0.0.0/8", "loopback", "RFC 1122"),
    ("169.254.0.0/16", "link-local", "RFC 3927"),
    ("172.16.0.0/12", "private-use", "RFC 1918"),
    ("192.0.0.0/24", "IETF protocol assignments", "RFC 6890"),
    ("192.0.0.0/29", "IPv4 service continuity prefix (DS-Lite)", "RFC 7335"),
    ("192.0.0.8/32", "IPv4 dummy address", "RFC 7600"),
    ("192.0.0.9/32", "Port Control Protocol anycast", "RFC 7723"),
    ("192.0.0.10/32", "TURN anycast", "RFC 8155"),
    ("192.0.0.170/31", "NAT64/DNS64 discovery", "RFC 7050"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)", "RFC 5737"),
    ("192.31.196.0/24", "AS112-v4", "RFC 7535"),
    ("192.52.193.0/24", "AMT", "RFC 7450"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast", "RFC 7526"),
    ("192.168.0.0/16", "private-use", "RFC 1918"),
    ("192.175.48.0/24", "direct delegation AS112 service", "RFC 7534"),
    ("198.18.0.0/15", "benchmarking", "RFC 2544"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)", "RFC 5737"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)", "RFC 5737"),
    ("224.0.0.0/4", "multicast", "RFC 5771"),
    ("240.0.0.0/4", "reserved", "RFC 1112"),
    ("255.255.255.255/32", "limited broadcast", "RFC 919"),
    ("::/128", "unspecified address", "RFC 4291"),
    ("::1/128", "loopback", "RFC 4291"),
    ("::ffff:0:0/96", "IPv4-mapped address", "RFC 4291"),
    ("64:ff9b::/96", "IPv4-IPv6 translation", "RFC 6052"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", "RFC 8215"),
    ("100::/64", "discard-only", "RFC 6666"),
    ("2001::/23", "IETF protocol assignments", "RFC 2928"),
    ("2001::/32", "TEREDO", "RFC 4380"),
    ("2001:2::/48", "benchmarking", "RFC 5180"),
    ("2001:db8::/32", "documentation", "RFC 3849"),
    ("2001:10::/28", "deprecated ORCHID", "RFC 4843"),
    ("2001:20::/28", "ORCHIDv2", "RFC 7343"),
    ("2002::/16", "6to4", "RFC 3056"),
    ("3fff::/20", "documentation", "RFC 9637"),
    ("5f00::/16", "segment routing SIDs", "RFC 9602"),
    ("fc00::/7", "unique-local", "RFC 4193"),
    ("fe80::/10", "link-local unicast", "RFC 4291"),
    ("ff00::/8", "multicast", "RFC 4291"),
)


@lru_cache(maxsize=1)
def _table() -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str, str]]:
    nets = [(ipaddress.ip_network(n), name, rfc) for n, name, rfc in SPECIAL_RANGES]
    # most specific first, so the first match is the one that applies
    return sorted(nets, key=lambda t: -t[0].prefixlen)


def special_purpose(ip: str) -> dict[str, str] | None:
    """``{"range", "name", "rfc"}`` of the special-purpose block holding ``ip``, or None for an
    address in ordinary (global unicast) space or a string that is not an address."""
    try:
        a = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    for net, name, rfc in _table():
        if a.version == net.version and a in net:
            return {"range": str(net), "name": name, "rfc": rfc}
    return None

"""Everything the analyst's own flows say about an address: owner, activity, peers, hunt status.

``flowpivot ip ADDR... --store DIR`` is the lookup a threat-intelligence portal gives, answered
from the analyst's store. The peers and their session state come from the hunt's own pair pass
(:func:`flowpivot.hunt.pivot.create_pairs`), so an address's profile and a hunt judge a peer's
sessions by the same rules (docs/hunt.md, "Sessions"). With a hunt result, the profile says what
the hunt made of the address: seed, cluster member, new infrastructure, victim, probe, excluded or
near miss, and why.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from typing import Any

from .enrich.special import special_purpose
from .store import DAY_MS, Store, parse_duration, parse_time
from .store.check import require_store

__all__ = ["FORMAT", "profile", "hunt_roles", "flag_letters", "canonical_ip"]

FORMAT = "flowpivot-ip/1"

#: nfdump's TCP flag letters, from the highest bit (CWR) to the lowest (FIN).
_FLAG_LETTERS = "CEUAPRSF"


def flag_letters(flags: int | None) -> str:
    """TCP flags as nfdump prints them: ``CEUAPRSF`` with a dot for every flag not set
    (``......S.`` is a SYN, ``...A.R..`` an RST answer)."""
    v = int(flags or 0)
    return "".join(c if v & (1 << (7 - i)) else "." for i, c in enumerate(_FLAG_LETTERS))


def canonical_ip(text: str) -> str:
    """The canonical form of an address; a ValueError naming it when it is not one (scope ids,
    prefixes and names are refused)."""
    t = text.strip()
    if "%" in t or "/" in t:
        raise ValueError(f"not an address: {text!r} (give one address, without a scope id or prefix)")
    try:
        a = ipaddress.ip_address(t)
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return str(a.ipv4_mapped)  # the store keeps IPv4-mapped addresses as IPv4
    return str(a)


def _window(st: Store, since: Any, until: Any, window: str | None) -> tuple[int, int]:
    """[since, until) in ms: as given; ``window`` (a duration) ends at the store's newest flow;
    by default the whole store."""
    s = parse_time(since) if isinstance(since, str) else since
    u = parse_time(until) if isinstance(until, str) else until
    span = st.time_range()
    if u is None:
        u = (span[1] + 1) if span else 0
    if s is None:
        s = u - parse_duration(window) if window else (span[0] if span else 0)
    if s > u:
        raise ValueError("the window starts after it ends")
    return int(s), int(u)


def profile(
    store: Store | str | os.PathLike[str],
    ips: Sequence[str],
    *,
    asn_dbs: Sequence[str | os.PathLike[str]] = (),
    whois: str | os.PathLike[str] | None = None,
    result: dict[str, Any] | None = None,
    since: Any = None,
    until: Any = None,
    window: str | None = None,
    top: int = 10,
) -> list[dict[str, Any]]:
    """One profile per address (format ``flowpivot-ip/1``, JSON-ready); see docs/ip.md."""
    from .hunt.context import HuntContext
    from .hunt.keys import ip_of, iso, key_of, load_anchors
    from .hunt.pivot import create_pairs, ipkey_macro
    from .hunt.provider import Provider

    st = require_store(store)
    addrs = [canonical_ip(x) for x in ips]
    since_ms, until_ms = _window(st, since, until, window)
    prov = Provider([str(p) for p in asn_dbs], str(whois) if whois else None)
    keys = [key_of(a) for a in addrs]
    ctx = HuntContext(st)
    try:
        ipkey_macro(ctx)
        load_anchors(ctx, "prof_anchors", sorted(set(keys)))
        create_pairs(ctx, "prof_anchors", "prof", since_ms, until_ms, keep_flows=True, services=True, full=True)
        act = {
            r[0]: r[1:]
            for r in ctx.sql(
                """SELECT anchor, min(ts), max(te), count(*), sum(a_pk + p_pk)::UBIGINT, sum(a_by + p_by)::UBIGINT,
                          sum((a_pk + p_pk) * sr)::UBIGINT, sum((a_by + p_by) * sr)::UBIGINT,
                          count(*) FILTER (a_src), count(DISTINCT ipkey(peer_v4, peer_v6)), max(sr), min(sr)
                   FROM prof_flows GROUP BY anchor"""
            ).fetchall()
        }
        days: dict[str, list[dict[str, Any]]] = {}
        for k, d, n, pk, by in ctx.sql(
            f"""SELECT anchor, ts // {DAY_MS} AS d, count(*), sum((a_pk + p_pk) * sr)::UBIGINT,
                       sum((a_by + p_by) * sr)::UBIGINT
                FROM prof_flows GROUP BY ALL ORDER BY anchor, d"""
        ).fetchall():
            days.setdefault(k, []).append(
                {
                    "day": (iso(int(d) * DAY_MS) or "")[:10],
                    "flows": int(n),
                    "packets_est": int(pk),
                    "bytes_est": int(by),
                }
            )
        pairs: dict[str, list[dict[str, Any]]] = {}
        for row in (
            ctx.sql(
                """SELECT anchor, peer, flows, a_flows, p_flows, a_packets + p_packets AS packets,
                      a_bytes + p_bytes AS bytes, a_packets_est + p_packets_est AS packets_est,
                      a_bytes_est + p_bytes_est AS bytes_est, a_flags, p_flags, session, initiator, established,
                      rejected_flows, attempt_flows, first_ms, last_ms, active_days
               FROM prof ORDER BY anchor, bytes_est DESC, flows DESC, peer"""
            )
            .to_arrow_table()
            .to_pylist()
        ):
            pairs.setdefault(row.pop("anchor"), []).append(row)
        ports: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for k, peer, proto, side, port, n in ctx.sql(
            "SELECT anchor, peer, proto, side, port, flows FROM prof_services ORDER BY flows DESC, port"
        ).fetchall():
            # side: whose service the port is (the peer's when the address opened the sessions)
            ports.setdefault((k, peer), []).append(
                {"proto": _proto(proto), "port": int(port), "side": side, "flows": int(n)}
            )
    finally:
        ctx.close()

    peer_ips = sorted({ip_of(p["peer"]) for k in keys for p in pairs.get(k, [])[:top]})
    info = prov.lookup(addrs + peer_ips)
    out = []
    for addr, k in zip(addrs, keys, strict=True):
        a = act.get(k)
        peers = pairs.get(k, [])
        own = info.get(addr, {})
        prof: dict[str, Any] = {
            "format": FORMAT,
            "ip": addr,
            "window": {"start": iso(since_ms), "end": iso(until_ms)},
            "owner": {
                "asn": own.get("asn"),
                "as_name": own.get("as_name"),
                "country": own.get("country"),
                "prefix": own.get("prefix"),
                "status": own.get("status", "unrouted") if prov.enr is not None else None,
                "special": special_purpose(addr),
                "allocation": own.get("allocation") or [],
                "reseller": own.get("reseller"),
                "abuse_mailbox": own.get("abuse_mailbox"),
            },
            "activity": None,
            "peers": [],
            "peers_total": len(peers),
        }
        if a:
            first, last, n, pk, by, pk_e, by_e, as_src, npeers, srmax, srmin = a
            prof["activity"] = {
                "first_seen": iso(first),
                "last_seen": iso(last),
                "flows": int(n),
                "flows_as_source": int(as_src),
                "packets": int(pk),
                "bytes": int(by),
                "packets_est": int(pk_e),
                "bytes_est": int(by_e),
                "sampling_rates": sorted({int(srmin), int(srmax)}),
                "peers": int(npeers),
                "days": days.get(k, []),
            }
        for p in peers[:top]:
            pip = ip_of(p["peer"])
            pi = info.get(pip, {})
            prof["peers"].append(
                {
                    "ip": pip,
                    "asn": pi.get("asn"),
                    "as_name": pi.get("as_name"),
                    "country": pi.get("country"),
                    "special": (special_purpose(pip) or {}).get("name"),
                    "direction": {"anchor": "out", "peer": "in"}.get(p["initiator"], p["initiator"]),
                    "session": p["session"],
                    "flows": int(p["flows"]),
                    "packets": int(p["packets"]),
                    "bytes": int(p["bytes"]),
                    "packets_est": int(p["packets_est"]),
                    "bytes_est": int(p["bytes_est"]),
                    "flags_out": flag_letters(p["a_flags"]),
                    "flags_in": flag_letters(p["p_flags"]),
                    "rejected_flows": int(p["rejected_flows"]),
                    "ports": ports.get((k, p["peer"]), [])[:5],
                    "first_seen": iso(p["first_ms"]),
                    "last_seen": iso(p["last_ms"]),
                    "active_days": int(p["active_days"]),
                }
            )
        if result is not None:
            prof["hunt"] = hunt_roles(result, addr)
        out.append(prof)
    return out


def _proto(p: Any) -> str:
    return {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp"}.get(int(p), str(p)) if p is not None else "?"


def hunt_roles(result: dict[str, Any], ip: str) -> dict[str, Any]:
    """What a hunt result (``flowpivot-hunt/1``) made of ``ip``: a list of roles, each with the
    part of the result that says so, and ``none`` when the hunt never met it."""
    roles: list[dict[str, Any]] = []
    for s in result.get("seeds") or []:
        if s.get("ip") == ip:
            roles.append({"role": "seed", "status": s.get("status"), "sets": s.get("sets"), "detail": s})
    for c in result.get("clusters") or []:
        members = [m if isinstance(m, str) else m.get("ip") for m in c.get("members") or []]
        if ip in members:
            ev = c.get("evidence") or {}
            mine = (ev.get("members") or {}).get(ip) if isinstance(ev, dict) else None
            roles.append(
                {
                    "role": "member",
                    "cluster": c.get("id"),
                    "asn": c.get("asn"),
                    "cluster_confidence": c.get("confidence"),
                    "seeds": len(c.get("seeds") or []),
                    "confidence": (mine or {}).get("confidence"),
                    "detail": mine,
                }
            )
        if ip in (c.get("seeds") or []):
            roles.append({"role": "seed-of-cluster", "cluster": c.get("id"), "members": len(members)})
    for key, role in (("expansion", "new-infrastructure"), ("victims", "victim"), ("probes", "probe")):
        for e in result.get(key) or []:
            if e.get("ip") == ip:
                roles.append({"role": role, "detail": e})
    for e in result.get("excluded") or []:
        if e.get("ip") == ip:
            roles.append({"role": "excluded", "reason": e.get("reason"), "detail": e})
    for e in result.get("near_misses") or []:
        if e.get("ip") == ip:
            roles.append({"role": "near-miss", "reason": e.get("reason") or e.get("why"), "detail": e})
    return {"window": result.get("window"), "roles": roles or [{"role": "none"}]}


# `flowpivot.profile(...)` is this module called as its function (flowpivot/_callable.py)
from ._callable import make_callable as _make_callable  # noqa: E402

_make_callable(__name__, "profile")

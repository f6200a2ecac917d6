"""STIX 2.1 bundle of a hunt, built with the ``stix2`` library, marked with a TLP 2.0 marking.

Objects: the producer's identity; an intrusion-set per named actor; one infrastructure per
cluster and per new host; ipv4-addr/ipv6-addr and autonomous-system SCOs joined by ``belongs-to``;
indicators with STIX patterns (``indicates`` the infrastructure); observed-data per cluster holding
network-traffic summaries with the ``tcp-ext`` flags seen; ``consists-of``, ``communicates-with``,
``uses`` and ``based-on`` relationships. An actor ``uses`` only the infrastructure attributed to it (the
clusters resting on its seed sets and the new hosts found from them), and only those objects'
indicators ``indicates`` it. Victims and excluded addresses are left out on purpose: the bundle is for
sharing, and they are not the actor's.

SDO and SRO ids are uuid5 of their content, and SCO ids are the library's deterministic ids, so the same
hunt gives the same ids on every run and re-imports update instead of duplicating.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import stix2

from .attribution import Attribution
from .model import NAMESPACE, Cluster, Report
from .summary import flags_text, plural, service_text, tcp_flags, volume_text
from .text import canonical_ip, defang, fmt_time, ip_version

__all__ = ["TLP2_IDS", "TLP2_EXTENSION", "tlp_marking", "build_bundle"]

TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
# The FIRST TLP 2.0 marking definitions published by OASIS (cti-stix-common-objects): fixed ids.
TLP2_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}


def tlp_marking(level: str) -> stix2.MarkingDefinition:
    return stix2.MarkingDefinition(
        id=TLP2_IDS[level],
        created="2022-10-01T00:00:00.000Z",
        name=f"TLP:{level.upper()}",
        extensions={TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}},
    )


class _Ids:
    def __init__(self, namespace: uuid.UUID) -> None:
        self.ns = namespace

    def __call__(self, kind: str, *key: object) -> str:
        # Content-derived, laid out as version 4: STIX asks producers for UUIDv4 ids on SDOs and SROs.
        u = uuid.uuid5(self.ns, kind + "|" + "|".join(str(k) for k in key))
        return f"{kind}--{uuid.UUID(bytes=u.bytes, version=4)}"


def _literal(s: str) -> str:
    """A STIX pattern string literal (quotes and backslashes escaped, as the grammar asks)."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pattern(ips: list[str]) -> str:
    """``[ipv4-addr:value = '...' OR ...]`` of canonical addresses: each is checked again here (canonical_ip
    refuses scope ids and anything else that is not an address), so no value can add a clause."""
    terms = []
    for ip in ips:
        c = canonical_ip(ip)
        terms.append(f"{'ipv6-addr' if ip_version(c) == 6 else 'ipv4-addr'}:value = {_literal(c)}")
    return "[" + " OR ".join(terms) + "]"


def _proto(ip: str, l4: str | None) -> list[str]:
    out = ["ipv6" if ip_version(ip) == 6 else "ipv4"]
    if l4:
        out.append(l4.lower())
    return out


def build_bundle(
    report: Report,
    *,
    tlp: str,
    actors: Sequence[Attribution] = (),
    now: datetime,
    producer: str = "flowpivot",
    namespace: uuid.UUID = NAMESPACE,
) -> stix2.Bundle:
    ids = _Ids(namespace)
    marking = tlp_marking(tlp)
    mrefs = [marking.id]
    identity = stix2.Identity(
        id=ids("identity", producer),
        name=producer,
        identity_class="system",
        description="Finds threat-actor infrastructure in network flow telemetry.",
        created=now,
        modified=now,
        object_marking_refs=mrefs,
    )
    common: dict[str, Any] = {
        "created": now,
        "modified": now,
        "created_by_ref": identity.id,
        "object_marking_refs": mrefs,
    }
    objects: dict[str, Any] = {marking.id: marking, identity.id: identity}
    window_start = report.window_start or now

    def add(obj: Any) -> Any:
        objects.setdefault(obj.id, obj)
        return obj

    def rel(src: str, kind: str, dst: str, description: str | None = None) -> None:
        extra = {"description": description} if description else {}
        add(
            stix2.Relationship(
                id=ids("relationship", src, kind, dst),
                source_ref=src,
                relationship_type=kind,
                target_ref=dst,
                **extra,
                **common,
            )
        )

    as_objs: dict[int, Any] = {}
    ip_objs: dict[str, Any] = {}
    asn_of: dict[str, tuple[int | None, str | None]] = {}
    for s in report.seeds:
        asn_of[s.ip] = (s.asn, s.as_name)
    for c in report.clusters:
        for ip in c.members:
            asn_of[ip] = (c.asn, c.as_name)
    for e in report.expansion:
        asn_of[e.ip] = (e.asn, e.as_name)

    def ip_obj(ip: str) -> Any:
        o = ip_objs.get(ip)
        if o is None:
            cls = stix2.IPv6Address if ip_version(ip) == 6 else stix2.IPv4Address
            o = ip_objs[ip] = add(cls(value=ip, object_marking_refs=mrefs))
            asn, name = asn_of.get(ip, (None, None))
            if asn is not None:
                a = as_objs.get(asn)
                if a is None:
                    kw = {"name": name} if name else {}
                    a = as_objs[asn] = add(stix2.AutonomousSystem(number=asn, object_marking_refs=mrefs, **kw))
                rel(o.id, "belongs-to", a.id)
        return o

    actor_objs = [
        (
            a,
            add(
                stix2.IntrusionSet(
                    id=ids("intrusion-set", a.name),
                    name=a.name,
                    description=_actor_description(a, report),
                    **common,
                )
            ),
        )
        for a in actors
    ]

    cluster_infra: dict[str, Any] = {}
    for c in report.clusters:
        infra = add(
            stix2.Infrastructure(
                id=ids("infrastructure", "cluster", c.id, *sorted(c.members)),
                name=f"{c.label}: cluster {c.id}",
                description=_cluster_description(c),
                infrastructure_types=["command-and-control"],
                first_seen=c.first_seen or window_start,
                last_seen=c.last_seen or c.first_seen or window_start,
                confidence=_confidence(c.confidence, c.score),
                **common,
            )
        )
        cluster_infra[c.id] = infra
        for a, obj in actor_objs:
            if a.covers_cluster(c):
                rel(obj.id, "uses", infra.id, f"cluster {c.id} rests on seeds of {a.sets_text()}")
        for ip in c.members:
            rel(infra.id, "consists-of", ip_obj(ip).id)
        for ip in c.seeds:
            rel(infra.id, "communicates-with", ip_obj(ip).id, "member hosts exchanged flows with this seed")
        if c.members:
            ind = add(
                stix2.Indicator(
                    id=ids("indicator", "cluster", c.id, *sorted(c.members)),
                    name=f"Hosts of cluster {c.id} at {c.label}",
                    description=f"Any of the {plural(len(c.members), 'address', 'addresses')} of cluster {c.id}; "
                    "they worked with known malicious infrastructure during the hunt window.",
                    indicator_types=["malicious-activity"],
                    pattern=_pattern(c.members),
                    pattern_type="stix",
                    valid_from=c.first_seen or window_start,
                    confidence=_confidence(c.confidence, c.score),
                    **common,
                )
            )
            rel(ind.id, "indicates", infra.id)
            for a, obj in actor_objs:
                if a.covers_cluster(c):
                    rel(ind.id, "indicates", obj.id)
            od = _observed(c, report, ids, ip_obj, add, common)
            if od is not None:
                rel(ind.id, "based-on", od.id)

    for e in report.expansion:
        label = f"AS{e.asn}" if e.asn is not None else "unknown AS"
        infra = add(
            stix2.Infrastructure(
                id=ids("infrastructure", "host", e.ip),
                name=f"New host {defang(e.ip)} ({label})",
                description=(
                    "Contacted by members of cluster(s) "
                    + (", ".join(e.clusters) or "?")
                    + "; not in the seed list. Candidate new infrastructure, not yet confirmed."
                ),
                infrastructure_types=["unknown"],
                first_seen=e.first_seen or window_start,
                last_seen=e.last_seen or e.first_seen or window_start,
                confidence=_confidence(e.confidence, e.score),
                **common,
            )
        )
        rel(infra.id, "consists-of", ip_obj(e.ip).id)
        for cid in e.clusters:
            if cid in cluster_infra:
                rel(cluster_infra[cid].id, "communicates-with", infra.id)
        for a, obj in actor_objs:
            if a.covers_expansion(e):
                rel(obj.id, "uses", infra.id)
        ind = add(
            stix2.Indicator(
                id=ids("indicator", "host", e.ip),
                name=f"New host {defang(e.ip)}",
                description="Contacted by cluster members; not in the seed list. Review before blocking.",
                indicator_types=["anomalous-activity"],
                pattern=_pattern([e.ip]),
                pattern_type="stix",
                valid_from=e.first_seen or window_start,
                confidence=_confidence(e.confidence, e.score),
                **common,
            )
        )
        rel(ind.id, "indicates", infra.id)
        for a, obj in actor_objs:
            if a.covers_expansion(e):
                rel(ind.id, "indicates", obj.id)

    # Seeds that belong to no cluster still get their address and AS, so the bundle lists every seed.
    for s in report.seeds:
        ip_obj(s.ip)
    return stix2.Bundle(objects=list(objects.values()))


def _confidence(confidence: float | None, score: float | None = None) -> int | None:
    """STIX confidence (0-100) from the hunt's confidence, else from its score (older results)."""
    value = confidence if confidence is not None else score
    if value is None:
        return None
    return max(0, min(100, round(value * 100 if value <= 1 else value)))


def _actor_description(a: Attribution, report: Report) -> str:
    if a.complete:
        return f"Attributed everything this hunt found ({a.sets_text()})."
    ids = [c.id for c in report.clusters if a.covers_cluster(c)]
    return (
        f"Attributed only what rests on {a.sets_text()}: {plural(len(a.seeds), 'seed')}, "
        + (f"clusters {', '.join(ids)}" if ids else "no cluster")
        + f" and {plural(len(a.expansion), 'new host')}."
    )


def _cluster_description(c: Cluster) -> str:
    verb = "established TCP sessions with" if c.established else "exchanged flows with"
    bits = [
        f"{plural(len(c.members), 'host')} at {c.label} {verb} {plural(len(c.seeds), 'seed host')} "
        f"between {fmt_time(c.first_seen)} and {fmt_time(c.last_seen)}."
    ]
    if c.services:
        bits.append("Services: " + "; ".join(service_text(s) for s in c.services) + ".")
    bits.append(f"Volume: {volume_text(c)} (estimated).")
    f = tcp_flags(c.evidence)
    if f is not None:
        bits.append(f"TCP flags seen: {flags_text(f)}.")
    if c.initiator:
        bits.append(f"Initiator: {c.initiator}.")
    return " ".join(bits)


def _observed(c: Cluster, report: Report, ids: _Ids, ip_obj: Any, add: Any, common: dict[str, Any]) -> Any:
    """observed-data for a cluster: one network-traffic per (member, seed) pair when the hunt lists pairs,
    else one per member towards its main service."""
    flags = tcp_flags(c.evidence)
    mrefs = common["object_marking_refs"]
    top = max(c.services, key=lambda s: s.get("flows") or 0) if c.services else None
    traffic = []
    pairs = report.cluster_pairs(c)
    if pairs:
        for p in pairs[:2000]:
            seed_first = p.initiator == "seed"
            src, dst = (p.seed, p.peer) if seed_first else (p.peer, p.seed)
            fs, fd = (p.flags_seed, p.flags_peer) if seed_first else (p.flags_peer, p.flags_seed)
            traffic.append(
                _traffic(src, dst, p.port, p.proto or "tcp", fs, ip_obj, mrefs, fd, p.first_seen, p.last_seen)
            )
    else:
        for m in c.members:
            traffic.append(
                _traffic(
                    m if c.initiator != "seeds" else None,
                    None if c.initiator != "seeds" else m,
                    top["port"] if top else None,
                    top["proto"] if top else None,
                    flags,
                    ip_obj,
                    mrefs,
                )
            )
    traffic = [add(t) for t in traffic if t is not None]
    if not traffic:
        return None
    refs = list(dict.fromkeys([t.id for t in traffic] + [ip_obj(ip).id for ip in c.members]))
    first = c.first_seen or report.window_start or common["created"]
    last = c.last_seen or first
    return add(
        stix2.ObservedData(
            id=ids("observed-data", c.id, *sorted(refs)),
            first_observed=first,
            last_observed=last,
            number_observed=max(1, min(999_999_999, c.flows or 1)),
            object_refs=refs,
            **common,
        )
    )


def _traffic(
    src: str | None,
    dst: str | None,
    port: int | None,
    proto: str | None,
    flags: int | None,
    ip_obj: Any,
    mrefs: list[str],
    dst_flags: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Any:
    if src is None and dst is None:
        return None
    anchor = src or dst or ""
    kw: dict[str, Any] = {"protocols": _proto(anchor, proto), "object_marking_refs": mrefs}
    if src:
        kw["src_ref"] = ip_obj(src).id
    if dst:
        kw["dst_ref"] = ip_obj(dst).id
    if port is not None and 0 <= port <= 65535:
        kw["dst_port"] = port
    if start is not None:
        kw["start"] = start
    if end is not None and (start is None or end >= start):
        kw["end"] = end
        kw["is_active"] = False
    if (proto or "").lower() == "tcp" and (flags is not None or dst_flags is not None):
        ext = {}
        if flags is not None:
            ext["src_flags_hex"] = f"{flags:02x}"
        if dst_flags is not None:
            ext["dst_flags_hex"] = f"{dst_flags:02x}"
        kw["extensions"] = {"tcp-ext": ext}
    return stix2.NetworkTraffic(**kw)

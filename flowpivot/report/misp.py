"""MISP event of a hunt, built with pymisp: ip-port and netflow objects, TLP and PAP tags.

Each cluster member, new host and seed is an ``ip-port`` object; when the hunt lists (member, seed)
pairs each pair is a ``netflow`` object with its port, protocol, flags and flow count. Victims and
excluded addresses are left out: the event is for sharing. A named actor's galaxy tag goes on the
event when everything in it is attributed to the actor; otherwise only on the address attributes of
the objects attributed to it (its seed sets' seeds, the clusters and new hosts resting on them). UUIDs are uuid5 of the content and the
timestamps come from the injected clock, so the same hunt gives the same event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymisp import MISPEvent, MISPObject

from .attribution import Attribution
from .model import NAMESPACE, Cluster, Pair, Report
from .summary import (
    actors_text,
    answering,
    flags_text,
    host_provider_label,
    plural,
    service_text,
    tcp_flags,
    volume_text,
)

__all__ = ["build_event", "actor_tag", "TLP_TAG", "PAP_TAG", "DISTRIBUTION"]

TLP_TAG = {
    "clear": "tlp:clear",
    "green": "tlp:green",
    "amber": "tlp:amber",
    "amber+strict": "tlp:amber+strict",
    "red": "tlp:red",
}
# PAP (what the recipient may do with it) follows TLP unless told otherwise: amber+strict has no PAP twin.
PAP_TAG = {
    "clear": "PAP:CLEAR",
    "green": "PAP:GREEN",
    "amber": "PAP:AMBER",
    "amber+strict": "PAP:AMBER",
    "red": "PAP:RED",
}
# MISP distribution: 0 your organisation only, 1 this community, 3 all communities.
DISTRIBUTION = {"clear": 3, "green": 1, "amber": 0, "amber+strict": 0, "red": 0}


def build_event(
    report: Report,
    *,
    tlp: str,
    actors: Sequence[Attribution] = (),
    now: datetime,
    ref: str,
    pap: str | None = None,
    namespace: uuid.UUID = NAMESPACE,
) -> MISPEvent:
    def uid(*key: object) -> str:
        return str(uuid.uuid5(namespace, "misp|" + "|".join(str(k) for k in key)))

    ev = MISPEvent()
    ev.uuid = uid("event", ref)
    n_hosts = sum(len(c.members) for c in report.clusters) + len(report.expansion)
    names = actors_text([a.name for a in actors])
    ev.info = (
        f"flowpivot hunt{(' for ' + names) if names else ''}: {plural(len(report.clusters), 'cluster')}, "
        f"{plural(n_hosts, 'host')} found from {plural(len(report.seeds), 'seed')}"
    )
    ev.set_date(now.date())
    ev.timestamp = now
    ev.threat_level_id = 2
    ev.analysis = 1
    ev.distribution = DISTRIBUTION[tlp]
    ev.published = False
    ev.add_tag(TLP_TAG[tlp])
    ev.add_tag(pap or PAP_TAG[tlp])
    for a in actors:
        if a.complete:
            ev.add_tag(actor_tag(a.name))
    partial = [a for a in actors if not a.complete]

    def obj(
        name: str, key: tuple[object, ...], comment: str, first: datetime | None, last: datetime | None
    ) -> MISPObject:
        o = MISPObject(name, standalone=False)
        o.uuid = uid(name, *key)
        o.comment = comment
        o.distribution = 5  # inherit from the event
        if first:
            o.first_seen = first
        if last and (not first or last >= first):
            o.last_seen = last
        return o

    def attr(
        o: MISPObject,
        relation: str,
        value: Any,
        to_ids: bool = False,
        comment: str | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        a = o.add_attribute(relation, value=value, to_ids=to_ids, comment=comment or "", distribution=5)
        if a is not None:
            a.uuid = uid(o.uuid, relation, value)
            a.timestamp = now
            for t in tags:
                a.add_tag(t)

    def tags_for(covered: Any) -> list[str]:
        """The actor tags of the partly attributed actors for which ``covered(attribution)`` holds."""
        return [actor_tag(a.name) for a in partial if covered(a)]

    member_obj: dict[str, MISPObject] = {}
    for c in report.clusters:
        ports = sorted({s["port"] for s in c.services if s.get("port") is not None})
        for ip in c.members:
            o = obj("ip-port", ("member", c.id, ip), f"cluster {c.id}: {c.label}", c.first_seen, c.last_seen)
            attr(
                o,
                "ip",
                ip,
                to_ids=True,
                comment=f"cluster {c.id} member",
                tags=tags_for(lambda a, c=c: a.covers_cluster(c)),
            )
            for p in ports:
                attr(o, "dst-port", p)
            if c.asn is not None:
                attr(o, "AS", f"AS{c.asn}")
            if c.country:
                attr(o, "country-code", c.country)
            attr(o, "text", _cluster_text(c))
            o.timestamp = now
            ev.add_object(o)
            member_obj[ip] = o
        for p in report.cluster_pairs(c)[:2000]:
            _netflow(ev, obj, attr, c, p, report, now, tags_for(lambda a, p=p: a.covers_pair(p)))

    for e in report.expansion:
        o = obj("ip-port", ("expansion", e.ip), "new host: contacted by cluster members", e.first_seen, e.last_seen)
        attr(
            o,
            "ip",
            e.ip,
            to_ids=True,
            comment="candidate new infrastructure",
            tags=tags_for(lambda a, e=e: a.covers_expansion(e)),
        )
        if e.asn is not None:
            attr(o, "AS", f"AS{e.asn}")
        if e.country:
            attr(o, "country-code", e.country)
        attr(
            o,
            "text",
            f"{host_provider_label(report, e)}; contacted by {', '.join(e.contacted_by) or '?'}"
            f" (clusters {', '.join(e.clusters) or '?'})",
        )
        o.timestamp = now
        for m in e.contacted_by:
            if m in member_obj:
                oref = o.add_reference(member_obj[m].uuid, "contacted-by")
                oref.uuid = uid("ref", o.uuid, member_obj[m].uuid)
        ev.add_object(o)

    for s in report.seeds:
        o = obj("ip-port", ("seed", s.ip), f"seed ({s.status})", s.first_seen, s.last_seen)
        attr(
            o,
            "ip",
            s.ip,
            to_ids=answering(s, report.window_end),
            comment=f"seed, {s.status}" + (f": {s.comment}" if s.comment else ""),
            tags=tags_for(lambda a, ip=s.ip: ip in a.seeds),
        )
        if s.asn is not None:
            attr(o, "AS", f"AS{s.asn}")
        if s.country:
            attr(o, "country-code", s.country)
        o.timestamp = now
        ev.add_object(o)
    return ev


def actor_tag(name: str) -> str:
    # a machine tag's value is double-quoted: a quote in the name would end it early
    return f'misp-galaxy:threat-actor="{name.replace(chr(34), chr(39))}"'


def _cluster_text(c: Cluster) -> str:
    bits = [f"{'established sessions with' if c.established else 'exchanged flows with'} {len(c.seeds)} seeds"]
    if c.services:
        bits.append("services " + ", ".join(service_text(s) for s in c.services))
    bits.append("volume " + volume_text(c))
    f = tcp_flags(c.evidence)
    if f is not None:
        bits.append("TCP flags " + flags_text(f))
    return "; ".join(bits)


def _netflow(
    ev: MISPEvent, obj: Any, attr: Any, c: Cluster, p: Pair, report: Report, now: datetime, tags: list[str]
) -> None:
    seed_first = p.initiator == "seed"
    src, dst = (p.seed, p.peer) if seed_first else (p.peer, p.seed)
    o = obj("netflow", ("pair", c.id, src, dst, p.port), f"cluster {c.id}: member-seed pair", p.first_seen, p.last_seen)
    attr(o, "ip-src", src, tags=tags)
    attr(o, "ip-dst", dst, tags=tags)
    if p.port is not None and 0 <= p.port <= 65535:
        attr(o, "dst-port", p.port)
    if p.proto and p.proto.upper() in ("TCP", "UDP", "ICMP", "IP"):
        attr(o, "protocol", p.proto.upper())
    flags = (
        (p.flags_seed or 0) | (p.flags_peer or 0) if (p.flags_seed is not None or p.flags_peer is not None) else None
    )
    if flags is not None:
        attr(o, "tcp-flags", flags_text(flags).split(" ")[0])
    if p.flows is not None and p.flows >= 0:
        attr(o, "flow-count", p.flows)
    if p.first_seen:
        attr(o, "first-packet-seen", p.first_seen)
    if p.last_seen:
        attr(o, "last-packet-seen", p.last_seen)
    seed = report.seed(p.seed)
    as_member = f"AS{c.asn}" if c.asn is not None else None
    as_seed = f"AS{seed.asn}" if seed and seed.asn is not None else None
    src_as, dst_as = (as_seed, as_member) if seed_first else (as_member, as_seed)
    if src_as:
        attr(o, "src-as", src_as)
    if dst_as:
        attr(o, "dst-as", dst_as)
    o.timestamp = now
    ev.add_object(o)

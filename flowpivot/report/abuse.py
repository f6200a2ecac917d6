"""Abuse letters: one plain-text report per hosting provider, for responsible disclosure.

A provider is an autonomous system. Its letter lists the cluster members, the new hosts and any seed
in that AS that still answered at the end of the window, each with its evidence (established sessions,
first and last seen, what the flows show of its state) and the time window; addresses are defanged so
that mail filters and ticket systems do not turn them into links. The letter is addressed to the
abuse-mailbox of the most specific whois object that has one; when none is known it says so and where
to look. Dark and unanswered seeds are not reported: they no longer serve, or never did.

Two rules keep a letter from saying more than the flows do: a host is called active only when the
result says it answered (:func:`.summary.answering`), and an actor is named only for hosts tied to
that actor's seed sets (:mod:`.attribution`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..textsafe import visible
from .attribution import Attribution
from .model import Allocation, Cluster, Expansion, Report
from .summary import (
    actors_text,
    answering,
    evidence_facts,
    flags_text,
    member_evidence,
    plural,
    seed_state_text,
    service_text,
    tcp_flags,
    volume_text,
)
from .text import clean, defang, fmt_time, ip_sort_key

__all__ = ["render_abuse_letters_for", "Provider", "providers"]

TLP_SHARING = {
    "clear": "TLP:CLEAR: there is no limit on sharing it.",
    "green": "TLP:GREEN: you may share it within your community, not publicly.",
    "amber": "TLP:AMBER: you may share it within your organisation and with your clients and contractors "
    "who need it to act on it.",
    "amber+strict": "TLP:AMBER+STRICT: you may share it only within your organisation, with those who need it to act.",
    "red": "TLP:RED: it is for the named recipients only; please do not forward it.",
}


@dataclass
class Provider:
    asn: int
    name: str
    country: str | None
    abuse: str | None = None
    whois: list[Allocation] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    new_hosts: list[tuple[str, str]] = field(default_factory=list)  # (ip, why)
    active_seeds: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"AS{self.asn}"


def providers(report: Report) -> list[Provider]:
    """Providers that have something to act on, in order of first appearance (clusters first)."""
    out: dict[int, Provider] = {}

    def get(asn: int, name: str | None, country: str | None) -> Provider:
        p = out.get(asn)
        if p is None:
            p = out[asn] = Provider(asn=asn, name=name or f"AS{asn}", country=country)
        return p

    for c in report.lead_clusters():
        if c.asn is None:
            continue
        p = get(c.asn, c.provider, c.country)
        p.clusters.append(c)
        if not p.abuse and c.abuse_mailbox:
            p.abuse = c.abuse_mailbox
        if not p.whois and c.allocation:
            p.whois = c.allocation
        if p.name == f"AS{c.asn}" and c.provider:
            p.name = c.provider
    for e in report.expansion:
        if e.asn is None:
            continue
        name = report.provider_name(e.asn, e.as_name)
        p = get(e.asn, name, e.country)
        if e.allocation:
            if not p.abuse:
                p.abuse = next((a.abuse_mailbox for a in e.allocation if a.abuse_mailbox), None)
            if not p.whois:
                p.whois = e.allocation
            if p.name in (f"AS{e.asn}", name):
                p.name = next((a.org_name for a in e.allocation if a.org_name), p.name)
        via = ", ".join(defang(ip) for ip in e.contacted_by)
        p.new_hosts.append((e.ip, f"contacted by {via}" if via else "contacted by cluster members"))
    for s in report.seeds:
        if answering(s, report.window_end) and s.asn is not None:
            get(s.asn, report.provider_name(s.asn, s.as_name), s.country).active_seeds.append(s.ip)
    return list(out.values())


def _sender(report: Report, reporter: str | None) -> str:
    if reporter:
        return clean(reporter) or ""
    r = report.parameters.get("reporter") if isinstance(report.parameters, dict) else None
    return (clean(r) or "") if isinstance(r, str) and r.strip() else "[name, organisation, and how to reach you]"


def _host_lines(ip: str, lines: list[str]) -> list[str]:
    return [f"  {defang(ip)}"] + [f"      {x}" for x in lines if x]


def _who(names: list[str]) -> str:
    return f"infrastructure that public reporting attributes to {actors_text(names)}"


def _new_host_evidence(e: Expansion | None) -> list[str]:
    if e is None:
        return []
    bits = []
    if e.established_with is not None:
        bits.append(f"established sessions with {plural(e.established_with, 'cluster host')}")
    if e.first_seen or e.last_seen:
        bits.append(f"first seen {fmt_time(e.first_seen)}, last seen {fmt_time(e.last_seen)}")
    if e.confidence is not None:
        bits.append(f"confidence {e.confidence:.2f}")
    return ["; ".join(bits)] if bits else []


def _cluster_section(c: Cluster, report: Report, actors: Sequence[Attribution], shared: bool) -> list[str]:
    L: list[str] = []
    mine = [a for a in actors if a.covers_cluster(c)]
    L.append(
        f"Hosts ({plural(len(c.members), 'address', 'addresses')}, cluster {c.id}"
        + (f", worked with {_who([a.name for a in mine])}" if mine and not shared else "")
        + "):"
    )
    for ip in sorted(c.members, key=ip_sort_key):
        L += _host_lines(ip, [member_evidence(report, c, ip).text()])
    L.append("")
    L.append("Evidence:")
    how = "completed TCP sessions (handshake seen)" if c.established else "exchanged traffic"
    init = {"members": "these hosts opened the connections", "seeds": "the other side opened the connections"}
    seeds = set(c.seeds)
    named = []
    for a in mine:
        n = len(seeds & a.seeds)
        named.append(
            f"{'all' if n == len(seeds) else f'{n:,}'} of which public reporting attributes to {clean(a.name)}"
        )
    L.append(
        f"  - These hosts {how} with {plural(len(c.seeds), 'server')} on our list of known malicious infrastructure"
        + (f" ({'; '.join(named)})" if named else "")
        + (f"; {init[c.initiator]}" if c.initiator in init else "")
        + "."
    )
    if c.services:
        L.append("  - Services: " + "; ".join(service_text(s) for s in c.services) + ".")
    flags = tcp_flags(c.evidence)
    if flags is not None:
        L.append(f"  - TCP flags seen: {flags_text(flags)}.")
    L.append(f"  - Volume: {volume_text(c)} (estimated from sampled flow records).")
    for k, v in evidence_facts(c.evidence):
        if "flag" in k.lower() or "pair detail" in k.lower():
            continue
        L.append(f"  - {k}: {v}")
    L.append("  - The servers they contacted (for your correlation), with what the flows show of each:")
    for ip in sorted(c.seeds, key=ip_sort_key):
        s = report.seed(ip)
        state = seed_state_text(s, report.window_end) if s else ""
        L.append(f"      {defang(ip):<40} {state}".rstrip())
    L.append("")
    return L


def _letter(
    p: Provider, report: Report, *, tlp: str, actors: Sequence[Attribution], now: datetime, ref: str, sender: str
) -> str:
    L: list[str] = []
    to = p.abuse or f"(no abuse contact in the whois data; look up the abuse-c of AS{p.asn} with whois or RDAP)"
    start, end = fmt_time(report.window_start), fmt_time(report.window_end)
    hosts_n = sum(len(c.members) for c in p.clusters) + len(p.new_hosts) + len(p.active_seeds)
    L.append(f"To: {to}")
    L.append(
        f"Subject: [TLP:{tlp.upper()}] {plural(hosts_n, 'host')} in AS{p.asn} ({p.name}) working with known malicious infrastructure"
    )
    L.append(f"Date: {now.strftime('%Y-%m-%d')}")
    L.append(f"Our reference: {ref}-{p.key}")
    L.append("")
    L.append(f"Dear {p.name} abuse team,")
    L.append("")
    # The actor is named for the whole letter only when every host in it is tied to its seed sets;
    # otherwise each section names it for its own hosts, and hosts from other sets never get the name.
    ips = [m for c in p.clusters for m in c.members] + [ip for ip, _ in p.new_hosts] + p.active_seeds
    whole = [a.name for a in actors if ips and all(a.covers_host(ip) for ip in ips)]
    who = _who(whole) if whole else "known malicious infrastructure"
    L.append(
        f"We are reporting {plural(hosts_n, 'host')} in your network (AS{p.asn}"
        + (f", {p.country}" if p.country else "")
        + f") that our network flow telemetry shows working with {who}."
    )
    L.append(f"Time window: {start} to {end}. All times are UTC.")
    L.append("Addresses are defanged: read [.] as a dot and [:] as a colon.")
    L.append("")

    for c in p.clusters:
        L += _cluster_section(c, report, actors, bool(whole))

    if p.new_hosts:
        where = "the hosts above" if p.clusters else "hosts of the clusters we found in other networks"
        L.append(f"Further hosts in your network contacted by {where} ({len(p.new_hosts)}):")
        for ip, why in sorted(p.new_hosts, key=lambda x: ip_sort_key(x[0])):
            e = next((x for x in report.expansion if x.ip == ip), None)
            names = [a.name for a in actors if a.covers_host(ip)] if not whole else []
            L += _host_lines(ip, [why, *_new_host_evidence(e), f"tied to {_who(names)}" if names else ""])
        L.append("")
    if p.active_seeds:
        L.append(
            "Known malicious servers in your network that still answered connections at the end of the window "
            f"({len(p.active_seeds)}):"
        )
        for ip in sorted(p.active_seeds, key=ip_sort_key):
            s = report.seed(ip)
            names = [a.name for a in actors if a.covers_host(ip)] if not whole else []
            lines = [
                seed_state_text(s, report.window_end) if s else "",
                f"first seen {fmt_time(s.first_seen)}, last seen {fmt_time(s.last_seen)}" if s else "",
                f"listed as {_who(names)}" if names else "",
            ]
            L += _host_lines(ip, lines)
        L.append("")

    if p.whois:
        L.append("Allocation (whois, most specific first):")
        for a in p.whois:
            bits = [defang(a.range) if a.range else None, a.netname, a.org_name, a.status, a.country]
            L.append("  " + " | ".join(b for b in bits if b) + (f" ({a.source})" if a.source else ""))
        L.append("")

    L.append(
        "We ask you to investigate these hosts and, if you confirm the abuse, to suspend them and keep "
        "the related logs, which law enforcement may ask for. We would be glad to hear what you find."
    )
    L.append("")
    L.append(f"This report is {TLP_SHARING.get(tlp, 'TLP:' + tlp.upper())}")
    L.append(
        "Flow records show connections and volumes, not content; the volumes are estimates. A host is said to "
        "answer only where the flows show it completing sessions."
    )
    L.append("")
    L.append("Regards,")
    L.append(sender)
    # every value was cleaned when the result was read; this also covers names given by the caller (actors)
    return visible("\n".join(L), keep="\n") + "\n"


def render_abuse_letters_for(
    report: Report,
    *,
    tlp: str,
    actors: Sequence[Attribution] = (),
    now: datetime,
    ref: str,
    reporter: str | None = None,
) -> dict[str, str]:
    sender = _sender(report, reporter)
    return {
        p.key: _letter(p, report, tlp=tlp, actors=actors, now=now, ref=ref, sender=sender) for p in providers(report)
    }

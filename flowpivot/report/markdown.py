"""Markdown summary of a hunt for tickets and write-ups (CommonMark with GitHub tables)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..textsafe import visible
from .attribution import Attribution
from .model import Cluster, Report
from .summary import (
    evidence_facts,
    flat_items,
    host_provider_label,
    member_evidence,
    plural,
    provider_label,
    seed_state_text,
    service_text,
    summary_paragraphs,
    volume_text,
)
from .text import canonical_ip, clean, defang, fmt_num, fmt_time, md, md_cell, md_code

__all__ = ["render_markdown_report"]


def _code(ip: str) -> str:
    # Only canonical addresses reach here (model.py checked them); md_code holds whatever it is given.
    return md_code(defang(ip), cell=True)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def actor_line(report: Report, a: Attribution) -> str:
    """Which sets an actor covers and what that attributes to it (plain text)."""
    if a.complete:
        return f"{clean(a.name)} ({a.sets_text()}: everything in this report)"
    bits = [plural(len(a.seeds), "seed")]
    ids = [c.id for c in report.clusters if a.covers_cluster(c)]
    bits.append(f"clusters {', '.join(ids)}" if ids else "no cluster")
    bits.append(plural(len(a.expansion), "new host"))
    return f"{clean(a.name)} ({a.sets_text()}: " + ", ".join(bits) + ")"


def _num(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "–"


def _cluster_section(report: Report, c: Cluster, actors: Sequence[Attribution]) -> list[str]:
    L = [f"### {md(c.id)}: {md(c.label)}", ""]
    if c.asn is not None or c.as_name:
        L.append(f"- Autonomous system: {'AS' + str(c.asn) if c.asn is not None else '–'} {md(c.as_name)}".rstrip())
    if c.confidence is not None:
        L.append(f"- Confidence: {c.confidence:.2f}")
    if actors:
        names = [a.name for a in actors if a.covers_cluster(c)]
        L.append("- Attributed to: " + (md(", ".join(names)) if names else "none of the named actors"))
    L.append(f"- Members ({len(c.members)}): " + ", ".join(_code(ip) for ip in c.members))
    ev = [(ip, member_evidence(report, c, ip).text()) for ip in c.members]
    if any(t for _, t in ev):
        L += [f"  - {_code(ip)}: {md(t)}" for ip, t in ev if t]
    L.append(f"- Seeds ({len(c.seeds)}): " + ", ".join(_code(ip) for ip in c.seeds))
    links = c.evidence.get("links") if isinstance(c.evidence, dict) else None
    if isinstance(links, list) and links:
        L.append("- Why one cluster:")
        for link in links[:20]:
            if not isinstance(link, dict):
                continue
            pair = [report_ip(x) for x in link.get("members") or []]
            seeds = [report_ip(x) for x in link.get("seeds") or []]
            hosts = [report_ip(x) for x in link.get("hosts") or []]
            what = []
            if any(seeds):
                what.append(plural(sum(1 for x in seeds if x), "shared seed"))
            if any(hosts):
                what.append(plural(sum(1 for x in hosts if x), "shared host"))
            L.append(
                "  - "
                + " + ".join(_code(x) for x in pair if x)
                + (": " + ", ".join(what) if what else "")
                + (" (" + ", ".join(_code(x) for x in seeds if x) + ")" if any(seeds) else "")
            )
    if c.services:
        L.append("- Services: " + md(", ".join(service_text(s) for s in c.services)))
    L.append(f"- Volume: {md(volume_text(c))}")
    facts = evidence_facts(c.evidence)
    if facts:
        L.append("- Evidence:")
        L += [f"  - {md(k)}: {md(v)}" for k, v in facts]
    if c.allocation:
        L.append("- Allocation (whois, most specific first):")
        for a in c.allocation:
            bits = [defang(a.range) if a.range else None, a.netname, a.org_name, a.org, a.status, a.country]
            line = " · ".join(md(b) for b in bits if b)
            src = f" ({md(a.source)})" if a.source else ""
            abuse = f", abuse: {md(a.abuse_mailbox)}" if a.abuse_mailbox else ""
            bad = f", abuse-mailbox not usable: {md(a.abuse_raw)}" if a.abuse_raw else ""
            L.append(f"  - {line}{src}{abuse}{bad}")
    L.append("")
    return L


def report_ip(value: Any) -> str | None:
    """An address from a free-form part of the result (evidence), or None when it is not one."""
    try:
        return canonical_ip(value)
    except ValueError:
        return None


def _count(n: int | None) -> str:
    return f"{n:,}" if n is not None else "–"


def _seed_sections(report: Report, actors: Sequence[Attribution]) -> list[str]:
    L: list[str] = []
    if report.seed_sets:
        L += ["## Seed sets", ""]
        L += _table(
            ["Set", "Files", "Seeds"] + (["Attributed to"] if actors else []),
            [
                [md_cell(name), md_cell(", ".join(v.get("files") or [])), _count(v.get("count"))]
                + (
                    [md_cell(", ".join(a.name for a in actors if a.actor.sets is None or name in a.actor.sets))]
                    if actors
                    else []
                )
                for name, v in report.seed_sets.items()
            ],
        )
        L.append("")
    if not report.seeds:
        return L
    L += ["## Seeds", ""]
    in_clusters = report.seed_clusters()
    L += _table(
        [
            "IP",
            "Provider",
            "Status",
            "Last answered",
            "Unanswered after",
            "First seen",
            "Last seen",
            "Sets",
            "Clusters",
            "Comment",
        ],
        [
            [
                _code(s.ip),
                md_cell(host_provider_label(report, s)),
                md_cell(f"{s.status}: {seed_state_text(s, report.window_end)}"),
                fmt_time(s.last_answered),
                _count(s.unanswered_after),
                fmt_time(s.first_seen),
                fmt_time(s.last_seen),
                md_cell(", ".join(s.sets)),
                md_cell(", ".join(in_clusters.get(s.ip, []))),
                md_cell(s.comment),
            ]
            for s in report.seeds
        ],
    )
    L.append("")
    return L


def _victims(report: Report) -> list[str]:
    if not report.victims:
        return []
    L = ["## Likely victims", ""]
    L += _table(
        ["IP", "Network", "Seeds", "Port", "State", "Connections", "Established", "Rejected", "Unanswered", "Interval"],
        [
            [
                _code(v.ip),
                md_cell(provider_label(v.asn, v.as_name, None)),
                ", ".join(_code(ip) for ip in v.seeds) or "–",
                str(v.port) if v.port is not None else "–",
                md_cell(v.state),
                _count(v.connections),
                _count(v.established_flows),
                _count(v.rejected_flows),
                _count(v.unanswered_flows),
                f"{v.interval_s:,.0f} s" if v.interval_s is not None else "–",
            ]
            for v in report.victims
        ],
    )
    L.append("")
    return L


def _probes(report: Report) -> list[str]:
    if not report.probes:
        return []
    L = ["## Probes", "", "Bursts of attempts to one seed port: tool runs, neither clustered nor victims.", ""]
    L += _table(
        ["Prober", "Network", "Seed", "Service", "Kind", "State", "Attempts", "Span", "Rate", "First seen"],
        [
            [
                _code(p.ip),
                md_cell(provider_label(p.asn, p.as_name, None)),
                _code(p.seed) if p.seed else "–",
                md_cell(f"{p.proto or '?'}/{p.port if p.port is not None else '*'}"),
                md_cell(p.kind),
                md_cell(p.state),
                _count(p.attempts),
                f"{p.span_s:,.0f} s" if p.span_s is not None else "–",
                f"{p.rate_per_s:,.1f}/s" if p.rate_per_s is not None else "–",
                fmt_time(p.first_seen),
            ]
            for p in report.probes
        ],
    )
    L.append("")
    return L


def _near_misses(report: Report) -> list[str]:
    if not report.near_misses_total:
        return []
    L = ["## Near misses", ""]
    n, total = len(report.near_misses), report.near_misses_total
    listed = f" ({n:,} listed, the most evidence first)" if n < total else ""
    L += [f"{plural(total, 'host')} came close to a cluster but fell short{listed}.", ""]
    if report.near_misses:
        L += _table(
            ["IP", "Provider", "Reason", "Detail", "Seeds", "Established seeds", "Substantial seeds"],
            [
                [
                    _code(x.ip),
                    md_cell(provider_label(x.asn, report.provider_name(x.asn, x.as_name), x.country)),
                    md_cell(x.reason),
                    md_cell(x.detail),
                    ", ".join(_code(ip) for ip in x.seeds) or "–",
                    _count(x.established_seeds),
                    _count(x.substantial_seeds),
                ]
                for x in report.near_misses
            ],
        )
        L.append("")
    return L


def render_markdown_report(
    report: Report, *, tlp: str, actors: Sequence[Attribution] = (), now: datetime, ref: str
) -> str:
    L: list[str] = []
    L.append("# flowpivot hunt report")
    L.append("")
    L.append(f"**TLP:{tlp.upper()}** · generated {fmt_time(now)} · reference {md_code(ref)}")
    L.append("")
    days = report.days
    span = f" ({days:.0f} days)" if days is not None else ""
    L.append(f"Window: {fmt_time(report.window_start)} to {fmt_time(report.window_end)}{span}")
    for a in actors:
        L.append("")
        L.append(f"Actor: {md(actor_line(report, a))}")
    L.append("")
    L.append("IP addresses are defanged: `[.]` stands for `.` and `[:]` for `:`.")
    L.append("")
    L.append("## Summary")
    L.append("")
    for p in summary_paragraphs(report, actors):
        L.append(md(p, 10_000))
        L.append("")

    if report.clusters:
        L.append("## Clusters")
        L.append("")
        rows = []
        for c in report.clusters:
            rows.append(
                [
                    md_cell(c.id),
                    md_cell(c.provider),
                    f"AS{c.asn}" if c.asn is not None else "–",
                    md_cell(c.country),
                    str(len(c.members)),
                    str(len(c.seeds)),
                    "yes" if c.established else "no",
                    md_cell(c.initiator),
                    md_cell(", ".join(service_text(s) for s in c.services[:4])),
                    md_cell(volume_text(c)),
                    fmt_time(c.first_seen),
                    fmt_time(c.last_seen),
                    fmt_num(c.score),
                    _num(c.confidence),
                ]
            )
        L += _table(
            [
                "Cluster",
                "Provider",
                "ASN",
                "Country",
                "Members",
                "Seeds",
                "Established",
                "Initiator",
                "Services",
                "Volume (est.)",
                "First seen",
                "Last seen",
                "Score",
                "Confidence",
            ],
            rows,
        )
        L.append("")
        for c in report.clusters:
            L += _cluster_section(report, c, actors)

    if report.overlaps:
        L.append("## Overlaps")
        L.append("")
        L += _table(
            ["Clusters", "Shared seeds", "Jaccard", "Seeds"],
            [
                [
                    md_cell(" + ".join(o.clusters)),
                    str(o.count),
                    f"{o.jaccard:.2f}" if o.jaccard is not None else "–",
                    ", ".join(_code(ip) for ip in o.shared_seeds) or "–",
                ]
                for o in report.overlaps
            ],
        )
        L.append("")

    if report.expansion:
        L.append("## New infrastructure")
        L.append("")
        L += _table(
            ["IP", "Provider", "Contacted by", "Clusters", "First seen", "Last seen", "Score", "Confidence"],
            [
                [
                    _code(e.ip),
                    md_cell(host_provider_label(report, e)),
                    ", ".join(_code(ip) for ip in e.contacted_by) or "–",
                    md_cell(", ".join(e.clusters)),
                    fmt_time(e.first_seen),
                    fmt_time(e.last_seen),
                    fmt_num(e.score),
                    _num(e.confidence),
                ]
                for e in report.expansion
            ],
        )
        L.append("")

    L += _seed_sections(report, actors)
    L += _victims(report)
    L += _probes(report)
    L += _near_misses(report)

    if report.excluded:
        L.append("## Excluded")
        L.append("")
        L += _table(
            ["IP", "Reason", "Detail"],
            [[_code(x.ip), md_cell(x.reason), md_cell(x.detail)] for x in report.excluded],
        )
        L.append("")

    L.append("## Parameters and provenance")
    L.append("")
    rows = [[md_cell(k), md_cell(_value(v))] for k, v in flat_items("", report.parameters)]
    rows += [[md_cell(k), md_cell(_value(v))] for k, v in flat_items("provenance.", report.provenance)]
    if rows:
        L += _table(["Setting", "Value"], rows)
        L.append("")
    if report.problems:
        L.append(f"{len(report.problems)} entries of the hunt result could not be read and were left out:")
        L.append("")
        L += [f"- {md(p.where)}: {md(p.reason)}" for p in report.problems[:50]]
        L.append("")
    # every value was cleaned when the result was read; this also covers names given by the caller (actors)
    return visible("\n".join(L).rstrip(), keep="\n") + "\n"


def _value(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items())
    if isinstance(v, bool):
        return "yes" if v else "no"
    return clean(v, 300) or "–"

"""Markdown summary of a hunt for tickets and write-ups (CommonMark with GitHub tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .model import Report
from .summary import (
    evidence_facts,
    flat_items,
    host_provider_label,
    provider_label,
    service_text,
    summary_paragraphs,
    volume_text,
)
from .text import clean, defang, fmt_num, fmt_time, md, md_cell

__all__ = ["render_markdown_report"]


def _code(ip: str) -> str:
    # Only canonical addresses reach here (model.py checked them), so a code span cannot be broken.
    return f"`{defang(ip)}`"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render_markdown_report(report: Report, *, tlp: str, actor: str | None, now: datetime, ref: str) -> str:
    L: list[str] = []
    L.append("# flowpivot hunt report")
    L.append("")
    L.append(f"**TLP:{tlp.upper()}** · generated {fmt_time(now)} · reference `{ref}`")
    L.append("")
    days = report.days
    span = f" ({days:.0f} days)" if days is not None else ""
    L.append(f"Window: {fmt_time(report.window_start)} to {fmt_time(report.window_end)}{span}")
    if actor:
        L.append(f"Actor: {md(actor)}")
    L.append("")
    L.append("IP addresses are defanged: `[.]` stands for `.` and `[:]` for `:`.")
    L.append("")
    L.append("## Summary")
    L.append("")
    for p in summary_paragraphs(report, actor):
        L.append(md(p))
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
            ],
            rows,
        )
        L.append("")
        for c in report.clusters:
            L.append(f"### {md(c.id)}: {md(c.label)}")
            L.append("")
            if c.asn is not None or c.as_name:
                L.append(
                    f"- Autonomous system: {'AS' + str(c.asn) if c.asn is not None else '–'} {md(c.as_name)}".rstrip()
                )
            L.append(f"- Members ({len(c.members)}): " + ", ".join(_code(ip) for ip in c.members))
            L.append(f"- Seeds ({len(c.seeds)}): " + ", ".join(_code(ip) for ip in c.seeds))
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
            ["IP", "Provider", "Contacted by", "Clusters", "First seen", "Last seen", "Score"],
            [
                [
                    _code(e.ip),
                    md_cell(host_provider_label(report, e)),
                    ", ".join(_code(ip) for ip in e.contacted_by) or "–",
                    md_cell(", ".join(e.clusters)),
                    fmt_time(e.first_seen),
                    fmt_time(e.last_seen),
                    fmt_num(e.score),
                ]
                for e in report.expansion
            ],
        )
        L.append("")

    if report.seeds:
        L.append("## Seeds")
        L.append("")
        in_clusters = report.seed_clusters()
        L += _table(
            ["IP", "Provider", "Status", "First seen", "Last seen", "Clusters", "Comment"],
            [
                [
                    _code(s.ip),
                    md_cell(host_provider_label(report, s)),
                    md_cell(s.status),
                    fmt_time(s.first_seen),
                    fmt_time(s.last_seen),
                    md_cell(", ".join(in_clusters.get(s.ip, []))),
                    md_cell(s.comment),
                ]
                for s in report.seeds
            ],
        )
        L.append("")

    if report.victims:
        L.append("## Likely victims")
        L.append("")
        L += _table(
            ["IP", "Network", "Seeds", "Port", "Interval"],
            [
                [
                    _code(v.ip),
                    md_cell(provider_label(v.asn, v.as_name, None)),
                    ", ".join(_code(ip) for ip in v.seeds) or "–",
                    str(v.port) if v.port is not None else "–",
                    f"{v.interval_s:,.0f} s" if v.interval_s is not None else "–",
                ]
                for v in report.victims
            ],
        )
        L.append("")

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
    return "\n".join(L).rstrip() + "\n"


def _value(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items())
    if isinstance(v, bool):
        return "yes" if v else "no"
    return clean(v, 300) or "–"

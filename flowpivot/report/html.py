"""The HTML report: one self-contained page (styles, scripts, data and libraries inline, nothing fetched).

The static parts (summary, tables, evidence, provenance) are written here with ``html.escape``, so the
page reads without JavaScript; the scripts add the graph (Cytoscape.js), the timelines (Chart.js),
sorting, copy buttons and the details panel. Data for the scripts travels as JSON in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` escaped, and the scripts place it
with ``textContent`` only. A Content-Security-Policy allows only these exact inline scripts (by hash)
and no network at all, so even a value that slipped through could neither run nor fetch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from .attribution import Attribution
from .markdown import actor_line
from .model import Cluster, Report
from .summary import (
    evidence_facts,
    flags_text,
    flat_items,
    host_provider_label,
    member_evidence,
    plural,
    provider_label,
    seed_state_text,
    summary_paragraphs,
    tcp_flags,
    volume_text,
)
from .text import clean, defang, fmt_num, fmt_time, ip_sort_key

__all__ = ["render_html_report", "VENDORED"]

# Libraries inlined into the page: file in flowpivot/report/vendor/, npm package, version, licence file.
VENDORED = (
    ("cytoscape.min.js", "cytoscape", "3.34.4", "LICENSE-cytoscape.md"),
    ("chart.umd.min.js", "chart.js", "4.6.1", "LICENSE-chartjs.md"),
)


@cache
def _asset(*parts: str) -> str:
    return resources.files("flowpivot.report").joinpath(*parts).read_text(encoding="utf-8")


_SOURCEMAP = re.compile(r"^\s*//[#@]\s*sourceMappingURL=.*$", re.MULTILINE)


def _inline_js(code: str) -> str:
    """Script text that cannot end its <script> element early or fetch a source map."""
    code = _SOURCEMAP.sub("", code)
    code = re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE)
    return code.replace("<!--", "<\\!--")


def _json_for_script(data: Any) -> str:
    s = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return (
        s.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _sha256(code: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(code.encode("utf-8")).digest()).decode() + "'"


@cache
def _scripts() -> tuple[tuple[str, ...], str]:
    """The page's scripts made safe to inline, and their CSP hashes: the same for every page, so made once
    (escaping and hashing the 650 KB of libraries was a quarter of a small report's rendering)."""
    scripts = tuple(_inline_js(_asset("vendor", f)) for f, _, _, _ in VENDORED) + (
        _inline_js(_asset("assets", "report.js")),
    )
    return scripts, " ".join(_sha256(s) for s in scripts)


def _e(v: object) -> str:
    return escape(clean(v) or "", quote=True) if v is not None else ""


def _ip_cell(ip: str) -> str:
    d = defang(ip)
    return (
        f'<td data-v="{_ipkey(ip)}" data-ip="{escape(d)}"><span class="ip">{escape(d)}</span>'
        f'<button type="button" class="copy" data-copy="{escape(d)}" title="Copy {escape(d)}">copy</button></td>'
    )


def _ip_spans(ips: list[str]) -> str:
    return ", ".join(f"<span class=ip>{escape(defang(ip))}</span>" for ip in ips)


def _ipkey(ip: str) -> str:
    v, n = ip_sort_key(ip)
    return f"{v}:{n:039d}"


def _num_td(n: int | float | None, text: str | None = None) -> str:
    if n is None:
        return '<td class="num" data-v="">–</td>'
    shown = text if text is not None else fmt_num(n)
    return f'<td class="num" data-v="{n}">{escape(shown)}</td>'


def _time_td(t: datetime | None) -> str:
    return f'<td data-v="{t.isoformat() if t else ""}">{escape(fmt_time(t))}</td>'


def _iso(t: datetime | None) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def _table(tid: str, head: list[tuple[str, bool]], rows: list[str], copy_all: bool = False) -> str:
    ths = "".join(f'<th class="num">{escape(h)}</th>' if num else f"<th>{escape(h)}</th>" for h, num in head)
    tools = ""
    if copy_all:
        tools = (
            f'<div class="toolbar"><button type="button" class="copy" data-copy="" data-copy-table="{tid}">'
            "copy all addresses (defanged)</button></div>"
        )
    return (
        f'{tools}<div class="table-wrap"><table id="{tid}" class="sortable"><thead><tr>{ths}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _data(report: Report, tlp: str, seed_clusters: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "tlp": tlp,
        "window": {"start": _iso(report.window_start), "end": _iso(report.window_end)},
        "clusters": [
            {
                "id": c.id,
                "label": c.label,
                "provider": c.provider,
                "asn": c.asn,
                "as_name": c.as_name,
                "country": c.country,
                "members": c.members,
                "seeds": c.seeds,
                "established": c.established,
                "initiator": c.initiator,
                "services": c.services,
                "flows": c.flows,
                "packets_est": c.packets_est,
                "bytes_est": c.bytes_est,
                "first_seen": _iso(c.first_seen),
                "last_seen": _iso(c.last_seen),
                "score": c.score,
                "confidence": c.confidence,
                "abuse": c.abuse_mailbox,
                "facts": [list(f) for f in evidence_facts(c.evidence)],
                "daily": [list(d) for d in c.daily],
            }
            for c in report.clusters
        ],
        "seeds": [
            {
                "ip": s.ip,
                "provider": host_provider_label(report, s),
                "status": s.status,
                "state": seed_state_text(s, report.window_end),
                "last_answered": _iso(s.last_answered),
                "sets": s.sets,
                "first_seen": _iso(s.first_seen),
                "last_seen": _iso(s.last_seen),
                "comment": s.comment,
                "clusters": seed_clusters.get(s.ip, []),
                "daily": [list(d) for d in s.daily],
            }
            for s in report.seeds
        ],
        "expansion": [
            {
                "ip": e.ip,
                "provider": host_provider_label(report, e),
                "contacted_by": e.contacted_by,
                "clusters": e.clusters,
                "score": e.score,
                "confidence": e.confidence,
                "first_seen": _iso(e.first_seen),
                "last_seen": _iso(e.last_seen),
            }
            for e in report.expansion
        ],
        "victims": [
            {
                "ip": v.ip,
                "provider": provider_label(v.asn, v.as_name, None),
                "seeds": v.seeds,
                "port": v.port,
                "interval_s": v.interval_s,
                "state": v.state,
                "connections": v.connections,
            }
            for v in report.victims
        ],
    }


def _value(v: Any) -> str:
    if isinstance(v, list):
        return (
            ", ".join(_value(x) for x in v) if all(not isinstance(x, dict) for x in v) else json.dumps(v, default=str)
        )
    if isinstance(v, dict):
        return json.dumps(v, default=str, ensure_ascii=False)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "–"
    return str(v)


def _setting_rows(d: Any) -> list[str]:
    return [f"<tr><td><code>{_e(k)}</code></td><td>{_e(_value(v))}</td></tr>" for k, v in flat_items("", d)]


def _count_td(n: int | None) -> str:
    return _num_td(n)


def _member_table(report: Report, c: Cluster) -> str:
    rows = []
    for ip in c.members:
        ev = member_evidence(report, c, ip)
        rows.append(
            "<tr>"
            + _ip_cell(ip)
            + _count_td(ev.established_seeds)
            + _count_td(ev.flows)
            + _count_td(ev.substantial_seeds)
            + _time_td(ev.first_seen)
            + _time_td(ev.last_seen)
            + _num_td(ev.confidence)
            + "</tr>"
        )
    head = [
        ("Member", False),
        ("Established seeds", True),
        ("Flows", True),
        ("Substantial seeds", True),
        ("First seen", False),
        ("Last seen", False),
        ("Confidence", True),
    ]
    return "<h4>Members</h4>" + _table(f"members-{_e(c.id)}", head, rows)


def _seed_sets_section(report: Report, actors: Sequence[Attribution]) -> str:
    if not report.seed_sets:
        return ""
    rows = [
        f"<tr><td>{_e(name)}</td><td>{_e(', '.join(v.get('files') or []))}</td>"
        + _count_td(v.get("count"))
        + f"<td>{_e(', '.join(a.name for a in actors if a.actor.sets is None or name in a.actor.sets)) or '–'}</td>"
        + "</tr>"
        for name, v in report.seed_sets.items()
    ]
    head = [("Set", False), ("Files", False), ("Seeds", True), ("Attributed to", False)]
    return '<section id="seed-sets"><h2>Seed sets</h2>' + _table("seed-sets-table", head, rows) + "</section>"


def _probes_section(report: Report) -> str:
    rows = [
        "<tr>"
        + _ip_cell(p.ip)
        + f"<td>{_e(provider_label(p.asn, p.as_name, None))}</td>"
        + f"<td>{_ip_spans([p.seed]) if p.seed else '–'}</td>"
        + f"<td>{_e(p.proto or '?')}/{_e(p.port if p.port is not None else '*')}</td>"
        + f"<td>{_e(p.kind)}</td><td>{_e(p.state) or '–'}</td>"
        + _count_td(p.attempts)
        + _num_td(p.span_s, f"{p.span_s:,.0f} s" if p.span_s is not None else None)
        + _num_td(p.rate_per_s, f"{p.rate_per_s:,.1f}/s" if p.rate_per_s is not None else None)
        + _time_td(p.first_seen)
        + _time_td(p.last_seen)
        + "</tr>"
        for p in report.probes
    ]
    head = [
        ("Prober", False),
        ("Network", False),
        ("Seed", False),
        ("Service", False),
        ("Kind", False),
        ("State", False),
        ("Attempts", True),
        ("Span", True),
        ("Rate", True),
        ("First seen", False),
        ("Last seen", False),
    ]
    return (
        '<section id="probes"><h2>Probes</h2><p class="muted">Bursts of attempts to one seed port: tool runs, '
        "neither clustered nor counted as victims.</p>"
        + (_table("probes-table", head, rows, True) if rows else "<p>None found.</p>")
        + "</section>"
    )


def _near_misses_section(report: Report) -> str:
    n, total = len(report.near_misses), report.near_misses_total
    rows = [
        "<tr>"
        + _ip_cell(x.ip)
        + f"<td>{_e(provider_label(x.asn, report.provider_name(x.asn, x.as_name), x.country))}</td>"
        + f"<td>{_e(x.reason)}</td><td>{_e(x.detail)}</td>"
        + f"<td>{_ip_spans(x.seeds)}</td>"
        + _count_td(x.established_seeds)
        + _count_td(x.substantial_seeds)
        + "</tr>"
        for x in report.near_misses
    ]
    head = [
        ("Address", False),
        ("Provider", False),
        ("Reason", False),
        ("Detail", False),
        ("Seeds", False),
        ("Established seeds", True),
        ("Substantial seeds", True),
    ]
    listed = f" ({n:,} listed, the most evidence first)" if n < total else ""
    intro = f"<p>{escape(plural(total, 'host'))} came close to a cluster but fell short{escape(listed)}.</p>"
    return (
        '<section id="near-misses"><h2>Near misses</h2>'
        + (intro + (_table("near-misses-table", head, rows, True) if rows else "") if total else "<p>None.</p>")
        + "</section>"
    )


def render_html_report(report: Report, *, tlp: str, actors: Sequence[Attribution] = (), now: datetime, ref: str) -> str:
    tlp_cls = "tlp-" + tlp.replace("+", "-")
    P: list[str] = []
    w = P.append
    days = report.days
    seed_clusters = report.seed_clusters()
    w('<header><h1>flowpivot hunt report</h1><p class="meta">')
    w(
        f"Window {escape(fmt_time(report.window_start))} to {escape(fmt_time(report.window_end))}"
        + (f" ({days:.0f} days)" if days is not None else "")
        + f" · generated {escape(fmt_time(now))} · reference <code>{escape(ref)}</code>"
        + "".join(f" · actor <b>{_e(actor_line(report, a))}</b>" for a in actors)
    )
    w("</p></header>")
    w(
        '<nav><ul><li><a href="#summary">Summary</a></li><li><a href="#graph">Graph</a></li>'
        '<li><a href="#timeline">Timeline</a></li><li><a href="#clusters">Clusters</a></li>'
        '<li><a href="#evidence">Evidence</a></li><li><a href="#hosts">Hosts</a></li>'
        '<li><a href="#overlaps">Overlaps</a></li><li><a href="#victims">Victims</a></li>'
        '<li><a href="#probes">Probes</a></li><li><a href="#near-misses">Near misses</a></li>'
        '<li><a href="#excluded">Excluded</a></li><li><a href="#provenance">Parameters and provenance</a></li></ul></nav>'
    )
    w("<main>")
    # -- summary
    w('<section id="summary" class="summary"><h2>Summary</h2>')
    for p in summary_paragraphs(report, actors):
        w(f"<p>{escape(p)}</p>")
    n_new = len(report.expansion)
    cards = [
        (len(report.clusters), "clusters"),
        (sum(len(c.members) for c in report.clusters), "cluster hosts"),
        (len(report.seeds), "seeds"),
        (sum(1 for s in report.seeds if s.status == "dark"), "seeds dark"),
        (sum(1 for s in report.seeds if s.status == "unanswered"), "seeds unanswered"),
        (n_new, "new hosts"),
        (len(report.victims), "likely victims"),
        (len(report.probes), "probes"),
    ]
    w(
        '<div class="cards">'
        + "".join(f"<div class=card><b>{n:,}</b><span>{escape(t)}</span></div>" for n, t in cards)
        + "</div>"
    )
    w(
        '<p class="muted">Addresses are defanged: <code>[.]</code> stands for <code>.</code> and <code>[:]</code> '
        "for <code>:</code>. Volumes are estimates scaled from sampled flow records.</p>"
    )
    w("</section>")
    # -- graph
    w('<section id="graph"><h2>Graph</h2><div class="toolbar">')
    w(
        '<button type="button" class="tool" id="fit">Fit</button><button type="button" class="tool" id="relayout">Re-layout</button>'
    )
    w('<button type="button" class="tool" id="png">Save PNG</button><span class="legend">')
    for _kind, color, shape in (
        ("cluster", "#7b3fa0", "provider cluster"),
        ("member", "#b05cd6", "cluster host"),
        ("seed-dark", "#6d6d6d", "seed (dark)"),
        ("seed-active", "#c0392b", "seed (active)"),
        ("new", "#e08e0b", "new host"),
        ("victim", "#1f8a70", "likely victim"),
    ):
        w(f'<span><i style="background:{color}"></i>{escape(shape)}</span>')
    w("</span></div>")
    w(
        '<div class="graph-wrap"><div id="cy" role="img" aria-label="Graph of clusters, seeds and new hosts"></div>'
        '<aside id="details" aria-live="polite"><h3>Details</h3><p class="muted">Click a cluster or a host in the '
        "graph, or a row of the cluster table. Drag to move, scroll to zoom.</p></aside></div></section>"
    )
    # -- timeline
    w('<section id="timeline"><h2>Timeline</h2><div class="charts">')
    w(
        '<div class="chart-box" style="height:280px"><canvas id="tl-clusters" aria-label="Activity per cluster"></canvas></div>'
    )
    w(
        '<div class="chart-box" style="height:480px"><canvas id="tl-seeds" aria-label="Activity per seed"></canvas></div>'
    )
    w("</div></section>")
    # -- clusters table
    w('<section id="clusters"><h2>Clusters</h2>')
    rows = []
    for c in report.clusters:
        rows.append(
            f'<tr class="clickable" data-cluster="{_e(c.id)}"><td>{_e(c.id)}</td><td>{_e(c.provider)}</td>'
            + _num_td(c.asn, f"AS{c.asn}" if c.asn is not None else None)
            + f"<td>{_e(c.as_name)}</td>"
            + f"<td>{_e(c.country)}</td>"
            + _num_td(len(c.members))
            + _num_td(len(c.seeds))
            + f"<td>{'yes' if c.established else 'no'}</td><td>{_e(c.initiator)}</td>"
            + _num_td(c.flows)
            + _num_td(c.packets_est)
            + _num_td(c.bytes_est)
            + _time_td(c.first_seen)
            + _time_td(c.last_seen)
            + _num_td(c.score)
            + _num_td(c.confidence)
            + "</tr>"
        )
    head = [
        ("Cluster", False),
        ("Provider", False),
        ("ASN", True),
        ("AS name", False),
        ("Country", False),
        ("Hosts", True),
        ("Seeds", True),
        ("Established", False),
        ("Initiator", False),
        ("Flows", True),
        ("Packets (est.)", True),
        ("Bytes (est.)", True),
        ("First seen", False),
        ("Last seen", False),
        ("Score", True),
        ("Confidence", True),
    ]
    w(_table("clusters-table", head, rows) if rows else "<p>No clusters.</p>")
    w("</section>")
    # -- evidence
    w('<section id="evidence"><h2>Evidence</h2>')
    for c in report.clusters:
        w(f'<article class="cluster-ev" id="ev-{_e(c.id)}"><h3>{_e(c.id)}: {_e(c.label)}</h3><dl class="facts">')
        w(f"<dt>Hosts</dt><dd>{_ip_spans(c.members)}</dd>")
        w(f"<dt>Seeds contacted</dt><dd>{len(c.seeds)}</dd>")
        how = "yes: TCP handshake seen" if c.established else "no complete TCP session seen"
        w(f"<dt>Established</dt><dd>{how}</dd><dt>Initiator</dt><dd>{_e(c.initiator) or '–'}</dd>")
        f = tcp_flags(c.evidence)
        if f is not None:
            w(f"<dt>TCP flags seen</dt><dd><code>{escape(flags_text(f))}</code></dd>")
        w(f"<dt>Volume</dt><dd>{escape(volume_text(c))}</dd>")
        w(f"<dt>Seen</dt><dd>{escape(fmt_time(c.first_seen))} to {escape(fmt_time(c.last_seen))}</dd>")
        if c.confidence is not None:
            w(f"<dt>Confidence</dt><dd>{c.confidence:.2f}</dd>")
        if actors:
            names = ", ".join(a.name for a in actors if a.covers_cluster(c))
            w(f"<dt>Attributed to</dt><dd>{_e(names) or 'none of the named actors'}</dd>")
        for k, v in evidence_facts(c.evidence):
            if "flag" in k.lower():
                continue
            w(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>")
        w("</dl>")
        w(_member_table(report, c))
        if c.services:
            srows = [
                f"<tr><td>{_e(s['proto'])}</td>"
                + _num_td(s["port"])
                + f"<td>{_e(s.get('side')) or '–'}</td>"
                + _num_td(s["flows"])
                + "</tr>"
                for s in c.services
            ]
            head_svc = [("Protocol", False), ("Port", True), ("Listening side", False), ("Flows", True)]
            w("<h4>Services</h4>" + _table(f"svc-{_e(c.id)}", head_svc, srows))
        if c.allocation:
            arows = [
                "<tr>"
                + "".join(
                    f"<td>{_e(x)}</td>"
                    for x in (
                        defang(a.range) if a.range else None,
                        a.netname,
                        a.org_name,
                        a.org,
                        a.status,
                        a.country,
                        a.abuse_mailbox or a.abuse_raw,
                        a.source,
                    )
                )
                + "</tr>"
                for a in c.allocation
            ]
            w(
                "<h4>Allocation (whois, most specific first)</h4>"
                + _table(
                    f"alloc-{_e(c.id)}",
                    [
                        ("Range", False),
                        ("Netname", False),
                        ("Organisation", False),
                        ("Org handle", False),
                        ("Status", False),
                        ("Country", False),
                        ("Abuse contact", False),
                        ("Source", False),
                    ],
                    arows,
                )
            )
        w("</article>")
    if not report.clusters:
        w("<p>No clusters.</p>")
    w("</section>")
    # -- hosts
    w('<section id="hosts"><h2>Hosts</h2>')
    hrows = []
    for c in report.clusters:
        for m in c.members:
            ev = member_evidence(report, c, m)
            hrows.append(
                "<tr>"
                + _ip_cell(m)
                + f"<td>cluster host</td><td>{_e(c.id)}</td>"
                + f"<td>{_e(provider_label(c.asn, c.provider, c.country))}</td><td>–</td>"
                + _time_td(ev.first_seen)
                + _time_td(ev.last_seen)
                + _time_td(None)
                + _num_td(ev.confidence)
                + "<td>–</td></tr>"
            )
    for e in report.expansion:
        hrows.append(
            "<tr>"
            + _ip_cell(e.ip)
            + f"<td>new host</td><td>{_e(', '.join(e.clusters))}</td>"
            + f"<td>{_e(host_provider_label(report, e))}</td><td>–</td>"
            + _time_td(e.first_seen)
            + _time_td(e.last_seen)
            + _time_td(None)
            + _num_td(e.confidence)
            + "<td>–</td></tr>"
        )
    for sd in report.seeds:
        hrows.append(
            "<tr>"
            + _ip_cell(sd.ip)
            + f"<td>seed</td><td>{_e(', '.join(seed_clusters.get(sd.ip, [])))}</td>"
            + f"<td>{_e(host_provider_label(report, sd))}</td>"
            + f'<td><span class="badge {_e(sd.status)}">{_e(sd.status)}</span> '
            + f"{_e(seed_state_text(sd, report.window_end))}</td>"
            + _time_td(sd.first_seen)
            + _time_td(sd.last_seen)
            + _time_td(sd.last_answered)
            + _num_td(None)
            + f"<td>{_e(', '.join(sd.sets)) or '–'}</td></tr>"
        )
    w(
        _table(
            "hosts-table",
            [
                ("Address", False),
                ("Role", False),
                ("Clusters", False),
                ("Provider", False),
                ("Status", False),
                ("First seen", False),
                ("Last seen", False),
                ("Last answered", False),
                ("Confidence", True),
                ("Seed sets", False),
            ],
            hrows,
            copy_all=True,
        )
    )
    w("</section>")
    # -- overlaps
    w('<section id="overlaps"><h2>Overlaps</h2>')
    orows = [
        f"<tr><td>{_e(' + '.join(o.clusters))}</td>"
        + _num_td(o.count)
        + _num_td(o.jaccard)
        + f"<td>{_ip_spans(o.shared_seeds)}</td></tr>"
        for o in report.overlaps
    ]
    w(
        _table(
            "overlaps-table", [("Clusters", False), ("Shared seeds", True), ("Jaccard", True), ("Seeds", False)], orows
        )
        if orows
        else "<p>No overlaps.</p>"
    )
    w("</section>")
    # -- victims
    w('<section id="victims"><h2>Likely victims</h2>')
    vrows = [
        "<tr>"
        + _ip_cell(v.ip)
        + f"<td>{_e(provider_label(v.asn, v.as_name, None))}</td>"
        + f"<td>{_ip_spans(v.seeds)}</td>"
        + _num_td(v.port, str(v.port) if v.port is not None else None)
        + f"<td>{_e(v.state) or '–'}</td>"
        + _count_td(v.connections)
        + _count_td(v.established_flows)
        + _count_td(v.rejected_flows)
        + _count_td(v.unanswered_flows)
        + _num_td(v.interval_s, f"{v.interval_s:,.0f} s" if v.interval_s is not None else None)
        + "</tr>"
        for v in report.victims
    ]
    vhead = [
        ("Address", False),
        ("Network", False),
        ("Seeds", False),
        ("Port", True),
        ("State", False),
        ("Connections", True),
        ("Established", True),
        ("Rejected", True),
        ("Unanswered", True),
        ("Interval", True),
    ]
    w(_table("victims-table", vhead, vrows, True) if vrows else "<p>None found.</p>")
    w(
        '<p class="muted">Victims are notified, not reported; they are left out of the STIX and MISP exports.</p></section>'
    )
    w(_probes_section(report))
    w(_near_misses_section(report))
    w(_seed_sets_section(report, actors))
    # -- excluded
    w('<section id="excluded"><h2>Excluded</h2>')
    xrows = ["<tr>" + _ip_cell(x.ip) + f"<td>{_e(x.reason)}</td><td>{_e(x.detail)}</td></tr>" for x in report.excluded]
    w(
        _table("excluded-table", [("Address", False), ("Reason", False), ("Detail", False)], xrows)
        if xrows
        else "<p>None.</p>"
    )
    w("</section>")
    # -- provenance
    w('<section id="provenance"><h2>Parameters and provenance</h2>')
    prow = _setting_rows(report.parameters)
    w(
        "<h3>Hunt parameters</h3>"
        + (_table("params-table", [("Parameter", False), ("Value", False)], prow) if prow else "<p>Not recorded.</p>")
    )
    vrow = _setting_rows(report.provenance)
    w(
        "<h3>Data provenance</h3>"
        + (
            _table("provenance-table", [("Item", False), ("Value", False)], vrow)
            if vrow
            else "<p>Not recorded by the hunt.</p>"
        )
    )
    if report.problems:
        w(
            f'<h3>Input problems</h3><p class="problems">{len(report.problems)} entries of the hunt result could not be read and were left out:</p><ul>'
        )
        for prob in report.problems[:100]:
            w(f"<li><code>{_e(prob.where)}</code>: {_e(prob.reason)}</li>")
        w("</ul>")
    w("</section></main>")
    libs = ", ".join(f"{escape(pkg)} {escape(ver)}" for _, pkg, ver, _ in VENDORED)
    w(
        f"<footer><p>Made by flowpivot. Inlined libraries: {libs} (MIT licences, kept in flowpivot/report/vendor/). "
        "This page fetches nothing from the network.</p></footer>"
    )
    w('<div id="tooltip" role="tooltip"></div>')

    scripts, hashes = _scripts()
    csp = (
        "default-src 'none'; script-src "
        + hashes
        + "; style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    page_head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="referrer" content="no-referrer"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>flowpivot hunt report · TLP:{escape(tlp.upper())}</title>"
        f"<style>{_asset('assets', 'report.css')}</style></head><body>"
        f'<div class="tlp {tlp_cls}">TLP:{escape(tlp.upper())}</div>'
    )
    data = (
        f'<script type="application/json" id="fp-data">{_json_for_script(_data(report, tlp, seed_clusters))}</script>'
    )
    body_scripts = "".join(f"<script>{s}</script>" for s in scripts)
    return page_head + "".join(P) + data + body_scripts + "</body></html>\n"

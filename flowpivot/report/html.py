"""The HTML report: one self-contained page (styles, scripts, data and libraries inline, nothing fetched).

The page is rendered from Jinja2 templates (``templates/report.html.j2``, ``templates/macros.html.j2``)
with autoescaping on: every value from the result is text wherever it lands, and every value also has its
control characters made visible (:func:`flowpivot.textsafe.visible`) on its way out. This module builds
the plain values the templates place (cells are small dicts: ``{"k": "ip"|"num"|"time"|"text"|...}``).
The static parts (summary, tables, evidence, provenance) read without JavaScript; the scripts add the
graph (Cytoscape.js), the timelines (Chart.js), sorting, copy buttons and the details panel. Data for the
scripts travels as JSON in a ``<script type="application/json">`` block with ``<``, ``>`` and ``&``
escaped, and the scripts place it with ``textContent`` only. A Content-Security-Policy allows only these
exact inline scripts (by hash) and no network at all, so even a value that slipped through could neither
run nor fetch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ..textsafe import visible
from .attribution import Attribution
from .markdown import actor_line
from .model import Cluster, Report
from .page import VENDORED, asset, json_for_script, script_data, scripts, style
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


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}``: None shows nothing, text has its controls made visible (then autoescaped);
    the page's own markup (Markup) is left as it is."""
    if value is None:
        return ""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


@cache
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("flowpivot.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_finalize,
        keep_trailing_newline=True,
        trim_blocks=False,
    )


Cell = dict[str, Any]
Table = dict[str, Any]


def _t(v: object, dash: bool = False) -> str:
    """Outside text for a page: cleaned (:func:`.text.clean`); "–" for nothing when ``dash``."""
    s = clean(v) if v is not None else None
    return s or ("–" if dash else "")


def _text(v: object, dash: bool = False) -> Cell:
    return {"k": "text", "t": _t(v, dash)}


def _code(v: object) -> Cell:
    return {"k": "code", "t": _t(v)}


def _ip(ip: str) -> Cell:
    return {"k": "ip", "d": defang(ip), "key": _ipkey(ip)}


def _ips(ips: list[str]) -> Cell:
    return {"k": "ips", "ips": [defang(ip) for ip in ips]}


def _ipkey(ip: str) -> str:
    v, n = ip_sort_key(ip)
    return f"{v}:{n:039d}"


def _num(n: int | float | None, text: str | None = None) -> Cell:
    if n is None:
        return {"k": "num", "v": "", "t": "–"}
    return {"k": "num", "v": str(n), "t": text if text is not None else fmt_num(n)}


def _time(t: datetime | None) -> Cell:
    return {"k": "time", "v": t.isoformat() if t else "", "t": fmt_time(t)}


def _table(tid: str, head: list[tuple[str, bool]], rows: list[list[Cell]], copy_all: bool = False) -> Table:
    return {"id": tid, "head": head, "rows": [{"cells": r, "cluster": None} for r in rows], "copy_all": copy_all}


def _or_none(t: Table) -> Table | None:
    return t if t["rows"] else None


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


def _setting_rows(d: Any) -> list[list[Cell]]:
    return [[_code(k), _text(_value(v))] for k, v in flat_items("", d)]


def _member_table(report: Report, c: Cluster) -> Table:
    rows = []
    for ip in c.members:
        ev = member_evidence(report, c, ip)
        rows.append(
            [
                _ip(ip),
                _num(ev.established_seeds),
                _num(ev.flows),
                _num(ev.substantial_seeds),
                _time(ev.first_seen),
                _time(ev.last_seen),
                _num(ev.confidence),
            ]
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
    return _table(f"members-{_t(c.id)}", head, rows)


def _clusters_table(report: Report) -> Table | None:
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
    t = _table(
        "clusters-table",
        head,
        [
            [
                _text(c.id),
                _text(c.provider),
                _num(c.asn, f"AS{c.asn}" if c.asn is not None else None),
                _text(c.as_name),
                _text(c.country),
                _num(len(c.members)),
                _num(len(c.seeds)),
                _text("yes" if c.established else "no"),
                _text(c.initiator),
                _num(c.flows),
                _num(c.packets_est),
                _num(c.bytes_est),
                _time(c.first_seen),
                _time(c.last_seen),
                _num(c.score),
                _num(c.confidence),
            ]
            for c in report.clusters
        ],
    )
    for row, c in zip(t["rows"], report.clusters, strict=True):
        row["cluster"] = _t(c.id)
    return _or_none(t)


def _evidence(report: Report, c: Cluster, actors: Sequence[Attribution]) -> dict[str, Any]:
    f = tcp_flags(c.evidence)
    attributed = None
    if actors:
        attributed = _t(", ".join(a.name for a in actors if a.covers_cluster(c))) or "none of the named actors"
    services = _table(
        f"svc-{_t(c.id)}",
        [("Protocol", False), ("Port", True), ("Listening side", False), ("Flows", True)],
        [[_text(s["proto"]), _num(s["port"]), _text(s.get("side"), True), _num(s["flows"])] for s in c.services],
    )
    allocation = _table(
        f"alloc-{_t(c.id)}",
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
        [
            [
                _text(x)
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
            ]
            for a in c.allocation
        ],
    )
    return {
        "id": _t(c.id),
        "label": _t(c.label),
        "hosts": [defang(ip) for ip in c.members],
        "seeds": len(c.seeds),
        "established": "yes: TCP handshake seen" if c.established else "no complete TCP session seen",
        "initiator": _t(c.initiator, True),
        "flags": flags_text(f) if f is not None else None,
        "volume": volume_text(c),
        "first_seen": fmt_time(c.first_seen),
        "last_seen": fmt_time(c.last_seen),
        "confidence": f"{c.confidence:.2f}" if c.confidence is not None else None,
        "attributed": attributed,
        "facts": [(_t(k), _t(v)) for k, v in evidence_facts(c.evidence) if "flag" not in k.lower()],
        "members": _member_table(report, c),
        "services": _or_none(services),
        "allocation": _or_none(allocation),
    }


def _hosts_table(report: Report, seed_clusters: dict[str, list[str]]) -> Table:
    rows: list[list[Cell]] = []
    for c in report.clusters:
        for m in c.members:
            ev = member_evidence(report, c, m)
            rows.append(
                [
                    _ip(m),
                    _text("cluster host"),
                    _text(c.id),
                    _text(provider_label(c.asn, c.provider, c.country)),
                    _text("–"),
                    _time(ev.first_seen),
                    _time(ev.last_seen),
                    _time(None),
                    _num(ev.confidence),
                    _text("–"),
                ]
            )
    for e in report.expansion:
        rows.append(
            [
                _ip(e.ip),
                _text("new host"),
                _text(", ".join(e.clusters)),
                _text(host_provider_label(report, e)),
                _text("–"),
                _time(e.first_seen),
                _time(e.last_seen),
                _time(None),
                _num(e.confidence),
                _text("–"),
            ]
        )
    for sd in report.seeds:
        rows.append(
            [
                _ip(sd.ip),
                _text("seed"),
                _text(", ".join(seed_clusters.get(sd.ip, []))),
                _text(host_provider_label(report, sd)),
                {"k": "badge", "s": _t(sd.status), "t": _t(seed_state_text(sd, report.window_end))},
                _time(sd.first_seen),
                _time(sd.last_seen),
                _time(sd.last_answered),
                _num(None),
                _text(", ".join(sd.sets), True),
            ]
        )
    head = [
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
    ]
    return _table("hosts-table", head, rows, copy_all=True)


def _victims_table(report: Report) -> Table | None:
    head = [
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
    rows = [
        [
            _ip(v.ip),
            _text(provider_label(v.asn, v.as_name, None)),
            _ips(v.seeds),
            _num(v.port, str(v.port) if v.port is not None else None),
            _text(v.state, True),
            _num(v.connections),
            _num(v.established_flows),
            _num(v.rejected_flows),
            _num(v.unanswered_flows),
            _num(v.interval_s, f"{v.interval_s:,.0f} s" if v.interval_s is not None else None),
        ]
        for v in report.victims
    ]
    return _or_none(_table("victims-table", head, rows, True))


def _probes_table(report: Report) -> Table | None:
    rows = [
        [
            _ip(p.ip),
            _text(provider_label(p.asn, p.as_name, None)),
            _ips([p.seed]) if p.seed else _text("–"),
            _text(f"{_t(p.proto or '?')}/{_t(p.port if p.port is not None else '*')}"),
            _text(p.kind),
            _text(p.state, True),
            _num(p.attempts),
            _num(p.span_s, f"{p.span_s:,.0f} s" if p.span_s is not None else None),
            _num(p.rate_per_s, f"{p.rate_per_s:,.1f}/s" if p.rate_per_s is not None else None),
            _time(p.first_seen),
            _time(p.last_seen),
        ]
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
    return _or_none(_table("probes-table", head, rows, True))


def _near_table(report: Report) -> Table | None:
    rows = [
        [
            _ip(x.ip),
            _text(provider_label(x.asn, report.provider_name(x.asn, x.as_name), x.country)),
            _text(x.reason),
            _text(x.detail),
            _ips(x.seeds),
            _num(x.established_seeds),
            _num(x.substantial_seeds),
        ]
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
    return _or_none(_table("near-misses-table", head, rows, True))


def _seed_sets_table(report: Report, actors: Sequence[Attribution]) -> Table | None:
    rows = [
        [
            _text(name),
            _text(", ".join(v.get("files") or [])),
            _num(v.get("count")),
            _text(", ".join(a.name for a in actors if a.actor.sets is None or name in a.actor.sets), True),
        ]
        for name, v in report.seed_sets.items()
    ]
    head = [("Set", False), ("Files", False), ("Seeds", True), ("Attributed to", False)]
    return _or_none(_table("seed-sets-table", head, rows))


_LEGEND = (
    ("#7b3fa0", "provider cluster"),
    ("#b05cd6", "cluster host"),
    ("#6d6d6d", "seed (dark)"),
    ("#c0392b", "seed (active)"),
    ("#e08e0b", "new host"),
    ("#1f8a70", "likely victim"),
)


def render_html_report(report: Report, *, tlp: str, actors: Sequence[Attribution] = (), now: datetime, ref: str) -> str:
    days = report.days
    seed_clusters = report.seed_clusters()
    n, total = len(report.near_misses), report.near_misses_total
    listed = f" ({n:,} listed, the most evidence first)" if n < total else ""
    cards = [
        (len(report.clusters), "clusters"),
        (sum(len(c.members) for c in report.clusters), "cluster hosts"),
        (len(report.seeds), "seeds"),
        (sum(1 for s in report.seeds if s.status == "dark"), "seeds dark"),
        (sum(1 for s in report.seeds if s.status == "unanswered"), "seeds unanswered"),
        (len(report.expansion), "new hosts"),
        (len(report.victims), "likely victims"),
        (len(report.probes), "probes"),
    ]
    inline, hashes = scripts()
    csp = (
        "default-src 'none'; script-src "
        + hashes
        + "; style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    view = {
        "csp": csp,
        "css": Markup(style(asset("assets", "report.css"))),
        "tlp_upper": tlp.upper(),
        "tlp_cls": "tlp-" + tlp.replace("+", "-"),
        "window_start": fmt_time(report.window_start),
        "window_end": fmt_time(report.window_end),
        "days": f" ({days:.0f} days)" if days is not None else "",
        "now": fmt_time(now),
        "ref": ref,
        "actors": [_t(actor_line(report, a)) for a in actors],
        "paragraphs": summary_paragraphs(report, actors),
        "cards": [(f"{k:,}", label) for k, label in cards],
        "legend": _LEGEND,
        "clusters_table": _clusters_table(report),
        "evidence": [_evidence(report, c, actors) for c in report.clusters],
        "hosts_table": _hosts_table(report, seed_clusters),
        "overlaps_table": _or_none(
            _table(
                "overlaps-table",
                [("Clusters", False), ("Shared seeds", True), ("Jaccard", True), ("Seeds", False)],
                [
                    [_text(" + ".join(o.clusters)), _num(o.count), _num(o.jaccard), _ips(o.shared_seeds)]
                    for o in report.overlaps
                ],
            )
        ),
        "victims_table": _victims_table(report),
        "probes_table": _probes_table(report),
        "near_total": total,
        "near_intro": f"{plural(total, 'host')} came close to a cluster but fell short{listed}.",
        "near_table": _near_table(report),
        "seed_sets_table": _seed_sets_table(report, actors),
        "excluded_table": _or_none(
            _table(
                "excluded-table",
                [("Address", False), ("Reason", False), ("Detail", False)],
                [[_ip(x.ip), _text(x.reason), _text(x.detail)] for x in report.excluded],
            )
        ),
        "params_table": _or_none(
            _table("params-table", [("Parameter", False), ("Value", False)], _setting_rows(report.parameters))
        ),
        "provenance_table": _or_none(
            _table("provenance-table", [("Item", False), ("Value", False)], _setting_rows(report.provenance))
        ),
        "problems_count": len(report.problems),
        "problems": [(_t(p.where), _t(p.reason)) for p in report.problems[:100]],
        "libs": ", ".join(f"{pkg} {ver}" for _, pkg, ver, _ in VENDORED),
        "data": Markup(json_for_script(script_data(report, tlp, seed_clusters))),
        "scripts": [Markup(s) for s in inline],
    }
    return _env().get_template("report.html.j2").render(view)

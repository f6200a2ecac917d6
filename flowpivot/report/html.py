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

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ..textsafe import visible
from .attribution import Attribution
from .html_tables import (
    _clusters_table,
    _hosts_table,
    _ip,
    _ips,
    _member_table,
    _near_table,
    _network,
    _new_hosts_table,
    _num,
    _or_none,
    _port,
    _probes_table,
    _seed_sets_table,
    _setting_rows,
    _t,
    _table,
    _text,
    _victims_table,
)
from .markdown import actor_line
from .model import Cluster, Report
from .page import (
    COLORS,
    VENDORED,
    asset,
    cluster_color,
    cluster_facts,
    json_for_script,
    script_data,
    scripts,
    style,
)
from .summary import (
    flags_text,
    plural,
    summary_paragraphs,
    tcp_flags,
    volume_text,
)
from .text import defang, fmt_time

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


def _evidence(report: Report, c: Cluster, actors: Sequence[Attribution]) -> dict[str, Any]:
    f = tcp_flags(c.evidence)
    attributed = None
    if actors:
        attributed = _t(", ".join(a.name for a in actors if a.covers_cluster(c))) or "none of the named actors"
    services = _table(
        f"svc-{_t(c.id)}",
        [("Protocol", False), ("Port", True), ("Listening side", False), ("Flows", True)],
        [[_text(s["proto"]), _port(s["port"]), _text(s.get("side"), True), _num(s["flows"])] for s in c.services],
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
        # (the flags and the confidence have their own rows above)
        "facts": [(_t(k), _t(v)) for k, v in cluster_facts(c) if "flag" not in k.lower() and k != "confidence"],
        "members": _member_table(report, c),
        "services": _or_none(services),
        "allocation": _or_none(allocation),
    }


def _legend(report: Report) -> list[dict[str, str]]:
    """The graph's legend in the colours and shapes the graph draws: each cluster's own colour (by id),
    then the hosts; a kind of host the graph does not have is left out."""
    by_color: dict[str, list[str]] = {}
    for i, c in enumerate(report.clusters):
        by_color.setdefault(cluster_color(i), []).append(_t(c.id))
    out = []
    for color, ids in by_color.items():
        names = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        out.append({"color": color, "shape": "box", "label": f"cluster {names}"})
    status = {s.status for s in report.seeds}
    hosts = (
        (bool(report.clusters), "member", "circle", "cluster host"),
        ("active" in status, "seed", "diamond", "seed (active)"),
        ("dark" in status, "dark", "diamond", "seed (dark)"),
        ("unanswered" in status, "unanswered", "diamond", "seed (unanswered)"),
        (bool(status - {"active", "dark", "unanswered"}), "unseen", "diamond", "seed (never seen)"),
        (bool(report.expansion), "expansion", "star", "new host"),
        (bool(report.victims), "victim", "triangle", "likely victim"),
    )
    out += [{"color": COLORS[k], "shape": shape, "label": label} for has, k, shape, label in hosts if has]
    return out


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
        (sum(1 for s in report.seeds if s.status not in ("active", "dark", "unanswered")), "seeds never seen"),
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
        "legend": _legend(report),
        "n_unseen": sum(1 for s in report.seeds if s.status not in ("active", "dark", "unanswered")),
        "n_victims": len(report.victims),
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
        "new_hosts_table": _new_hosts_table(report),
        "victims_table": _victims_table(report),
        "probes_table": _probes_table(report),
        "near_total": total,
        "near_intro": f"{plural(total, 'host')} came close to a cluster but fell short{listed}.",
        "near_table": _near_table(report),
        "seed_sets_table": _seed_sets_table(report, actors),
        "excluded_table": _or_none(
            _table(
                "excluded-table",
                [("Address", False), ("Network", False), ("Reason", False), ("Detail", False)],
                [
                    [
                        _ip(x.ip),
                        _text(_network(report, x.ip, x.asn, x.as_name, x.country)),
                        _text(x.reason),
                        _text(x.detail),
                    ]
                    for x in report.excluded
                ],
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

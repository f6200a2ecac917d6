"""The fixed parts of the HTML page: the vendored libraries and the report's own script inlined so that
they cannot end their element early, their Content-Security-Policy hashes, the stylesheet, and the
JSON data block the scripts read (``<``, ``>`` and ``&`` escaped for a script element)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from .model import Cluster, Report
from .summary import evidence_facts, host_provider_label, provider_label, seed_state_text
from .text import clean

__all__ = [
    "VENDORED",
    "CLUSTER_PALETTE",
    "COLORS",
    "asset",
    "cluster_color",
    "cluster_facts",
    "scripts",
    "style",
    "script_data",
    "json_for_script",
]

# The graph's colours, shared by the legend (html.py), the stylesheet's swatches and the scripts (through
# the data block), so that what the legend says is what the graph draws. Clusters take one colour each
# from CLUSTER_PALETTE, none of which is a host colour of COLORS.
COLORS = {
    "member": "#b05cd6",
    "seed": "#c0392b",
    "dark": "#6d6d6d",
    "unanswered": "#e6a39b",
    "unseen": "#c4c4c4",
    "expansion": "#e08e0b",
    "victim": "#1f8a70",
}
CLUSTER_PALETTE = ("#7b3fa0", "#0b5cad", "#c2185b", "#5d4037", "#00838f", "#3f51b5", "#827717")


def cluster_color(i: int) -> str:
    return CLUSTER_PALETTE[i % len(CLUSTER_PALETTE)]


# Libraries inlined into the page: file in flowpivot/report/vendor/, npm package, version, licence file.
VENDORED = (
    ("cytoscape.min.js", "cytoscape", "3.34.4", "LICENSE-cytoscape.md"),
    ("chart.umd.min.js", "chart.js", "4.6.1", "LICENSE-chartjs.md"),
)


@cache
def asset(*parts: str) -> str:
    return resources.files("flowpivot.report").joinpath(*parts).read_text(encoding="utf-8")


_SOURCEMAP = re.compile(r"^\s*//[#@]\s*sourceMappingURL=.*$", re.MULTILINE)


def _inline_js(code: str) -> str:
    """Script text that cannot end its <script> element early or fetch a source map."""
    code = _SOURCEMAP.sub("", code)
    code = re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE)
    return code.replace("<!--", "<\\!--")


def json_for_script(data: Any) -> str:
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
def scripts() -> tuple[tuple[str, ...], str]:
    """The page's scripts made safe to inline, and their CSP hashes: the same for every page, so made once
    (escaping and hashing the 650 KB of libraries was a quarter of a small report's rendering)."""
    scripts = tuple(_inline_js(asset("vendor", f)) for f, _, _, _ in VENDORED) + (
        _inline_js(asset("assets", "report.js")),
    )
    return scripts, " ".join(_sha256(s) for s in scripts)


def _fact_value(v: Any) -> str:
    """An evidence value as a person reads it: a mapping as "key value" pairs, never as JSON."""
    if isinstance(v, dict):
        return "; ".join(f"{str(k).replace('_', ' ')} {_fact_value(x)}" for k, x in v.items()) or "–"
    if isinstance(v, list):
        if len(v) > 6 or any(isinstance(x, dict | list) for x in v):
            return f"{len(v):,} entries"
        return ", ".join(_fact_value(x) for x in v) or "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}"
    return "–" if v is None else str(v)


def cluster_facts(c: Cluster) -> list[tuple[str, str]]:
    """A cluster's evidence as (fact, value) text: the score and confidence as their values (the result
    carries the formula there, which says how, not how much), mappings as words, not raw JSON."""
    ev = c.evidence if isinstance(c.evidence, dict) else {}
    out: list[tuple[str, str]] = []
    for k, v in evidence_facts(c.evidence):
        raw = ev.get(k.replace(" ", "_"), ev.get(k))
        if k == "score":
            v = f"{c.score:.4g}" if c.score is not None else "–"
        elif k == "confidence":
            v = f"{c.confidence:.4g}" if c.confidence is not None else "–"
        elif isinstance(raw, dict):
            v = clean(_fact_value(raw), 300) or "–"
        out.append((k, v))
    return out


def _iso(t: datetime | None) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def script_data(report: Report, tlp: str, seed_clusters: dict[str, list[str]]) -> dict[str, Any]:
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
                "color": cluster_color(i),
                "facts": [list(f) for f in cluster_facts(c)],
                "daily": [list(d) for d in c.daily],
            }
            for i, c in enumerate(report.clusters)
        ],
        "colors": COLORS,
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


def style(css: str) -> str:
    """Style text that cannot end its <style> element early."""
    return re.sub(r"</(style)", r"<\\/\1", css, flags=re.IGNORECASE)

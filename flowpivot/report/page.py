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

from .model import Report
from .summary import evidence_facts, host_provider_label, provider_label, seed_state_text

__all__ = ["VENDORED", "asset", "scripts", "style", "script_data", "json_for_script"]

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


def style(css: str) -> str:
    """Style text that cannot end its <style> element early."""
    return re.sub(r"</(style)", r"<\\/\1", css, flags=re.IGNORECASE)

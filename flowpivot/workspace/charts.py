"""Geometry of the workspace's inline SVG charts; the templates draw it (and escape every label).

- :func:`cluster_graph`: members (left, grouped by cluster), the seeds they reached (middle) and the
  new infrastructure they manage (right), one edge per member-seed link of the cluster's evidence;
- :func:`day_bars`: activity per day as bars;
- :func:`spans`: first-to-last-seen bars on a shared time axis (the seeds' timeline).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["cluster_graph", "day_bars", "spans", "STATUS_COLOURS"]

STATUS_COLOURS = {
    "active": "#2e7d32",
    "dark": "#616161",
    "unseen": "#bdbdbd",
    "unanswered": "#f9a825",
}
CLUSTER_COLOURS = ("#1565c0", "#ad1457", "#00838f", "#6a1b9a", "#ef6c00", "#2e7d32", "#4e342e", "#283593")


def _ips(items: Any) -> list[str]:
    return [x if isinstance(x, str) else str(x.get("ip")) for x in items or []]


def cluster_graph(result: dict[str, Any], max_seeds: int = 80) -> dict[str, Any]:
    """Nodes with x, y, kind, label, cluster and colour; edges between node ids; the SVG's size."""
    clusters = result.get("clusters") or []
    row = 26
    members: list[tuple[str, str, int]] = []  # ip, cluster id, cluster index
    for ci, c in enumerate(clusters):
        for m in _ips(c.get("members")):
            members.append((m, str(c.get("id")), ci))
    seed_order: list[str] = []
    for c in clusters:
        for s in c.get("seeds") or []:
            if s not in seed_order:
                seed_order.append(s)
    shown = seed_order[:max_seeds]
    status = {s.get("ip"): s.get("status") for s in result.get("seeds") or []}
    exp = [e for e in result.get("expansion") or [] if e.get("ip")]
    height = max(len(members) + 2 * len(clusters), len(shown), len(exp), 1) * row + 40
    nodes: list[dict[str, Any]] = []
    y = 30
    last = None
    heads = []
    for m, cid, ci in members:
        if cid != last:
            heads.append({"x": 10, "y": y, "label": f"cluster {cid}", "cluster": cid, "colour": _cc(ci)})
            y += row
            last = cid
        nodes.append({"id": f"m:{cid}:{m}", "ip": m, "x": 40, "y": y, "kind": "member", "cluster": cid,
                      "colour": _cc(ci), "label": m})  # fmt: skip
        y += row
    sy = (height - len(shown) * row) / 2 + row / 2
    for i, s in enumerate(shown):
        nodes.append({"id": f"s:{s}", "ip": s, "x": 470, "y": sy + i * row, "kind": "seed", "cluster": None,
                      "colour": STATUS_COLOURS.get(str(status.get(s)), "#9e9e9e"), "label": s,
                      "status": status.get(s)})  # fmt: skip
    ey = (height - len(exp) * row) / 2 + row / 2
    for i, e in enumerate(exp):
        nodes.append({"id": f"e:{e['ip']}", "ip": e["ip"], "x": 740, "y": ey + i * row, "kind": "expansion",
                      "cluster": None, "colour": "#d84315", "label": e["ip"]})  # fmt: skip
    at = {n["id"]: n for n in nodes}
    edges = []
    for ci, c in enumerate(clusters):
        cid = str(c.get("id"))
        links = ((c.get("evidence") or {}) if isinstance(c.get("evidence"), dict) else {}).get("links") or []
        pairs = {(m, s) for lk in links for m in lk.get("members") or [] for s in lk.get("seeds") or []}
        if not pairs:  # no per-link evidence: every member to every seed of its cluster
            pairs = {(m, s) for m in _ips(c.get("members")) for s in c.get("seeds") or []}
        for m, s in sorted(pairs):
            a, b = at.get(f"m:{cid}:{m}"), at.get(f"s:{s}")
            if a and b:  # from the end of the member's label
                edges.append({"x1": a["x"] + 140, "y1": a["y"], "x2": b["x"], "y2": b["y"], "colour": _cc(ci)})
    for e in exp:
        b = at[f"e:{e['ip']}"]
        for m in e.get("contacted_by") or []:
            for n in nodes:
                if n["kind"] == "member" and n["ip"] == m:
                    edges.append({"x1": n["x"] + 140, "y1": n["y"], "x2": b["x"], "y2": b["y"], "colour": "#d84315"})
    return {
        "nodes": nodes,
        "edges": edges,
        "heads": heads,
        "width": 900,
        "height": height,
        "hidden_seeds": len(seed_order) - len(shown),
    }


def _cc(i: int) -> str:
    return CLUSTER_COLOURS[i % len(CLUSTER_COLOURS)]


def day_bars(days: list[dict[str, Any]], key: str = "flows", width: int = 860, height: int = 120) -> dict[str, Any]:
    """One bar per day (``day``, ``key``) scaled to the largest; at most the last 400 days."""
    days = [d for d in days if d.get("day")][-400:]
    top = max((int(d.get(key) or 0) for d in days), default=0)
    n = max(len(days), 1)
    w = width / n
    bars = []
    for i, d in enumerate(days):
        v = int(d.get(key) or 0)
        h = 0 if top == 0 else max(1.0, (height - 20) * v / top)
        bars.append({"x": round(i * w, 2), "w": round(max(w - 1, 1), 2), "y": round(height - h, 2), "h": round(h, 2),
                     "day": d["day"], "value": v})  # fmt: skip
    return {"bars": bars, "width": width, "height": height, "top": top, "key": key}


def _ms(text: Any) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return None


def spans(rows: list[dict[str, Any]], width: int = 860, row: int = 18) -> dict[str, Any]:
    """Bars from ``first_seen`` to ``last_seen`` of each row (rows without both are left out)."""
    items: list[tuple[dict[str, Any], float, float]] = []
    for r in rows:
        a, b = _ms(r.get("first_seen")), _ms(r.get("last_seen"))
        if a is not None and b is not None:
            items.append((r, a, b))
    if not items:
        return {"bars": [], "width": width, "height": 0, "start": None, "end": None}
    lo = min(a for _, a, _ in items)
    hi = max(b for _, _, b in items)
    span = max(hi - lo, 1.0)
    left = 130
    usable = width - left - 10
    bars = []
    for i, (r, a, b) in enumerate(items):
        x = left + usable * (a - lo) / span
        w = max(2.0, usable * (b - a) / span)
        bars.append({"ip": r.get("ip"), "x": round(x, 1), "w": round(w, 1), "y": 4 + i * row,
                     "colour": STATUS_COLOURS.get(str(r.get("status")), "#1565c0"), "status": r.get("status"),
                     "first": r.get("first_seen"), "last": r.get("last_seen")})  # fmt: skip
    fmt = "%Y-%m-%d"
    return {
        "bars": bars,
        "width": width,
        "height": 8 + len(items) * row,
        "start": datetime.fromtimestamp(lo, UTC).strftime(fmt),
        "end": datetime.fromtimestamp(hi, UTC).strftime(fmt),
        "left": left,
    }

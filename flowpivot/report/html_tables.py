"""The tables of the HTML report, as plain values its templates place: a table is ``{"id", "head",
"rows", "copy_all"}``, a cell a small dict (``{"k": "ip"|"num"|"time"|"ips"|"badge"|"code"|"text", ...}``)
whose text the template autoescapes. Numbers carry their exact value for sorting (``v``) and the text
people read (``t``): ports without thousands separators, durations with the precision they have."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .attribution import Attribution
from .model import Cluster, Report
from .summary import (
    flat_items,
    host_provider_label,
    member_evidence,
    plural,
    provider_label,
    seed_state_text,
)
from .text import clean, defang, fmt_num, fmt_time, human_bytes, human_count, ip_sort_key

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


def _secs(s: float | None) -> Cell:
    """A duration with the precision it has: 0.004 s stays 0.004 s, not "0 s"."""
    if s is None:
        return _num(None)
    a = abs(s)
    if a >= 100:
        t = f"{s:,.0f}"
    elif a >= 10:
        t = f"{s:.1f}"
    elif a == 0:
        t = "0"
    else:
        t = f"{s:.3g}" if a < 0.001 else f"{s:.3f}".rstrip("0").rstrip(".")
    return _num(s, f"{t} s")


def _port(p: int | None) -> Cell:
    """A port as its number, with no thousands separator (8443, not 8,443)."""
    return _num(p, str(p) if p is not None else None)


def _time(t: datetime | None) -> Cell:
    return {"k": "time", "v": t.isoformat() if t else "", "t": fmt_time(t)}


def _network(report: Report, ip: str, asn: int | None, as_name: str | None, country: str | None) -> str:
    """Whose network an address is on: its provider, or that it is a private or reserved address (which
    no AS announces), else "unknown provider"."""
    if asn is None and not as_name:
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            a = None
        if a is not None and not a.is_global:
            return "private or reserved address"
    return provider_label(asn, report.provider_name(asn, as_name), country)


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
                _num(c.packets_est, human_count(c.packets_est) if c.packets_est is not None else None),
                _num(c.bytes_est, human_bytes(c.bytes_est) if c.bytes_est is not None else None),
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


def _services_text(services: list[dict[str, Any]]) -> str:
    """Services as "tcp/443 (12 flows)", ports without separators."""
    return ", ".join(
        f"{_t(s['proto'])}/{s['port'] if s['port'] is not None else '*'}"
        + (f" ({plural(s['flows'], 'flow')})" if s.get("flows") is not None else "")
        for s in services
    )


def _new_hosts_table(report: Report) -> Table | None:
    head = [
        ("Address", False),
        ("Provider", False),
        ("Clusters", False),
        ("Contacted by", False),
        ("Ports", False),
        ("First seen", False),
        ("Last seen", False),
        ("Score", True),
        ("Confidence", True),
    ]
    rows = [
        [
            _ip(e.ip),
            _text(host_provider_label(report, e)),
            _text(", ".join(e.clusters), True),
            _ips(e.contacted_by),
            _text(_services_text(e.services), True),
            _time(e.first_seen),
            _time(e.last_seen),
            _num(e.score),
            _num(e.confidence),
        ]
        for e in report.expansion
    ]
    return _or_none(_table("new-hosts-table", head, rows, True))


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
            _port(v.port),
            _text(v.state, True),
            _num(v.connections),
            _num(v.established_flows),
            _num(v.rejected_flows),
            _num(v.unanswered_flows),
            _secs(v.interval_s),
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
            _secs(p.span_s),
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
            _text(_network(report, x.ip, x.asn, x.as_name, x.country)),
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

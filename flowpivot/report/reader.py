"""Reading a hunt result (``flowpivot-hunt/1``) into the objects of :mod:`.model`, checked at the boundary.

Reading never crashes on a bad entry: an address that is not an IP (or carries an IPv6 scope id), a time
that does not parse or a count that is not a number is recorded as a :class:`~flowpivot.errors.Problem`
(the field's path in the document, and why), the entry or field is dropped, and the rest is kept.
Every address goes through one canonicaliser (:func:`.text.canonical_ip`); outside text is cleaned
here (:func:`.text.clean`: control characters made visible).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import InputError, Problem
from .model import (
    FORMAT,
    NAMESPACE,
    Allocation,
    Cluster,
    Excluded,
    Expansion,
    NearMiss,
    Overlap,
    Pair,
    Probe,
    Report,
    Seed,
    Victim,
)
from .text import canonical_ip, clean, fmt_day, is_email, parse_time

__all__ = ["load_result", "read_result", "report_id"]


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a hunt result file; InputError (with the place) when it is not JSON or not a hunt result."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read: {e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: line {e.lineno} column {e.colno}: not JSON: {e.msg}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{p}: offset 0: expected a JSON object (a flowpivot hunt result), got {type(doc).__name__}")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise InputError(
            f"{p}: key 'format': expected {FORMAT!r}, got {fmt!r}; is this the output of `flowpivot hunt`?"
        )
    return doc


class _Reader:
    """Collects problems while converting fields; each method returns None (and records why) on bad input."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def bad(self, where: str, why: str) -> None:
        self.problems.append(Problem(self.source, where, why))

    def ip(self, value: Any, where: str) -> str | None:
        try:
            return canonical_ip(value)
        except ValueError as e:
            why = "IPv6 scope id refused" if "scope id" in str(e) else "not an IP address"
            self.bad(where, f"{why}: {clean(repr(value), 80)}")
            return None

    def ips(self, values: Any, where: str) -> list[str]:
        if values is None:
            return []
        if not isinstance(values, list):
            self.bad(where, "expected a list of IP addresses")
            return []
        out = [self.ip(v, f"{where}[{i}]") for i, v in enumerate(values)]
        return list(dict.fromkeys(x for x in out if x))

    def time(self, value: Any, where: str) -> datetime | None:
        try:
            return parse_time(value)
        except (ValueError, TypeError, OverflowError, OSError):
            self.bad(where, f"not an ISO 8601 time: {clean(repr(value), 80)}")
            return None

    def integer(self, value: Any, where: str) -> int | None:
        f = self._number(value, where)
        if f is None:
            return None
        try:
            return int(f)
        except (ValueError, OverflowError):  # NaN, infinity
            self.bad(where, f"not a number: {clean(repr(value), 80)}")
            return None

    def real(self, value: Any, where: str) -> float | None:
        f = self._number(value, where)
        return f if f == f else None  # NaN -> unknown

    def _number(self, value: Any, where: str) -> float | None:
        """A JSON number or numeric string as a float; None (recorded unless the value is None) otherwise."""
        if value is None:
            return None
        if not isinstance(value, bool) and isinstance(value, int | float | str):
            try:
                return float(value)
            except (ValueError, OverflowError):  # OverflowError: an integer beyond the float range
                pass
        self.bad(where, f"not a number: {clean(repr(value), 80)}")
        return None

    def items(self, doc: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
        v = doc.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            self.bad(key, "expected a list")
            return []
        out = []
        for i, item in enumerate(v):
            if isinstance(item, dict):
                out.append((f"{key}[{i}]", item))
            else:
                self.bad(f"{key}[{i}]", f"expected an object, got {type(item).__name__}")
        return out

    def hosts(self, doc: dict[str, Any], key: str) -> Iterator[tuple[str, dict[str, Any], str]]:
        """The entries of a list of hosts with their address; one without a valid ``ip`` is left out.
        A generator, so that each entry's problems stay together in ``problems``."""
        for where, item in self.items(doc, key):
            ip = self.ip(item.get("ip"), f"{where}.ip")
            if ip is not None:
                yield where, item, ip

    def daily(self, value: Any, where: str) -> list[tuple[str, float]]:
        """Daily activity as sorted (YYYY-MM-DD, count); accepts [{day|date, flows|count}] or {day: count}."""
        pairs: list[tuple[Any, Any]] = []
        if isinstance(value, dict):
            pairs = list(value.items())
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    d = item.get("day", item.get("date", item.get("t")))
                    n = next((item[k] for k in ("flows", "count", "sessions", "packets") if k in item), None)
                    pairs.append((d, n))
                elif isinstance(item, list | tuple) and len(item) == 2:
                    pairs.append((item[0], item[1]))
                else:
                    self.bad(f"{where}[{i}]", "expected {day, flows}")
        elif value is not None:
            self.bad(where, "expected daily activity as a list or an object")
        out: dict[str, float] = {}
        for d, n in pairs:
            t = self.time(d, where)
            f = self.real(n, where)
            if t is not None and f is not None:
                key = fmt_day(t)
                out[key] = out.get(key, 0.0) + f
        return sorted(out.items())


_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "ipv6-icmp", 132: "sctp"}


def _proto(value: Any) -> str | None:
    """A protocol as the name people read (tcp, udp): numbers are mapped, names cleaned."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return _PROTO_NAMES.get(value, str(value))
    s = clean(value, 12) or None
    if s and s.isdigit():
        return _PROTO_NAMES.get(int(s), s)
    return s.lower() if s else None


def _asn(r: _Reader, value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.upper().startswith("AS"):
        value = value[2:]
    n = r.integer(value, where)
    if n is not None and not (0 <= n < 2**32):
        r.bad(where, f"ASN out of range: {n}")
        return None
    return n


def _allocation(r: _Reader, value: Any, where: str) -> list[Allocation]:
    if not value:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        r.bad(where, "expected a list of whois objects")
        return []
    out = []
    for i, a in enumerate(value):
        if not isinstance(a, dict):
            r.bad(f"{where}[{i}]", "expected a whois object")
            continue
        raw_abuse = clean(a.get("abuse_mailbox"), 200)
        ok = raw_abuse if is_email(raw_abuse) else None
        if raw_abuse and not ok:
            r.bad(f"{where}[{i}].abuse_mailbox", f"not a plain e-mail address, not used: {raw_abuse}")
        out.append(
            Allocation(
                range=clean(a.get("range"), 120),
                netname=clean(a.get("netname"), 120),
                org=clean(a.get("org"), 120),
                org_name=clean(a.get("org_name"), 200),
                status=clean(a.get("status"), 80),
                country=clean(a.get("country"), 40),
                abuse_mailbox=ok,
                abuse_raw=None if ok else raw_abuse,
                source=clean(a.get("source"), 40),
            )
        )
    return out


def _daily_for(
    r: _Reader, item: dict[str, Any], where: str, timeline: Any, kind: str, key: str
) -> list[tuple[str, float]]:
    for k in ("daily", "activity", "timeline"):
        if k in item:
            return r.daily(item[k], f"{where}.{k}")
    # a top-level {"timeline": {"clusters": {id: ...}, "seeds": {ip: ...}}} is accepted too
    if isinstance(timeline, dict) and isinstance(timeline.get(kind), dict) and key in timeline[kind]:
        return r.daily(timeline[kind][key], f"timeline.{kind}.{key}")
    return []


def _seed_source(src: Any) -> str | None:
    """Where the hunt read a seed (its file and line), as a short note when the seed has no comment."""
    if not isinstance(src, dict) or not src.get("file"):
        return None
    name = str(src["file"]).replace("\\", "/").rsplit("/", 1)[-1]
    return clean(f"from {name}" + (f", {src['where']}" if src.get("where") else ""), 200)


def _set_name(value: Any) -> str | None:
    return clean(value, 80) or None if isinstance(value, str) else None


def _file_stem(file: Any) -> str | None:
    """A plain seed file's set name: its stem, as ``flowpivot.hunt.read_seeds`` names it."""
    if not isinstance(file, str) or not file:
        return None
    return _set_name(PurePosixPath(file.replace("\\", "/")).stem)


def _seed_sets(r: _Reader, s: dict[str, Any], where: str) -> list[str]:
    """The sets that list a seed: ``sets``, else ``source.set``, else its file's stem (older results)."""
    v = s.get("sets")
    if isinstance(v, list):
        return list(dict.fromkeys(n for x in v if (n := _set_name(x))))
    if v is not None:
        r.bad(f"{where}.sets", "expected a list of set names")
    src = s.get("source")
    if isinstance(src, dict):
        name = _set_name(src.get("set")) or _file_stem(src.get("file"))
        return [name] if name else []
    return []


def _seed_set_table(r: _Reader, doc: dict[str, Any], seeds: list[Seed]) -> dict[str, dict[str, Any]]:
    """``seed_input.sets`` cleaned, with any set the seeds name that it does not list; else built from the seeds."""
    out: dict[str, dict[str, Any]] = {}
    si = doc.get("seed_input")
    table = si.get("sets") if isinstance(si, dict) else None
    if isinstance(table, dict):
        for k, v in table.items():
            name = _set_name(k)
            if not name or not isinstance(v, dict):
                r.bad(f"seed_input.sets.{clean(k, 40)}", "expected {files, count}")
                continue
            files = [clean(f, 300) or "" for f in v.get("files") or [] if isinstance(f, str)]
            out[name] = {"files": files, "count": r.integer(v.get("count"), f"seed_input.sets.{name}.count")}
    raw = {str(s.get("ip")): s for s in doc.get("seeds") or [] if isinstance(s, dict)}
    for s in seeds:
        src = raw.get(s.ip, {}).get("source")
        file = clean(src.get("file"), 300) if isinstance(src, dict) and isinstance(src.get("file"), str) else None
        for name in s.sets:
            entry = out.setdefault(name, {"files": [], "count": None, "derived": True})
            if entry.get("derived"):
                entry["count"] = (entry["count"] or 0) + 1
                if file and file not in entry["files"]:
                    entry["files"].append(file)
    for entry in out.values():
        entry.pop("derived", None)
    return out


def _member_evidence(r: _Reader, evidence: Any, where: str) -> dict[str, dict[str, Any]]:
    members = evidence.get("members") if isinstance(evidence, dict) else None
    if not isinstance(members, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for k, v in members.items():
        ip = r.ip(k, f"{where}.{clean(k, 60)}")
        if ip is not None and isinstance(v, dict):
            out[ip] = v
    return out


def _probe(r: _Reader, p: dict[str, Any], where: str, ip: str) -> Probe:
    return Probe(
        ip=ip,
        seed=r.ip(p.get("seed"), f"{where}.seed") if p.get("seed") is not None else None,
        port=r.integer(p.get("port"), f"{where}.port"),
        proto=_proto(p.get("proto")),
        kind=clean(p.get("kind"), 40) or "?",
        state=clean(p.get("state"), 20),
        attempts=r.integer(p.get("attempts"), f"{where}.attempts"),
        flows=r.integer(p.get("flows"), f"{where}.flows"),
        rejected_flows=r.integer(p.get("rejected_flows"), f"{where}.rejected_flows"),
        first_seen=r.time(p.get("first_seen"), f"{where}.first_seen"),
        last_seen=r.time(p.get("last_seen"), f"{where}.last_seen"),
        span_s=r.real(p.get("span_s"), f"{where}.span_s"),
        rate_per_s=r.real(p.get("rate_per_s"), f"{where}.rate_per_s"),
        asn=_asn(r, p.get("asn"), f"{where}.asn"),
        as_name=clean(p.get("as_name"), 200),
    )


def _services(r: _Reader, items: Any, where: str) -> list[dict[str, Any]]:
    services = []
    for i, sv in enumerate(items if isinstance(items, list) else []):
        if not isinstance(sv, dict):
            r.bad(f"{where}.services[{i}]", "expected {proto, port, flows}")
            continue
        services.append(
            {
                "proto": _proto(sv.get("proto")) or "?",
                "port": r.integer(sv.get("port"), f"{where}.services[{i}].port"),
                "flows": r.integer(sv.get("flows"), f"{where}.services[{i}].flows"),
                "side": clean(sv.get("side"), 20),  # which end listens: "seed" or "member"
            }
        )
    return services


def _near_miss(r: _Reader, x: dict[str, Any], where: str, ip: str) -> NearMiss:
    return NearMiss(
        ip=ip,
        reason=clean(x.get("reason"), 60) or "?",
        detail=clean(x.get("detail"), 300),
        seeds=r.ips(x.get("seeds"), f"{where}.seeds"),
        established_seeds=r.integer(x.get("established_seeds"), f"{where}.established_seeds"),
        substantial_seeds=r.integer(x.get("substantial_seeds"), f"{where}.substantial_seeds"),
        asn=_asn(r, x.get("asn"), f"{where}.asn"),
        as_name=clean(x.get("as_name"), 200),
        country=clean(x.get("country"), 40),
    )


def read_result(doc: dict[str, Any], source: str = "result.json") -> Report:
    """A hunt result document as a :class:`Report`; bad entries are skipped and listed in ``problems``."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}: expected a hunt result object, got {type(doc).__name__}")
    r = _Reader(source)
    window: dict[str, Any] = doc["window"] if isinstance(doc.get("window"), dict) else {}
    if "window" in doc and not isinstance(doc.get("window"), dict):
        r.bad("window", "expected {start, end}")
    timeline = doc.get("timeline")

    seeds: list[Seed] = []
    for where, s, ip in r.hosts(doc, "seeds"):
        status = clean(s.get("status"), 20) or "unseen"
        seeds.append(
            Seed(
                ip=ip,
                asn=_asn(r, s.get("asn"), f"{where}.asn"),
                as_name=clean(s.get("as_name"), 200),
                country=clean(s.get("country"), 40),
                first_seen=r.time(s.get("first_seen"), f"{where}.first_seen"),
                last_seen=r.time(s.get("last_seen"), f"{where}.last_seen"),
                status=status,
                comment=clean(s.get("comment"), 300) or _seed_source(s.get("source")),
                daily=_daily_for(r, s, where, timeline, "seeds", ip),
                sets=_seed_sets(r, s, where),
                last_answered=r.time(s.get("last_answered"), f"{where}.last_answered"),
                answered_flows=r.integer(s.get("answered_flows"), f"{where}.answered_flows"),
                unanswered_after=r.integer(s.get("unanswered_after"), f"{where}.unanswered_after"),
                last_attempt=r.time(s.get("last_attempt"), f"{where}.last_attempt"),
                flows=r.integer(s.get("flows"), f"{where}.flows"),
            )
        )

    clusters: list[Cluster] = []
    for where, c in r.items(doc, "clusters"):
        cid = clean(c.get("id"), 60) or f"c{len(clusters) + 1}"
        services = _services(r, c.get("services"), where)
        clusters.append(
            Cluster(
                id=cid,
                asn=_asn(r, c.get("asn"), f"{where}.asn"),
                as_name=clean(c.get("as_name"), 200),
                country=clean(c.get("country"), 40),
                allocation=_allocation(
                    r,
                    c["allocations"] if c.get("allocations") else c.get("allocation"),
                    f"{where}.allocations" if c.get("allocations") else f"{where}.allocation",
                ),
                members=r.ips(c.get("members"), f"{where}.members"),
                seeds=r.ips(c.get("seeds"), f"{where}.seeds"),
                established=bool(c.get("established")),
                initiator=clean(c.get("initiator"), 20),
                services=services,
                flows=r.integer(c.get("flows"), f"{where}.flows"),
                packets_est=r.integer(c.get("packets_est"), f"{where}.packets_est"),
                bytes_est=r.integer(c.get("bytes_est"), f"{where}.bytes_est"),
                first_seen=r.time(c.get("first_seen"), f"{where}.first_seen"),
                last_seen=r.time(c.get("last_seen"), f"{where}.last_seen"),
                score=r.real(c.get("score"), f"{where}.score"),
                evidence=c.get("evidence"),
                daily=_daily_for(r, c, where, timeline, "clusters", cid),
                confidence=r.real(c.get("confidence"), f"{where}.confidence"),
                member_evidence=_member_evidence(r, c.get("evidence"), f"{where}.evidence.members"),
            )
        )

    overlaps = []
    for where, o in r.items(doc, "overlaps"):
        ids = [clean(x, 60) or "?" for x in (o.get("clusters") or [])] if isinstance(o.get("clusters"), list) else []
        shared = r.ips(o.get("shared_seeds"), f"{where}.shared_seeds")
        count = r.integer(o.get("count"), f"{where}.count")
        overlaps.append(
            Overlap(
                ids, shared, count if count is not None else len(shared), r.real(o.get("jaccard"), f"{where}.jaccard")
            )
        )

    expansion = []
    for where, e, ip in r.hosts(doc, "expansion"):
        expansion.append(
            Expansion(
                ip=ip,
                asn=_asn(r, e.get("asn"), f"{where}.asn"),
                as_name=clean(e.get("as_name"), 200),
                country=clean(e.get("country"), 40),
                contacted_by=r.ips(e.get("contacted_by"), f"{where}.contacted_by"),
                clusters=[clean(x, 60) or "?" for x in (e.get("clusters") or []) if x is not None]
                if isinstance(e.get("clusters"), list)
                else [],
                score=r.real(e.get("score"), f"{where}.score"),
                first_seen=r.time(e.get("first_seen"), f"{where}.first_seen"),
                last_seen=r.time(e.get("last_seen"), f"{where}.last_seen"),
                allocation=_allocation(
                    r,
                    e["allocations"] if e.get("allocations") else e.get("allocation"),
                    f"{where}.allocation",
                ),
                confidence=r.real(e.get("confidence"), f"{where}.confidence"),
                services=_services(r, e.get("services"), where),
                established_with=r.integer(e["evidence"].get("established_with"), f"{where}.evidence.established_with")
                if isinstance(e.get("evidence"), dict)
                else None,
            )
        )

    victims = []
    for where, v, ip in r.hosts(doc, "victims"):
        victims.append(
            Victim(
                ip=ip,
                seeds=r.ips(v.get("seeds"), f"{where}.seeds"),
                port=r.integer(v.get("port"), f"{where}.port"),
                interval_s=r.real(v.get("interval_s"), f"{where}.interval_s"),
                asn=_asn(r, v.get("asn"), f"{where}.asn"),
                as_name=clean(v.get("as_name"), 200),
                state=clean(v.get("state"), 20),
                connections=r.integer(v.get("connections"), f"{where}.connections"),
                established_flows=r.integer(v.get("established_flows"), f"{where}.established_flows"),
                rejected_flows=r.integer(v.get("rejected_flows"), f"{where}.rejected_flows"),
                unanswered_flows=r.integer(v.get("unanswered_flows"), f"{where}.unanswered_flows"),
                proto=_proto(v.get("proto")),
                method=clean(v.get("method"), 40),
                first_seen=r.time(v.get("first_seen"), f"{where}.first_seen"),
                last_seen=r.time(v.get("last_seen"), f"{where}.last_seen"),
            )
        )

    excluded = []
    for where, x, ip in r.hosts(doc, "excluded"):
        excluded.append(
            Excluded(
                ip=ip,
                reason=clean(x.get("reason"), 60) or "?",
                detail=clean(x.get("detail"), 300),
                asn=_asn(r, x.get("asn"), f"{where}.asn"),
                as_name=clean(x.get("as_name"), 200),
                country=clean(x.get("country"), 40),
            )
        )

    pairs = [p for where, item in r.items(doc, "pairs") if (p := _pair(r, item, where)) is not None]
    probes = [_probe(r, item, where, ip) for where, item, ip in r.hosts(doc, "probes")]
    near = [_near_miss(r, item, where, ip) for where, item, ip in r.hosts(doc, "near_misses")]
    near_total = r.integer(doc.get("near_misses_total"), "near_misses_total")

    params: dict[str, Any] = doc["parameters"] if isinstance(doc.get("parameters"), dict) else {}
    prov: dict[str, Any] = doc["provenance"] if isinstance(doc.get("provenance"), dict) else {}
    return Report(
        window_start=r.time(window.get("start"), "window.start"),
        window_end=r.time(window.get("end"), "window.end"),
        parameters=params,
        provenance=prov,
        seeds=seeds,
        clusters=clusters,
        overlaps=overlaps,
        expansion=expansion,
        victims=victims,
        excluded=excluded,
        raw=doc,
        pairs=pairs,
        problems=r.problems,
        probes=probes,
        near_misses=near,
        near_misses_total=max(near_total or 0, len(near)),
        seed_sets=_seed_set_table(r, doc, seeds),
    )


def _pair(r: _Reader, p: dict[str, Any], where: str) -> Pair | None:
    seed, peer = r.ip(p.get("seed"), f"{where}.seed"), r.ip(p.get("peer"), f"{where}.peer")
    if seed is None or peer is None:
        return None
    from .summary import tcp_flags  # summary imports this module

    svc: list[Any] = p["services"] if isinstance(p.get("services"), list) else []
    top: dict[str, Any] = max((s for s in svc if isinstance(s, dict)), key=lambda s: s.get("flows") or 0, default={})
    s2p: dict[str, Any] = p["seed_to_peer"] if isinstance(p.get("seed_to_peer"), dict) else {}
    p2s: dict[str, Any] = p["peer_to_seed"] if isinstance(p.get("peer_to_seed"), dict) else {}
    return Pair(
        seed=seed,
        peer=peer,
        established=bool(p.get("established")),
        initiator=clean(p.get("initiator"), 20),
        proto=_proto(top.get("proto")),
        port=r.integer(top.get("port"), f"{where}.services.port"),
        flows=r.integer(p.get("flows"), f"{where}.flows"),
        flags_seed=tcp_flags({"flags": s2p.get("tcp_flags")}),
        flags_peer=tcp_flags({"flags": p2s.get("tcp_flags")}),
        first_seen=r.time(p.get("first_seen"), f"{where}.first_seen"),
        last_seen=r.time(p.get("last_seen"), f"{where}.last_seen"),
    )


def report_id(result: dict[str, Any], now: datetime, namespace: uuid.UUID = NAMESPACE) -> uuid.UUID:
    """A stable id for one rendering of one result: the same result, clock and namespace give the same id."""
    body = json.dumps(result, sort_keys=True, default=str, ensure_ascii=True)
    return uuid.uuid5(namespace, f"{now.isoformat()}|{body}")

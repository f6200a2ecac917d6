"""Takedown verification: did each reported host go dark after the analyst disclosed it, and when.

A pure function over hunt results (``flowpivot-hunt/1``), oldest run first. A host's status is
the hunt's seed status (docs/hunt.md, section 10): it is read from the host's *answers* (SYN-ACKs,
data, replies), so a scanner or a victim still knocking on a dead host does not keep it alive,
and those unanswered knocks after its last answer are the evidence that it is down. Only seeds
carry a status; a reported host that is no seed is listed as ``not-a-seed`` (add it to a seed
set of the investigation to follow it).

Verdicts, from the newest run:

=========================  ===============================================================
``dark-after-disclosure``  it answered after the disclosure, then went dark: the takedown
``dark-before-disclosure`` its last answer predates the disclosure (it was already down)
``still-answering``        it answered after the disclosure and is not dark
``silent``                 no answer since the disclosure, not (yet) long enough to be dark
``no-answers``             it never answered in the window (``unseen`` or ``unanswered``)
``not-a-seed``             the result has no status for it
=========================  ===============================================================

Each host gets its ``evidence`` (last answered session, the attempts left unanswered after it:
the hunt's ``unanswered_after`` count and the peers seen knocking after, as probes, victims or
pairs, from five minutes after it: sooner may be the end of the same session), a ``timeline``
of dated events (disclosed, last answer, knocks after, the end of the data of the run that first
found it dark) and its status in every run (``runs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..hunt.keys import iso
from .diff import iso_ms

__all__ = ["TAKEDOWN_FORMAT", "VERDICTS", "takedown"]

TAKEDOWN_FORMAT = "flowpivot-takedown/1"
VERDICTS = (
    "dark-after-disclosure",
    "dark-before-disclosure",
    "still-answering",
    "silent",
    "no-answers",
    "not-a-seed",
)
#: Knocking peers listed per host (the latest first); their number is always given.
MAX_KNOCKS = 20
#: A peer's traffic this soon after the last answer may be the end of that same session (its last
#: ACK, FIN or retransmission): a knock left unanswered comes later.
KNOCK_MARGIN_S = 300


def _norm_time(t: str | None) -> str | None:
    ms = iso_ms(t)
    return None if ms is None else iso(ms)


RunLike = Mapping[str, Any] | tuple[Mapping[str, Any], Mapping[str, Any]]


def _runs(runs: Mapping[str, Any] | Sequence[RunLike]) -> list[tuple[dict[str, Any], Mapping[str, Any]]]:
    """A result, or a list of results or of (run info, result): -> [(info, result)] oldest first."""
    if isinstance(runs, Mapping):
        runs = [runs]
    out: list[tuple[dict[str, Any], Mapping[str, Any]]] = []
    for i, r in enumerate(runs):
        if isinstance(r, tuple):
            info, res = r
            out.append((dict(info), res))
        else:
            out.append(({"run": i + 1}, r))
    return out


def _verdict(seed: Mapping[str, Any] | None, disclosed_ms: int) -> str:
    if seed is None:
        return "not-a-seed"
    status = seed.get("status")
    last = iso_ms(seed.get("last_answered"))
    if status in ("unseen", "unanswered") or last is None:
        return "no-answers"
    if status == "dark":
        return "dark-after-disclosure" if last >= disclosed_ms else "dark-before-disclosure"
    return "still-answering" if last >= disclosed_ms else "silent"


def _knocks(result: Mapping[str, Any], ip: str, after_ms: int) -> list[dict[str, Any]]:
    """Peers that reached ``ip`` after its last answer (``after_ms``) and the margin: probes, victims, pairs."""
    after_ms += KNOCK_MARGIN_S * 1000
    found: dict[str, dict[str, Any]] = {}
    for p in result.get("probes", []) or []:
        last = iso_ms(p.get("last_seen"))
        if p.get("seed") == ip and last is not None and last > after_ms:
            found.setdefault(
                p["ip"],
                {"peer": p["ip"], "as": "probe", "kind": p.get("kind"), "state": p.get("state"),
                 "port": p.get("port"), "attempts": p.get("attempts"), "last_seen": p.get("last_seen")},
            )  # fmt: skip
    for v in result.get("victims", []) or []:
        last = iso_ms(v.get("last_seen"))
        if ip in (v.get("seeds") or []) and last is not None and last > after_ms:
            found.setdefault(
                v["ip"],
                {"peer": v["ip"], "as": "victim", "state": v.get("state"), "port": v.get("port"),
                 "unanswered_flows": v.get("unanswered_flows"), "last_seen": v.get("last_seen")},
            )  # fmt: skip
    for p in result.get("pairs", []) or []:
        last = iso_ms(p.get("last_seen"))
        if p.get("seed") == ip and last is not None and last > after_ms:
            found.setdefault(
                p["peer"],
                {"peer": p["peer"], "as": "peer", "session": p.get("session"),
                 "attempt_flows": p.get("attempt_flows"), "rejected_flows": p.get("rejected_flows"),
                 "last_seen": p.get("last_seen")},
            )  # fmt: skip
    return sorted(found.values(), key=lambda k: (iso_ms(k["last_seen"]) or 0, k["peer"]), reverse=True)


def _last_sessions(result: Mapping[str, Any], ip: str, at_ms: int) -> list[dict[str, Any]]:
    """The established pairs of ``ip`` whose span holds its last answer (who it last answered)."""
    out = []
    for p in result.get("pairs", []) or []:
        if p.get("seed") != ip or not p.get("established"):
            continue
        first, last = iso_ms(p.get("first_seen")), iso_ms(p.get("last_seen"))
        if first is not None and last is not None and first <= at_ms <= last:
            out.append({
                "peer": p["peer"], "session": p.get("session"), "services": p.get("services", []),
                "first_seen": p.get("first_seen"), "last_seen": p.get("last_seen"),
            })  # fmt: skip
    out.sort(key=lambda s: iso_ms(s["last_seen"]) or 0)
    return out[:3]


def _evidence(result: Mapping[str, Any], seed: Mapping[str, Any]) -> dict[str, Any]:
    last = iso_ms(seed.get("last_answered"))
    ev: dict[str, Any] = {
        k: seed.get(k)
        for k in (
            "last_answered",
            "answered_flows",
            "unanswered_after",
            "last_attempt",
            "silent_hours",
            "dark_chance",
            "longest_answer_gap_hours",
            "last_seen",
        )
        if k in seed
    }
    if last is not None:
        ev["last_sessions"] = _last_sessions(result, seed["ip"], last)
        knocks = _knocks(result, seed["ip"], last)
        ev["knocks_after"] = knocks[:MAX_KNOCKS]
        ev["knocking_peers"] = len(knocks)
    return ev


def takedown(
    runs: Mapping[str, Any] | Sequence[RunLike],
    disclosed: str,
    hosts: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Verify the takedown of ``hosts`` (default: every seed of the newest run) disclosed at
    ``disclosed`` (ISO 8601), from one result or from runs oldest first (results, or
    ``(run info, result)`` pairs whose info, e.g. ``{"run": 3, "time": ...}``, is repeated in the
    per-run rows). Returns a ``flowpivot-takedown/1`` dict (see the module doc)."""
    when = iso_ms(disclosed)
    if when is None:
        raise ValueError("takedown verification needs the disclosure date")
    seq = _runs(runs)
    if not seq:
        raise ValueError("takedown verification needs at least one run")
    latest_info, latest = seq[-1]
    by_ip_runs = [(info, {s["ip"]: s for s in res.get("seeds", [])}) for info, res in seq]
    latest_seeds = by_ip_runs[-1][1]
    wanted = list(dict.fromkeys(hosts)) if hosts is not None else list(latest_seeds)
    rows = []
    for ip in wanted:
        seed = latest_seeds.get(ip)
        verdict = _verdict(seed, when)
        per_run = []
        confirmed: dict[str, Any] | None = None
        for (info, res), (_, seeds) in zip(seq, by_ip_runs, strict=True):
            s = seeds.get(ip)
            row = {
                **info,
                "window_end": (res.get("window") or {}).get("end"),
                "status": s.get("status") if s else None,
                "last_answered": s.get("last_answered") if s else None,
                "unanswered_after": s.get("unanswered_after") if s else None,
                "silent_hours": s.get("silent_hours") if s else None,
            }
            per_run.append(row)
            last = iso_ms(row["last_answered"])
            if row["status"] == "dark" and confirmed is None and last is not None and last >= when:
                confirmed = row
            elif row["status"] != "dark":
                confirmed = None  # came back: only the darkness that lasts counts
        host: dict[str, Any] = {"ip": ip, "verdict": verdict, "status": seed.get("status") if seed else None}
        timeline: list[dict[str, Any]] = [{"time": _norm_time(disclosed), "event": "disclosed"}]
        if seed is not None:
            host.update({k: seed.get(k) for k in ("asn", "as_name", "country", "sets") if k in seed})
            last = iso_ms(seed.get("last_answered"))
            host["went_dark"] = seed.get("last_answered") if verdict.startswith("dark") else None
            host["hours_after_disclosure"] = (
                round((last - when) / 3_600_000, 2) if last is not None and verdict.startswith("dark") else None
            )
            host["evidence"] = ev = _evidence(latest, seed)
            if last is not None:
                timeline.append({"time": seed.get("last_answered"), "event": "last-answer",
                                 "peers": [s["peer"] for s in ev.get("last_sessions", [])]})  # fmt: skip
                for k in reversed(ev.get("knocks_after", [])):
                    timeline.append({"time": k["last_seen"], "event": "unanswered", "peer": k["peer"], "as": k["as"]})
            if seed.get("last_attempt") and seed.get("unanswered_after"):
                timeline.append({"time": seed["last_attempt"], "event": "last-unanswered-attempt",
                                 "attempts": seed.get("unanswered_after")})  # fmt: skip
        if confirmed is not None and verdict == "dark-after-disclosure":
            host["confirmed_by"] = {k: confirmed.get(k) for k in ("run", "time", "window_end") if k in confirmed}
            timeline.append({"time": confirmed.get("window_end"), "event": "confirmed-dark", "run": confirmed.get("run"),
                             "recorded": confirmed.get("time")})  # fmt: skip
        host["timeline"] = sorted(timeline, key=lambda e: iso_ms(e.get("time")) or 0)
        host["runs"] = per_run
        rows.append(host)
    summary = {v: sum(1 for h in rows if h["verdict"] == v) for v in VERDICTS}
    return {
        "format": TAKEDOWN_FORMAT,
        "disclosed": _norm_time(disclosed),
        "as_of": (latest.get("window") or {}).get("end"),
        "run": latest_info,
        "summary": {k: v for k, v in summary.items() if v},
        "hosts": rows,
    }

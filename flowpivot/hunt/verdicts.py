"""The rows a hunt's result is made of: victims, probes, exclusions, and the small helpers the
stages share to build them (:mod:`flowpivot.hunt.engine`)."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from .keys import ip_of, ip_sort_key, iso, key_of
from .noise import Allowlist
from .provider import Provider
from .rules import Series

if TYPE_CHECKING:
    from .context import HuntContext

__all__ = [
    "apply_allowlist",
    "exclusion",
    "noise_keys",
    "probe_dict",
    "services",
    "state",
    "stem",
    "verdict_keys",
    "victims",
]


def stem(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".gz", ".txt", ".csv", ".json", ".tsv"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name or path


def services(con: HuntContext, table: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    rows = (
        con.sql(f"SELECT * FROM {table}_services ORDER BY flows DESC, proto, port, side").to_arrow_table().to_pylist()
    )
    for r in rows:
        out[(r["anchor"], r["peer"])].append(
            {"proto": r["proto"], "port": r["port"], "side": r["side"], "flows": r["flows"]}
        )
    return out


def state(pair: dict[str, Any]) -> str:
    if pair["established"]:
        return "established"
    if pair["rejected_flows"]:
        return "rejected"
    return "unanswered"


def probe_dict(s: Series, probe: Any, pair: dict[str, Any]) -> dict[str, Any]:
    return {
        "_key": s.peer,
        "ip": ip_of(s.peer),
        "seed": ip_of(s.seed),
        "port": s.port,
        "proto": s.proto,
        "kind": probe.kind,
        "state": s.state,
        "attempts": probe.attempts,
        "flows": pair["flows"],
        "rejected_flows": pair["rejected_flows"],
        "first_seen": iso(probe.first_ms),
        "last_seen": iso(probe.last_ms),
        "span_s": round(probe.span_s, 3),
        "rate_per_s": round(probe.rate_per_s, 3),
        "runs": probe.runs,
    }


def victims(
    per_port: dict[tuple[str, int, int], list[tuple[dict[str, Any], Any, Series]]],
    pair_of: dict[tuple[str, str], dict[str, Any]],
    min_starts: int,
) -> list[dict[str, Any]]:
    from .beacon import regularity

    found: dict[str, dict[str, Any]] = {}
    for (peer, proto, port), rs in sorted(per_port.items()):
        # the seed with the most connections first (its interval heads the entry)
        rs.sort(key=lambda x: (-len(x[0]["starts"]), x[0]["anchor"]))
        tested = [(r, b) for r, b, _ in rs if b is not None]
        if not tested and len(rs) > 1:
            # one implant beaconing to two seeds in turn: the union of its starts is the beacon
            starts = np.concatenate([np.asarray(r["starts"], dtype=np.int64) for r, _, _ in rs])
            b = regularity(starts) if len(starts) >= min_starts else None
            if b is not None:
                tested = [(r, b) for r, _, _ in rs]
        for r, b in tested:
            v = found.get(peer)
            if v is None:
                v = found[peer] = {
                    "_key": peer, "ip": ip_of(peer), "seeds": [], "port": port, "proto": proto,
                    "interval_s": b.interval_s, "regularity": b.share, "method": b.method, "connections": 0,
                    "sessions": [], "first_seen": iso(min(r["starts"])), "last_seen": iso(max(r["starts"])),
                    "established_flows": 0, "rejected_flows": 0, "unanswered_flows": 0,
                }  # fmt: skip
            seed = ip_of(r["anchor"])
            if seed not in v["seeds"]:
                v["seeds"].append(seed)
            pair = pair_of[(r["anchor"], peer)]
            v["connections"] += len(r["starts"])
            v["first_seen"] = min(v["first_seen"], iso(min(r["starts"])))
            v["last_seen"] = max(v["last_seen"], iso(max(r["starts"])))
            if pair["established"]:
                v["established_flows"] += pair["flows"] - pair["rejected_flows"]
            v["rejected_flows"] += pair["rejected_flows"]
            v["unanswered_flows"] += max(0, pair["attempt_flows"] - pair["rejected_flows"])
            v["sessions"].append({
                "seed": seed, "port": port, "session": pair["session"], "established": pair["established"],
                "flows": pair["flows"], "rejected_flows": pair["rejected_flows"],
                "attempt_flows": pair["attempt_flows"], "interval_s": b.interval_s, "method": b.method,
            })  # fmt: skip
    for v in found.values():
        states = {state(pair_of[(key_of(s["seed"]), v["_key"])]) for s in v["sessions"]}
        v["state"] = next(x for x in ("established", "rejected", "unanswered") if x in states or x == "unanswered")
    return sorted(found.values(), key=lambda v: ip_sort_key(v["ip"]))


def apply_allowlist(
    allow: Allowlist, prov: Provider, cands: dict[str, set[str]], excluded: dict[str, dict[str, Any]]
) -> None:
    if not (allow.networks or allow.asns) or not cands:
        return
    infos = prov.lookup([ip_of(k) for k in cands]) if allow.asns else {}
    for k in list(cands):
        ip = ip_of(k)
        why = allow.match(ip, (infos.get(ip) or {}).get("asn"))
        if why:
            excluded[k] = {"reason": "allowlist", "detail": why, "seeds": len(cands.pop(k))}


def noise_keys(s: dict[str, Any]) -> dict[str, Any]:
    d = s.get("degree") or 0
    informative = d - (s.get("noise") or 0)
    return {
        "degree": d,
        "fan_out": s.get("fan_out", 0),
        "fan_in": s.get("fan_in", 0),
        "noise_peers": s.get("noise", 0) or 0,
        "specificity": round(s.get("known", 0) / informative, 4) if informative > 0 else None,
    }


def verdict_keys(v: Any) -> dict[str, Any]:
    return {"reason": v.reason, "detail": v.detail, "p_global": v.enrichment.p_global, "p_local": v.enrichment.p_local}


def exclusion(b: dict[str, Any], seeds: int) -> dict[str, Any]:
    """An excluded candidate: the reason, the detail and the measurements it was decided from."""
    out = {"reason": b["reason"], "detail": b["detail"], "seeds": seeds, **noise_keys(b)}
    for k in ("p_global", "p_local"):
        if b.get(k) is not None:
            out[k] = b[k]
    if b.get("bound"):
        out["degree_bound"] = "lower"
        out["bound_span"] = b.get("bound_span") or "1 day"
        if b.get("bound_day"):
            out["bound_day"], out["bound_side"] = b["bound_day"], b.get("bound_side")
        if not b.get("known_exact"):
            out["known_bound"] = "upper"
    return out

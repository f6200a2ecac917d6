"""The hunt result's parts that are pure formatting: clusters, pairs, timelines, flags."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..store import DAY_MS
from .keys import day_of, ip_of, ip_sort_key, iso, key_of
from .provider import Provider
from .rules.clusters import Link

if TYPE_CHECKING:
    from .context import HuntContext

__all__ = ["cluster_dict", "pairs_out", "timelines", "flag_names", "overlaps"]


def flag_names(f: int) -> str:
    names = [(1, "F"), (2, "S"), (4, "R"), (8, "P"), (16, "A"), (32, "U"), (64, "E"), (128, "C")]
    return "".join(n if f & b else "." for b, n in reversed(names))


def cluster_dict(
    keys: list[str],
    links: list[Link],
    pairs_by_peer: dict[str, list[dict[str, Any]]],
    managed: dict[str, set[str]],
    services: dict[tuple[str, str], list[dict[str, Any]]],
    member_stats: dict[str, dict[str, Any]],
    infos: dict[str, dict[str, Any]],
    n_seeds_total: int,
    confidence: float,
) -> dict[str, Any]:
    ps = [p for k in keys for p in pairs_by_peer.get(k, [])]
    est = [p for p in ps if p["established"]]
    seeds = sorted({ip_of(s) for k in keys for s in managed.get(k, set())}, key=ip_sort_key)
    init = {"anchor": 0, "peer": 0, "mixed": 0, "unknown": 0}
    for p in est:
        init[p["initiator"]] += 1
    if init["peer"] and not (init["anchor"] or init["mixed"]):
        initiator = "members"
    elif init["anchor"] and not (init["peer"] or init["mixed"]):
        initiator = "seeds"
    else:
        initiator = "mixed"
    svc: dict[tuple[int, int, str], int] = defaultdict(int)
    for p in est:
        for s in services.get((p["anchor"], p["peer"]), []):
            svc[(s["proto"], s["port"], "seed" if s["side"] == "anchor" else "member")] += s["flows"]
    services_out = [
        {"proto": pr, "port": po, "side": side, "flows": n}
        for (pr, po, side), n in sorted(svc.items(), key=lambda kv: (-kv[1], kv[0]))
    ][:20]
    first = min(p["first_ms"] for p in ps)
    last = max(p["last_ms"] for p in ps)
    members = sorted((ip_of(k) for k in keys), key=ip_sort_key)
    info0 = infos.get(members[0], {})
    allocs = []
    for m in members:
        for a in (infos.get(m, {}).get("allocation") or [])[:1]:
            if a not in allocs:
                allocs.append(a)
    specs = [s["specificity"] for k in keys if (s := member_stats.get(k, {})).get("specificity") is not None]
    specificity = float(np.mean(specs)) if specs else 1.0
    est_share = len(est) / len(ps) if ps else 0.0
    reach = 1 - 0.5 ** (len(seeds) - 1) if seeds else 0.0
    score = round(specificity * est_share * reach, 4)
    flags = 0
    for p in est:
        flags |= p["a_flags"] | p["p_flags"]
    return {
        "id": "",
        "asn": info0.get("asn"),
        "as_name": info0.get("as_name"),
        "country": info0.get("country"),
        "allocation": allocs[0] if allocs else None,
        "allocations": allocs,
        "reseller": info0.get("reseller"),
        "members": members,
        "seeds": seeds,
        "established": bool(est),
        "initiator": initiator,
        "services": services_out,
        "flows": sum(p["flows"] for p in ps),
        "packets": sum(p["a_packets"] + p["p_packets"] for p in ps),
        "bytes": sum(p["a_bytes"] + p["p_bytes"] for p in ps),
        "packets_est": sum(p["a_packets_est"] + p["p_packets_est"] for p in ps),
        "bytes_est": sum(p["a_bytes_est"] + p["p_bytes_est"] for p in ps),
        "first_seen": iso(first),
        "last_seen": iso(last),
        "score": score,
        "confidence": round(confidence, 6),
        "evidence": {
            "established_pairs": len(est),
            "pairs": len(ps),
            "seeds": len(seeds),
            "seeds_in_input": n_seeds_total,
            "specificity": round(specificity, 4),
            "tcp_flags": flag_names(flags),
            "initiator_pairs": {
                ("seeds" if k == "anchor" else "members" if k == "peer" else k): v for k, v in init.items() if v
            },
            "max_sampling_rate": max((p["max_sampling_rate"] for p in ps), default=1),
            "members": {ip_of(k): member_stats.get(k, {}) for k in keys},
            "links": [
                {
                    "members": [ip_of(ln.members[0]), ip_of(ln.members[1])],
                    "seeds": [ip_of(s) for s in ln.seeds],
                    "hosts": [ip_of(h) for h in ln.hosts],
                }
                for ln in links
            ],
            "score": "specificity x share of member-seed pairs established x (1 - 2^-(seeds - 1))",
            "confidence": "1 - the product over members of the Bonferroni-adjusted chance that its contact with the seeds is coincidence",
        },
    }


def overlaps(clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, a in enumerate(clusters):
        for b in clusters[i + 1 :]:
            sa, sb = set(a["seeds"]), set(b["seeds"])
            shared = sorted(sa & sb, key=ip_sort_key)
            out.append(
                {
                    "clusters": [a["id"], b["id"]],
                    "shared_seeds": shared,
                    "count": len(shared),
                    "jaccard": round(len(shared) / len(sa | sb), 4) if sa | sb else 0.0,
                }
            )
    return out


def timelines(con: HuntContext, clusters: list[dict[str, Any]]) -> None:
    if not clusters:
        return
    keys = [(key_of(m), c["id"]) for c in clusters for m in c["members"]]
    con.register("cm_arrow", pa.table({"peer": [k for k, _ in keys], "cluster": [c for _, c in keys]}))
    rows = (
        con.sql(
            f"""SELECT cm.cluster, {con.d.idiv("f.ts", DAY_MS)} AS day, count(*) AS flows,
                   sum((f.a_by + f.p_by) * f.sr)::{con.d.ubigint} AS bytes_est,
                   count(DISTINCT f.anchor) AS seeds, count(DISTINCT cm.peer) AS members
            FROM sp_flows f JOIN cm_arrow cm ON {con.d.ipkey("f.peer_v4", "f.peer_v6")} = cm.peer
            GROUP BY ALL ORDER BY 1, 2"""
        )
        .to_arrow_table()
        .to_pylist()
    )
    con.unregister("cm_arrow")
    tl: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        tl[r["cluster"]].append(
            {
                "day": day_of(r["day"] * DAY_MS),
                "flows": r["flows"],
                "bytes_est": r["bytes_est"],
                "seeds": r["seeds"],
                "members": r["members"],
            }
        )
    for c in clusters:
        c["timeline"] = tl.get(c["id"], [])
        c["active_days"] = len(c["timeline"])


def pairs_out(
    pairs: list[dict[str, Any]], services: dict[tuple[str, str], list[dict[str, Any]]], limit: int
) -> list[dict[str, Any]]:
    keep = [p for p in pairs if p["session"] in ("established", "rejected")]
    keep.sort(key=lambda p: (-p["flows"], p["anchor"], p["peer"]))
    out = []
    for p in keep[:limit]:
        out.append(
            {
                "seed": ip_of(p["anchor"]),
                "peer": ip_of(p["peer"]),
                "session": p["session"],
                "established": p["established"],
                "substantial": bool(p.get("substantial")),
                "substance": p.get("substance"),
                "initiator": {"anchor": "seed", "peer": "peer"}.get(p["initiator"], p["initiator"]),
                "services": [
                    {
                        "proto": s["proto"],
                        "port": s["port"],
                        "side": "seed" if s["side"] == "anchor" else "peer",
                        "flows": s["flows"],
                    }
                    for s in services.get((p["anchor"], p["peer"]), [])[:10]
                ],
                "flows": p["flows"],
                "connections": p.get("conns"),
                "rejected_flows": p["rejected_flows"],
                "attempt_flows": p["attempt_flows"],
                "seed_to_peer": _direction(p, "a"),
                "peer_to_seed": _direction(p, "p"),
                "first_seen": iso(p["first_ms"]),
                "last_seen": iso(p["last_ms"]),
                "active_days": p["active_days"],
            }
        )
    return out


def _direction(p: dict[str, Any], side: str) -> dict[str, Any]:
    return {
        "flows": p[f"{side}_flows"],
        "packets": p[f"{side}_packets"],
        "bytes": p[f"{side}_bytes"],
        "packets_est": p[f"{side}_packets_est"],
        "bytes_est": p[f"{side}_bytes_est"],
        "tcp_flags": flag_names(p[f"{side}_flags"]),
    }


def enrich_rows(prov: Provider, rows: list[dict[str, Any]]) -> None:
    """Add asn, as_name and country to rows that carry an ``ip``."""
    infos = prov.lookup([r["ip"] for r in rows])
    for r in rows:
        i = infos[r["ip"]]
        r.update({"asn": i.get("asn"), "as_name": i.get("as_name"), "country": i.get("country")})

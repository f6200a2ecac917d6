"""What changed between two hunt results (``flowpivot-hunt/1``): a pure function, no store.

:func:`diff_results` compares any two results (normally two runs of one investigation, the older
first) and returns a ``flowpivot-hunt-diff/1`` dict::

    {"format": "flowpivot-hunt-diff/1",
     "from": {"window", "generated", "flows_in_window"}, "to": {...},
     "members":         {"new": [{ip, cluster, asn, as_name, seeds}], "gone": [...]},
     "seeds_contacted": {"new": [{seed, members}], "gone": [...]},   # seeds the members hold sessions with
     "contacts":        {"new": [{member, seed, session, first_seen, last_seen}]}  # new member-seed pairs
     "expansion":       {"new": [...], "gone": [...]},
     "victims":         {"appeared": [...], "stopped": [...], "resumed": [...], "state_changed": [...]},
     "seeds":           {"dark": [...], "back": [...], "status_changed": [...]},
     "clusters":        {"appeared": [...], "gone": [...], "changed": [...]},
     "probes":          {"new": [...]},
     "events": [{"kind", "ip", "message", ...}],   # one line per change, what ``watch`` alerts on
     "changed": bool}

Clusters are matched by their members, not their ids (a re-run numbers them afresh): a cluster
of the newer run that shares no member with any older cluster ``appeared``; one whose members are
all gone is ``gone``; one that shares members with an older one but gained or lost some is
``changed``. A seed went ``dark`` when its status became ``dark`` (docs/hunt.md, section 10: it
answered, then fell silent for longer than it plausibly could while up) and came ``back`` when a
dark seed is ``active`` again. A victim ``stopped`` when it had contacted its seeds within the
quiet span (24 h, or three of its beacon intervals if longer) before the older window's end and
has not in as long before the newer window's end; it ``resumed`` the other way round.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DIFF_FORMAT", "EVENT_KINDS", "diff_results", "QUIET_HOURS"]

DIFF_FORMAT = "flowpivot-hunt-diff/1"
#: A victim silent this long before the window's end (or three of its beacon intervals) stopped.
QUIET_HOURS = 24.0
#: Every event ``kind`` :func:`diff_results` emits.
EVENT_KINDS = (
    "cluster-appeared",
    "cluster-gone",
    "cluster-changed",
    "new-member",
    "member-gone",
    "new-seed-contacted",
    "seed-no-longer-contacted",
    "new-contact",
    "new-expansion",
    "expansion-gone",
    "victim-appeared",
    "victim-stopped",
    "victim-resumed",
    "victim-state",
    "seed-dark",
    "seed-back",
    "seed-status",
    "new-probe",
)


def iso_ms(t: str | None) -> int | None:
    """Milliseconds since 1970 of a result's ISO 8601 time (UTC when it names no zone), None for none."""
    if not t:
        return None
    d = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return int(d.timestamp() * 1000)


def _by_ip(rows: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        out.setdefault(str(r["ip"]), r)
    return out


def _members(result: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Member address -> its cluster."""
    out: dict[str, Mapping[str, Any]] = {}
    for c in result.get("clusters", []):
        for m in c.get("members", []):
            out.setdefault(m, c)
    return out


def _member_seeds(result: Mapping[str, Any]) -> dict[str, set[str]]:
    """Seed -> the members holding established sessions with it (from ``pairs``, else the clusters)."""
    members = _members(result)
    out: dict[str, set[str]] = {}
    pairs = result.get("pairs")
    if pairs:
        for p in pairs:
            if p.get("established") and p.get("peer") in members:
                out.setdefault(p["seed"], set()).add(p["peer"])
    for c in result.get("clusters", []):  # seeds of a cluster whose pairs were cut (max_pairs)
        for s in c.get("seeds", []):
            out.setdefault(s, set())
            if not pairs:
                out[s].update(c.get("members", []))
    return out


def _contacts(result: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    members = _members(result)
    return {
        (p["peer"], p["seed"]): p
        for p in result.get("pairs", []) or []
        if p.get("established") and p.get("peer") in members
    }


def _host(row: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    out = {"ip": row.get("ip")}
    for k in ("asn", "as_name", "country", *keys):
        if k in row:
            out[k] = row[k]
    return out


def _quiet_ms(victim: Mapping[str, Any]) -> float:
    interval = float(victim.get("interval_s") or 0)
    return max(QUIET_HOURS * 3_600_000, 3 * interval * 1000)


def _contacting(victim: Mapping[str, Any] | None, end_ms: int | None) -> bool:
    """Whether the victim contacted its seeds within its quiet span before the window's end."""
    if victim is None:
        return False
    last = iso_ms(victim.get("last_seen"))
    if last is None or end_ms is None:
        return True
    return end_ms - last < _quiet_ms(victim)


def _side(result: Mapping[str, Any]) -> dict[str, Any]:
    prov = result.get("provenance") or {}
    return {
        "window": result.get("window"),
        "generated": prov.get("generated"),
        "flows_in_window": prov.get("flows_in_window"),
    }


def _match_clusters(
    old: list[Mapping[str, Any]], new: list[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    appeared, gone, changed = [], [], []
    for c in new:
        mem = set(c.get("members", []))
        olds = [o for o in old if mem & set(o.get("members", []))]
        if not olds:
            appeared.append(_cluster(c))
            continue
        before = set().union(*(set(o.get("members", [])) for o in olds))
        seeds_before = set().union(*(set(o.get("seeds", [])) for o in olds))
        added, removed = sorted(mem - before), sorted(before - mem)
        new_seeds = sorted(set(c.get("seeds", [])) - seeds_before)
        lost_seeds = sorted(seeds_before - set(c.get("seeds", [])))
        if added or removed or new_seeds or lost_seeds or len(olds) > 1:
            changed.append({
                **_cluster(c),
                "was": [o.get("id") for o in olds],
                "members_added": added,
                "members_removed": removed,
                "seeds_added": new_seeds,
                "seeds_removed": lost_seeds,
            })  # fmt: skip
    for o in old:
        mem = set(o.get("members", []))
        if not any(mem & set(c.get("members", [])) for c in new):
            gone.append(_cluster(o))
    return appeared, gone, changed


def _cluster(c: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": c.get("id"),
        "asn": c.get("asn"),
        "as_name": c.get("as_name"),
        "members": list(c.get("members", [])),
        "seeds": len(c.get("seeds", [])),
        "confidence": c.get("confidence"),
    }


def _seed_evidence(s: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "status",
        "last_answered",
        "answered_flows",
        "unanswered_after",
        "last_attempt",
        "silent_hours",
        "dark_chance",
        "last_seen",
    )
    return {"ip": s.get("ip"), **{k: s.get(k) for k in keys if k in s}, "sets": s.get("sets", [])}


def diff_results(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """What changed from ``old`` to ``new`` (two ``flowpivot-hunt/1`` results): see the module doc."""
    om, nm = _members(old), _members(new)
    members_new = [
        {"ip": m, "cluster": c.get("id"), "asn": c.get("asn"), "as_name": c.get("as_name"), "seeds": len(c.get("seeds", []))}
        for m, c in nm.items()
        if m not in om
    ]  # fmt: skip
    members_gone = [
        {"ip": m, "cluster": c.get("id"), "asn": c.get("asn"), "as_name": c.get("as_name")}
        for m, c in om.items()
        if m not in nm
    ]

    os_, ns_ = _member_seeds(old), _member_seeds(new)
    seeds_new = [{"seed": s, "members": sorted(ns_[s])} for s in ns_ if s not in os_]
    seeds_gone = [{"seed": s, "members": sorted(os_[s])} for s in os_ if s not in ns_]
    oc, nc = _contacts(old), _contacts(new)
    contacts_new = [
        {"member": m, "seed": s, "session": p.get("session"), "first_seen": p.get("first_seen"), "last_seen": p.get("last_seen")}
        for (m, s), p in nc.items()
        if (m, s) not in oc
    ]  # fmt: skip

    oe, ne = _by_ip(old.get("expansion", [])), _by_ip(new.get("expansion", []))
    exp_new = [
        _host(e, "contacted_by", "clusters", "confidence", "first_seen", "last_seen")
        for ip, e in ne.items()
        if ip not in oe
    ]
    exp_gone = [_host(e, "contacted_by", "clusters", "last_seen") for ip, e in oe.items() if ip not in ne]

    ov, nv = _by_ip(old.get("victims", [])), _by_ip(new.get("victims", []))
    o_end, n_end = iso_ms((old.get("window") or {}).get("end")), iso_ms((new.get("window") or {}).get("end"))
    vkeys = ("seeds", "port", "state", "interval_s", "first_seen", "last_seen")
    v_appeared = [_host(v, *vkeys) for ip, v in nv.items() if ip not in ov]
    v_stopped, v_resumed, v_state = [], [], []
    for ip, v in ov.items():
        w = nv.get(ip)
        was, now = _contacting(v, o_end), _contacting(w, n_end)
        if was and not now:
            v_stopped.append({**_host(w or v, *vkeys), "listed": w is not None})
        elif not was and now and w is not None:
            v_resumed.append(_host(w, *vkeys))
        if w is not None and w.get("state") != v.get("state"):
            v_state.append({**_host(w, "seeds", "last_seen"), "was": v.get("state"), "state": w.get("state")})

    osd, nsd = _by_ip(old.get("seeds", [])), _by_ip(new.get("seeds", []))
    dark, back, status = [], [], []
    for ip, s in nsd.items():
        was_status = (osd.get(ip) or {}).get("status")
        now_status = s.get("status")
        if ip not in osd or was_status == now_status:
            continue
        if now_status == "dark":
            dark.append({**_seed_evidence(s), "was": was_status})
        elif was_status == "dark" and now_status == "active":
            back.append({**_seed_evidence(s), "was": was_status})
        else:
            status.append({**_seed_evidence(s), "was": was_status})

    c_app, c_gone, c_changed = _match_clusters(list(old.get("clusters", [])), list(new.get("clusters", [])))

    def pkey(p: Mapping[str, Any]) -> tuple[Any, ...]:
        return (p.get("ip"), p.get("seed"), p.get("proto"), p.get("port"), p.get("kind"))

    oprobe = {pkey(p) for p in old.get("probes", []) or []}
    probes_new = [
        {k: p.get(k) for k in ("ip", "seed", "port", "proto", "kind", "state", "attempts", "first_seen", "last_seen")}
        for p in new.get("probes", []) or []
        if pkey(p) not in oprobe
    ]

    out: dict[str, Any] = {
        "format": DIFF_FORMAT,
        "from": _side(old),
        "to": _side(new),
        "members": {"new": members_new, "gone": members_gone},
        "seeds_contacted": {"new": seeds_new, "gone": seeds_gone},
        "contacts": {"new": contacts_new},
        "expansion": {"new": exp_new, "gone": exp_gone},
        "victims": {"appeared": v_appeared, "stopped": v_stopped, "resumed": v_resumed, "state_changed": v_state},
        "seeds": {"dark": dark, "back": back, "status_changed": status},
        "clusters": {"appeared": c_app, "gone": c_gone, "changed": c_changed},
        "probes": {"new": probes_new},
    }
    out["events"] = _events(out)
    out["changed"] = bool(out["events"])
    return out


def _as(row: Mapping[str, Any]) -> str:
    if row.get("asn") is None:
        return ""
    name = row.get("as_name")
    return f" (AS{row['asn']} {name})" if name else f" (AS{row['asn']})"


def _events(d: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One event per change, in the order an analyst reads them: what went dark first."""
    ev: list[dict[str, Any]] = []

    def add(kind: str, ip: str | None, message: str, **extra: Any) -> None:
        ev.append({"kind": kind, "ip": ip, "message": message, **extra})

    for s in d["seeds"]["dark"]:
        add(
            "seed-dark",
            s["ip"],
            f"seed {s['ip']} went dark: last answered {s.get('last_answered')}, "
            f"{s.get('unanswered_after', 0)} attempts unanswered after it",
            evidence=s,
        )
    for s in d["seeds"]["back"]:
        add("seed-back", s["ip"], f"seed {s['ip']} is back from dark: answered at {s.get('last_answered')}", evidence=s)
    for s in d["seeds"]["status_changed"]:
        add("seed-status", s["ip"], f"seed {s['ip']}: {s['was']} -> {s.get('status')}", evidence=s)
    for c in d["clusters"]["appeared"]:
        add(
            "cluster-appeared",
            None,
            f"new cluster {c['id']}: {len(c['members'])} hosts{_as(c)} with {c['seeds']} seeds",
            cluster=c,
        )
    for c in d["clusters"]["gone"]:
        add("cluster-gone", None, f"cluster {c['id']} ({', '.join(c['members'])}) is no longer found", cluster=c)
    for c in d["clusters"]["changed"]:
        parts = []
        if c["members_added"]:
            parts.append(f"+{len(c['members_added'])} members")
        if c["members_removed"]:
            parts.append(f"-{len(c['members_removed'])} members")
        if c["seeds_added"]:
            parts.append(f"+{len(c['seeds_added'])} seeds")
        if c["seeds_removed"]:
            parts.append(f"-{len(c['seeds_removed'])} seeds")
        if len(c["was"]) > 1:
            parts.append(f"joins {', '.join(map(str, c['was']))}")
        add("cluster-changed", None, f"cluster {c['id']} changed: {', '.join(parts)}", cluster=c)
    for m in d["members"]["new"]:
        add("new-member", m["ip"], f"new member {m['ip']}{_as(m)} in cluster {m['cluster']}", cluster=m["cluster"])
    for m in d["members"]["gone"]:
        add("member-gone", m["ip"], f"{m['ip']} is no longer a member of a cluster (was {m['cluster']})")
    for s in d["seeds_contacted"]["new"]:
        add(
            "new-seed-contacted",
            s["seed"],
            f"seed {s['seed']} now has sessions with members {', '.join(s['members']) or '(pairs cut)'}",
            members=s["members"],
        )
    for s in d["seeds_contacted"]["gone"]:
        add("seed-no-longer-contacted", s["seed"], f"seed {s['seed']} no longer has sessions with any member")
    for c in d["contacts"]["new"]:
        add(
            "new-contact",
            c["member"],
            f"member {c['member']} has new sessions with seed {c['seed']}",
            seed=c["seed"],
        )
    for e in d["expansion"]["new"]:
        add(
            "new-expansion",
            e["ip"],
            f"new host {e['ip']}{_as(e)} managed by {len(e.get('contacted_by', []))} members",
            contacted_by=e.get("contacted_by", []),
        )
    for e in d["expansion"]["gone"]:
        add("expansion-gone", e["ip"], f"expansion host {e['ip']} is no longer found")
    for v in d["victims"]["appeared"]:
        add("victim-appeared", v["ip"], f"new victim {v['ip']} beaconing to {', '.join(v.get('seeds', []))}")
    for v in d["victims"]["stopped"]:
        add("victim-stopped", v["ip"], f"victim {v['ip']} stopped contacting its seeds (last {v.get('last_seen')})")
    for v in d["victims"]["resumed"]:
        add("victim-resumed", v["ip"], f"victim {v['ip']} contacts its seeds again (last {v.get('last_seen')})")
    for v in d["victims"]["state_changed"]:
        add("victim-state", v["ip"], f"victim {v['ip']}: {v['was']} -> {v['state']}")
    for p in d["probes"]["new"]:
        add(
            "new-probe", p["ip"], f"new {p['kind']} from {p['ip']} at seed {p['seed']} port {p['port']}", seed=p["seed"]
        )
    return ev

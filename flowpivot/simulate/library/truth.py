"""What a draw's exported records show, in the terms of the hunt's result: ``truth.json``'s ``expect``.

Only what the records show is expected. The rules, each from what a flow record can prove:

* a management pair is *seen* when at least one exported record of its sessions carries ACK (a packet
  of an established connection: nobody sends ACK before a handshake);
* a member is expected when its seen pairs reach at least two seeds: one contact alone does not tell
  an operator from a visitor; members with one are listed as optional (not wrong to report);
* a cluster is an operation at one provider (ASN), with the seeds its expected members were seen
  managing; operations at one provider whose members manage a seed in common are one cluster
  (issue 11: members of a provider that share seeds belong to one cluster; groups that share
  nothing stay apart); an overlap is the seeds two expected clusters share;
* a new host is expected as expansion when at least two expected members were seen managing it (one
  member's peer cannot be told from that member's own browsing);
* a victim is expected when at least ``VICTIM_MIN_CONNECTIONS`` of its connections to the seed left a
  record (fewer do not show a repeating pattern); its state is established if a record shows an
  answered handshake, rejected if the seed only answered with resets, unanswered otherwise;
* a probe is expected when at least ``PROBE_MIN_ATTEMPTS`` of its attempts left a record;
* a seed is expected dark when a record shows it answering (an established session) before it went
  dark and either a record shows an attempt towards it after, or its records stop for longer than a
  host sending at its own earlier rate stays silent with probability ``DARK_P`` (Poisson arrivals).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from .. import traffic as T
from .export import Exported
from .world import KIND, World, iso

__all__ = ["expected", "VICTIM_MIN_CONNECTIONS", "PROBE_MIN_ATTEMPTS"]

ACK, RST = 0x10, 0x04
VICTIM_MIN_CONNECTIONS = 5
PROBE_MIN_ATTEMPTS = 10
DARK_P = 1e-3  # chance that a live host at its own record rate stays silent that long
NOISE_ROLES = (
    "sweep scanner", "research scanner", "uptime monitor", "victim", "prober", "tor exit", "vpn exit",
    "ntp server", "cdn/update server", "mail server", "seed-provider customer", "web server", "resolver",
)  # fmt: skip


def _pairs(
    E: Exported, s: T.Sessions, kind: np.ndarray, want: str, ack_only: bool = True
) -> dict[tuple[int, int], int]:
    sess = E["session"]
    m = kind[sess] == KIND[want]
    if ack_only:
        m &= (E["flags"] & ACK) > 0
    out: dict[tuple[int, int], int] = defaultdict(int)
    for a, b in zip(s["a"][sess[m]].tolist(), s["b"][sess[m]].tolist(), strict=True):
        out[(a, b)] += 1
    return out


def expected(w: World, s: T.Sessions, kind: np.ndarray, ref: np.ndarray, E: Exported) -> dict[str, Any]:
    """The ``expect`` block, the limits found, and the role of every host that matters."""
    text = w.text
    limits: list[str] = list(w.limits)
    optional: dict[str, list[str]] = {"members": [], "expansion": [], "victims": []}
    seen = _pairs(E, s, kind, "manage")
    clusters: list[dict[str, Any]] = []
    members_ok: set[int] = set()
    for i, op in enumerate(w.truth["operations"]):
        by_asn: dict[int, dict[str, Any]] = {}
        for a, member in enumerate(op["members"].tolist()):
            managed = [int(x) for x in op["seeds"][op["matrix"][a]].tolist()]
            shown = [x for x in managed if seen.get((member, x), 0) > 0]
            for x in managed:
                if (member, x) not in seen and w.seeds.first[np.searchsorted(w.seeds.ix, x)] < w.t_end:
                    limits.append(
                        f"operation {i}: the management of {text(x)} by {text(member)} left no record with ACK"
                    )
            if len(shown) < 2:
                optional["members"].append(text(member))
                limits.append(
                    f"operation {i}: member {text(member)} is seen managing {len(shown)} seed(s) of {len(managed)}: "
                    "too few to tell it from a visitor (optional)"
                )
                continue
            members_ok.add(member)
            c = by_asn.setdefault(w.asn_of(member), {"members": [], "seeds": set(), "managed": set(), "records": {}})
            c["members"].append(member)
            c["records"][text(member)] = {text(x): seen[(member, x)] for x in shown}
            c["seeds"].update(shown)
            c["managed"].update(managed)
        for asn, c in sorted(by_asn.items()):
            clusters.append({
                "members": sorted(text(np.array(c["members"]))), "seeds": sorted(text(np.array(sorted(c["seeds"])))),
                "asn": asn, "operation": i, "records": c["records"],
                "optional_seeds": sorted(text(np.array(sorted(c["managed"] - c["seeds"])))) if c["managed"] - c["seeds"] else [],
            })  # fmt: skip
    clusters = _merge_shared(clusters)
    overlaps = [
        {"clusters": [i, j], "count": n}
        for i in range(len(clusters))
        for j in range(i + 1, len(clusters))
        if (n := len(set(clusters[i]["seeds"]) & set(clusters[j]["seeds"])))
    ]
    seen_new = _pairs(E, s, kind, "manage_new")
    expansion = []
    expansion_records: dict[str, dict[str, int]] = {}
    for x in w.truth.get("expansion", []):
        by = [int(m) for m in x["managers"].tolist() if seen_new.get((int(m), x["host"]), 0) and int(m) in members_ok]
        if len(by) >= 2:
            expansion.append(text(x["host"]))
            expansion_records[text(x["host"])] = {text(m): seen_new[(m, x["host"])] for m in by}
        else:
            optional["expansion"].append(text(x["host"]))
            limits.append(
                f"new host {text(x['host'])} is seen managed by {len(by)} expected member(s): too few (optional)"
            )
    victims = _victims(w, s, kind, E, optional, limits)
    probes = _probes(w, s, kind, ref, E, limits)
    dark, quiet = _dark(w, s, kind, E, limits)
    roles = {text(h): r for h, r in w.roles.items() if r != "member" or h in members_ok}
    for op in w.truth["operations"]:
        for m in op["members"].tolist():
            roles[text(m)] = "member"
    never = sorted(ip for ip, r in roles.items() if r in NOISE_ROLES)
    return {
        "expect": {
            "clusters": [
                {k: c[k] for k in ("members", "seeds", "asn", "operation", "operations", "optional_seeds", "records")}
                for c in clusters
            ],
            "overlaps": overlaps,
            "expansion": sorted(expansion),
            "expansion_records": expansion_records,
            "victims": victims,
            "probes": probes,
            "dark_seeds": sorted(dark),
            "quiet_seeds": sorted(quiet),
            "never_members": never,
            "optional": {k: sorted(set(v)) for k, v in optional.items()},
        },
        "limits": limits,
        "hosts": dict(sorted(roles.items())),
    }


def _state(flags: np.ndarray, d: np.ndarray) -> str:
    est = ((d == 0) & ((flags & ACK) > 0)) | ((d == 1) & ((flags & ACK) > 0) & ((flags & RST) == 0))
    if est.any():
        return "established"
    if ((d == 1) & ((flags & RST) > 0)).any():
        return "rejected"
    return "unanswered"


def _victims(
    w: World, s: T.Sessions, kind: np.ndarray, E: Exported, optional: dict[str, list[str]], limits: list[str]
) -> list[dict[str, Any]]:
    sess = E["session"]
    rows = np.flatnonzero(kind[sess] == KIND["victim"])
    out = []
    key = s["a"][sess[rows]] * (1 << 32) + s["b"][sess[rows]]
    for k in np.unique(key).tolist():
        r = rows[key == k]
        a, b = int(s["a"][sess[r[0]]]), int(s["b"][sess[r[0]]])
        n = len(np.unique(sess[r]))
        if n < VICTIM_MIN_CONNECTIONS:
            optional["victims"].append(f"{w.text(a)} {w.text(b)}")
            limits.append(
                f"victim {w.text(a)} -> {w.text(b)}: {n} connection(s) left a record, too few to show a beacon (optional)"
            )
            continue
        out.append(
            {"ip": w.text(a), "seed": w.text(b), "state": _state(E["flags"][r], E["dir"][r]), "connections_seen": n}
        )
    for v in w.truth.get("victims", []):
        for sd in v["seeds"].tolist():
            if not np.any((s["a"][sess[rows]] == v["host"]) & (s["b"][sess[rows]] == sd)):
                optional["victims"].append(f"{w.text(v['host'])} {w.text(sd)}")
                limits.append(f"victim {w.text(v['host'])} -> {w.text(sd)}: no connection left a record (optional)")
    return sorted(out, key=lambda x: (x["ip"], x["seed"]))


def _probes(
    w: World, s: T.Sessions, kind: np.ndarray, ref: np.ndarray, E: Exported, limits: list[str]
) -> list[dict[str, Any]]:
    sess = E["session"]
    rows = np.flatnonzero(kind[sess] == KIND["probe"])
    out = []
    for i, pr in enumerate(w.truth.get("probes", [])):
        r = rows[ref[sess[rows]] == i]
        n = len(np.unique(sess[r]))
        ip, seed = w.text(pr["host"]), w.text(pr["seed"])
        if n < PROBE_MIN_ATTEMPTS:
            limits.append(
                f"{pr['kind']} {ip} -> {seed}: {n} of {pr['attempts']} attempts left a record, too few to show a burst"
            )
            continue
        out.append({"ip": ip, "seed": seed, "kind": pr["kind"], "attempts_seen": n})
    return sorted(out, key=lambda x: (x["ip"], x["seed"]))


def _silent(times: np.ndarray, lo: int, since: int, until: int) -> bool:
    """True when a host that sent ``times`` records from ``lo`` on would, at its own rate, have sent one
    between ``since`` and ``until`` with probability above 1 - DARK_P (Poisson arrivals at that rate)."""
    if len(times) < 2 or since <= lo:
        return False
    rate = len(times) / max(since - lo, 1)
    return bool(np.exp(-rate * (until - since)) < DARK_P)


def _dark(w: World, s: T.Sessions, kind: np.ndarray, E: Exported, limits: list[str]) -> tuple[list[str], list[str]]:
    """Dark: seen answering, then an attempt towards it went unanswered or its records stopped for far
    longer than its own rate explains. Quiet: the records cannot decide (up to the end but silent as long
    as a dark one would be, or dark without the records to show it); either status is accepted."""
    sess, fl, d = E["session"], E["flags"], E["dir"]
    a, b = s["a"][sess], s["b"][sess]
    answered = ((d == 1) & ((fl & ACK) > 0) & ((fl & RST) == 0)) | ((d == 0) & ((fl & ACK) > 0))
    dark, quiet = [], []
    for k, seed in enumerate(w.seeds.ix.tolist()):
        ip = w.text(seed)
        mine = (b == seed) | (a == seed)
        ans_t = E["start"][answered & mine]
        sent_t = np.sort(E["start"][E["src"] == seed])
        lo = max(int(w.seeds.first[k]), w.t0)
        if w.seeds.dark[k] < w.t_end:
            after = np.count_nonzero((b == seed) & (E["start"] >= w.seeds.dark[k]))
            last = int(sent_t.max()) if len(sent_t) else lo
            if len(ans_t) and (after or _silent(sent_t, lo, last, w.t_end)):
                dark.append(ip)
            else:  # it is dark, so calling it dark is right, but the records do not require it
                quiet.append(ip)
                limits.append(f"seed {ip} went dark at {iso(int(w.seeds.dark[k]))}: records show {len(ans_t)} answered "
                              f"flows before and {after} attempts after, not enough to require calling it dark (quiet)")  # fmt: skip
        elif len(sent_t) and _silent(sent_t, lo, int(sent_t.max()), w.t_end):
            quiet.append(ip)
            limits.append(f"seed {ip} is up to the end but its records stop at {iso(int(sent_t.max()))} (quiet)")
    return dark, quiet


def _merge_shared(clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Clusters at one ASN that share a seed, merged (connected components)."""
    out: list[dict[str, Any]] = []
    for c in clusters:
        c = {**c, "operations": [c["operation"]]}
        hit = [o for o in out if o["asn"] == c["asn"] and set(o["seeds"]) & set(c["seeds"])]
        for o in hit:
            out.remove(o)
            c = {
                **c,
                "members": sorted(set(c["members"]) | set(o["members"])),
                "seeds": sorted(set(c["seeds"]) | set(o["seeds"])),
                "operation": min(c["operation"], o["operation"]),
                "operations": sorted(set(c["operations"]) | set(o["operations"])),
                "records": {**o["records"], **c["records"]},
                "optional_seeds": sorted(
                    (set(c["optional_seeds"]) | set(o["optional_seeds"])) - (set(c["seeds"]) | set(o["seeds"]))
                ),
            }
        out.append(c)
    return out

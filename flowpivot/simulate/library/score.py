"""Compare a hunt result with a draw's ``truth.json``: true/false positives and negatives per category.

Clusters are matched to expected ones by shared members (the pair sharing most members first; one
hunt cluster per expected cluster). What the truth marks optional (members, seeds, expansion hosts,
victims too thinly seen to be required) counts neither as a miss nor as a false positive.
"""

from __future__ import annotations

from typing import Any

__all__ = ["score", "CATEGORIES"]

CATEGORIES = ("members", "seeds", "overlaps", "expansion", "victims", "victim_state", "probes", "dark_seeds")
_STATE_RANK = {"established": 2, "rejected": 1, "unanswered": 0}


def _ips(x: Any) -> set[str]:
    return {v["ip"] if isinstance(v, dict) else v for v in x or []}


def _match(hunt: list[dict[str, Any]], want: list[dict[str, Any]]) -> dict[int, int]:
    """hunt cluster index -> expected cluster index, greedily by shared members, then shared seeds."""
    pairs = sorted(
        (
            (len(_ips(h["members"]) & set(e["members"])), len(_ips(h.get("seeds")) & set(e["seeds"])), -hi, -ei)
            for hi, h in enumerate(hunt)
            for ei, e in enumerate(want)
        ),
        reverse=True,
    )
    out: dict[int, int] = {}
    used: set[int] = set()
    for n, _, hi, ei in pairs:
        if n and -hi not in out and -ei not in used:
            out[-hi] = -ei
            used.add(-ei)
    return out


class _Tally:
    def __init__(self, hosts: dict[str, str]) -> None:
        self.c = {k: {"tp": 0, "fp": 0, "fn": 0} for k in CATEGORIES}
        self.misses: list[str] = []
        self.hosts = hosts

    def role(self, ip: str) -> str:
        r = self.hosts.get(ip)
        return f"{ip} ({r})" if r else ip

    def sets(self, cat: str, got: set[Any], want: set[Any], ignore: set[Any], where: str, show: Any = None) -> None:
        show = show or self.role
        self.c[cat]["tp"] += len(got & want)
        fp, fn = sorted(got - want - ignore), sorted(want - got)
        self.c[cat]["fp"] += len(fp)
        self.c[cat]["fn"] += len(fn)
        if fp:
            self.misses.append(
                f"{where}: {len(fp)} {cat} reported that should not be: " + ", ".join(show(x) for x in fp)
            )
        if fn:
            self.misses.append(f"{where}: {len(fn)} {cat} missed: " + ", ".join(show(x) for x in fn))


def score(result: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    """Per-category tp/fp/fn with precision and recall, ``exact`` and the human-readable misses."""
    exp = truth["expect"]
    opt = exp.get("optional", {})
    t = _Tally(truth.get("hosts", {}))
    hunt = result.get("clusters", [])
    want = exp["clusters"]
    match = _match(hunt, want)
    for hi, h in enumerate(hunt):
        got_m, got_s = _ips(h["members"]), _ips(h.get("seeds"))
        if hi in match:
            e = want[match[hi]]
            where = f"cluster {h.get('id', hi)} (expected #{match[hi]}, AS{e['asn']})"
            t.sets("members", got_m, set(e["members"]), set(opt.get("members", [])), where)
            t.sets("seeds", got_s, set(e["seeds"]), set(e.get("optional_seeds", [])), where)
            if h.get("asn") not in (None, e["asn"]):
                t.misses.append(f"{where}: reported at AS{h.get('asn')}")
        else:
            where = f"cluster {h.get('id', hi)} (AS{h.get('asn')}, matches no expected cluster)"
            t.sets("members", got_m, set(), set(opt.get("members", [])), where)
            t.sets("seeds", got_s, set(), set(), where)
    for ei, e in enumerate(want):
        if ei not in match.values():
            where = f"expected cluster #{ei} (AS{e['asn']}, operation {e.get('operation')}) not found"
            t.sets("members", set(), set(e["members"]), set(), where)
            t.sets("seeds", set(), set(e["seeds"]), set(), where)
    ids = {str(h.get("id", hi)): match.get(hi) for hi, h in enumerate(hunt)}
    got_o = set()
    for o in result.get("overlaps", []):
        if not int(o["count"]):
            continue  # no shared seed: not an overlap, whatever else links the two clusters
        a, b = (ids.get(str(x)) for x in o["clusters"])
        pair = sorted(f"#{x}" for x in (a, b)) if a is not None and b is not None else [str(x) for x in o["clusters"]]
        got_o.add((pair[0], pair[1], int(o["count"])))
    want_o = {(f"#{o['clusters'][0]}", f"#{o['clusters'][1]}", o["count"]) for o in exp["overlaps"]}
    t.sets("overlaps", got_o, want_o, set(), "overlaps", show=lambda x: f"clusters {x[0]}/{x[1]} sharing {x[2]} seeds")
    t.sets(
        "expansion", _ips(result.get("expansion")), set(exp["expansion"]), set(opt.get("expansion", [])), "expansion"
    )
    _victims(t, result, exp, set(opt.get("victims", [])))
    got_p = {(p["ip"], p["seed"]) for p in result.get("probes", [])}
    want_p = {(p["ip"], p["seed"]) for p in exp["probes"]}
    t.sets("probes", got_p, want_p, set(), "probes", show=lambda x: f"{t.role(x[0])} -> {x[1]}")
    got_d = {s["ip"] for s in result.get("seeds", []) if s.get("status") == "dark"}
    t.sets("dark_seeds", got_d, set(exp["dark_seeds"]), set(exp.get("quiet_seeds", [])), "seed status")
    never = set(exp.get("never_members", []))
    bad = sorted((_ips(m for h in hunt for m in h["members"]) | _ips(result.get("expansion"))) & never)
    if bad:
        t.misses.append("noise reported as actor infrastructure: " + ", ".join(t.role(x) for x in bad))
    cats: dict[str, dict[str, Any]] = {k: dict(v) for k, v in t.c.items()}
    for v in cats.values():
        v["precision"] = round(v["tp"] / (v["tp"] + v["fp"]), 4) if v["tp"] + v["fp"] else None
        v["recall"] = round(v["tp"] / (v["tp"] + v["fn"]), 4) if v["tp"] + v["fn"] else None
    exact = all(v["fp"] == 0 and v["fn"] == 0 for v in cats.values()) and not bad
    return {
        "family": truth.get("family"),
        "draw": truth.get("draw"),
        "exact": exact,
        "categories": cats,
        "misses": t.misses,
    }


def _victims(t: _Tally, result: dict[str, Any], exp: dict[str, Any], optional: set[str]) -> None:
    got: set[tuple[str, str]] = set()
    got_state: dict[str, str] = {}
    for v in result.get("victims", []):
        seeds = v.get("seeds") or ([v["seed"]] if "seed" in v else [])
        got.update((v["ip"], s) for s in seeds)
        if v.get("state"):
            got_state[v["ip"]] = v["state"]
    want = {(v["ip"], v["seed"]) for v in exp["victims"]}
    ignore = {p for p in got if f"{p[0]} {p[1]}" in optional}  # optional victims are "ip seed" pairs
    t.sets("victims", got, want, ignore, "victims", show=lambda x: f"{t.role(x[0])} -> {x[1]}")
    best: dict[str, str] = {}
    for v in exp["victims"]:
        if _STATE_RANK[v["state"]] >= _STATE_RANK.get(best.get(v["ip"], "unanswered"), 0):
            best[v["ip"]] = v["state"]
    for ip, state in sorted(best.items()):
        if ip not in got_state:
            continue
        if got_state[ip] == state:
            t.c["victim_state"]["tp"] += 1
        else:
            t.c["victim_state"]["fn"] += 1
            t.misses.append(f"victim {ip}: state {got_state[ip]!r}, expected {state!r}")

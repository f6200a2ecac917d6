"""The threat actor's side of a draw: seeds, operations (groups of operators managing seeds), new
infrastructure, operators behind NAT or behind VPN/Tor exits, and the operators' ordinary traffic.

How operators work, and why the sessions look as they do:

* a management session is an interactive TCP session (SSH, RDP, WinRM, an HTTPS panel) started by
  the operator: complete handshake, thousands of packets each way, minutes to hours, during the
  group's working hours;
* ``mesh`` management: each member manages a random share of the operation's seeds; ``chained``:
  member 1 manages seeds a-f, member 2 d-i, member 3 g-l (a sliding window, so two members far apart
  in the chain share no seed); ``rotating``: members take turns, one period each;
* ``daily`` cadence: a pair is active on a share of the days, 1-3 sessions a day; ``low_and_slow``: a
  few sessions a week;
* ``one_way``: asymmetric routing; the exporter sees the operator's packets to the seed, never the
  answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import traffic as T
from .services import CLIENT_SESSIONS_PER_DAY, MIX, client_sessions, diurnal_times, host_upkeep
from .world import DAY, HOUR, MIN, World

__all__ = ["place_seeds", "operations", "exits"]


def _count(op: dict[str, Any]) -> int:
    if op.get("management") == "chained":
        return int(op["step"]) * (int(op["members"]) - 1) + int(op["width"])
    return int(op["seeds"])


def place_seeds(w: World, p: dict[str, Any]) -> list[np.ndarray]:
    """Allocate every seed; returns each operation's seeds (book indices). Fills ``w.seeds``."""
    rng, spec, ops = w.rng, p["seeds"], p["operations"]
    provider = spec["provider"]
    op_seeds: list[np.ndarray] = []
    for i, op in enumerate(ops):
        n, v6 = _count(op), bool(op.get("v6", False))
        shared = np.zeros(0, np.int64)
        share = op.get("share") or {}
        j = i - 1 if share.get("with") == "previous" else int(share.get("with", -1))
        if share and j >= 0:
            c = int(share["count"])
            if j >= i or bool(ops[j].get("v6", False)) != v6:
                raise ValueError(f"operation {i} shares seeds with operation {j}: must be an earlier one of its family")
            shared = rng.choice(op_seeds[j], min(c, len(op_seeds[j]), n - 1), replace=False)
        own = w.alloc("seed", [op.get("seed_provider", provider)], n - len(shared), v6)
        op_seeds.append(rng.permutation(np.concatenate([shared, own])))
    extra = w.alloc("seed", [provider], int(spec.get("unmanaged", 0)), False)
    ix = np.unique(np.concatenate([*op_seeds, extra]))
    n = len(ix)
    first = np.full(n, w.t0 - 30 * DAY, np.int64)
    dark = np.full(n, w.t_end + DAY, np.int64)
    order = rng.permutation(n)
    n_dark = min(int(spec.get("dark", 0)), n)
    n_late = min(int(spec.get("late", 0)), n - n_dark)
    dark_ix, late_ix = order[:n_dark], order[n_dark : n_dark + n_late]
    # each on its own day where the window allows, during the provider's working day
    days = rng.permutation(np.arange(1, max(2, w.days - 1)))
    dark_days = np.resize(days, n_dark) if n_dark else days[:0]
    dark[dark_ix] = w.t0 + dark_days * DAY + rng.integers(8 * HOUR, 17 * HOUR, n_dark)
    late_days = rng.integers(1, max(2, w.days // 2 + 1), n_late)
    first[late_ix] = w.t0 + late_days * DAY + rng.integers(6 * HOUR, 18 * HOUR, n_late)
    second = int(spec.get("second_file", 0))
    sets: list[list[str]] = [["seeds"] for _ in range(n)]
    if second:
        for k in late_ix.tolist():  # a seed that came online later is in the later report only
            sets[k] = ["seeds-2"]
        rest = order[n_dark + n_late :]
        for k in rng.choice(rest, min(second, len(rest)), replace=False).tolist():
            sets[k] = ["seeds", "seeds-2"]
    w.seeds.ix, w.seeds.first, w.seeds.dark, w.seeds.sets = ix, first, dark, sets
    w.seeds.v6 = w.book.is_v6[ix]
    # the seeds' own upkeep while they are up
    host_upkeep(
        w,
        ix,
        np.maximum(first, w.t0),
        np.minimum(dark, w.t_end) - MIN,
        w.seeds.v6,
        float(spec.get("upkeep_per_day", 150)),
    )
    return op_seeds


def _seed_window(w: World, s: int) -> tuple[int, int]:
    k = int(np.searchsorted(w.seeds.ix, s))
    return max(int(w.seeds.first[k]), w.t0), min(int(w.seeds.dark[k]), w.t_end)


def manage(
    w: World,
    op: dict[str, Any],
    kind: str,
    ref: int,
    member: int,
    host: int,
    port: int,
    lo: int,
    hi: int,
    oneway: bool = False,
) -> int:  # noqa: PLR0913
    """Management sessions of one member with one host between lo and hi; returns how many."""
    rng = w.rng
    if hi - lo < HOUR:
        return 0
    d_lo, d_hi = (lo - w.t0) // DAY, (hi - w.t0 - 1) // DAY
    days = np.arange(d_lo, d_hi + 1)
    if op.get("cadence") == "low_and_slow":
        n = max(1, int(rng.poisson(float(op.get("per_week", 2)) * len(days) / 7)))
        d = np.sort(rng.choice(days, n))
    else:
        active = days[rng.random(len(days)) < float(op.get("active_day_share", 0.4))]
        if len(active) == 0:
            active = rng.choice(days, 1)
        d = np.repeat(active, rng.integers(1, 4, len(active)))
    t0 = w.work_times(d, float(op.get("hour", 10)))
    dur = T.lognormal_int(rng, len(d), 40 * MIN, 0.8, 2 * MIN, 4 * HOUR)
    t0 = np.clip(t0, lo, None)
    ok = t0 + dur < hi - MIN
    if not ok.any():
        t0 = np.array([lo + (hi - lo) // 3], np.int64)
        dur = np.array([min(30 * MIN, (hi - lo) // 3)], np.int64)
    else:
        t0, dur = t0[ok], dur[ok]
    n = len(t0)
    big = float(op.get("packets", 6000))
    c = T.tcp_established(
        rng, n, T.lognormal_int(rng, n, big / 4, 0.9, 50, 200_000), T.lognormal_int(rng, n, big, 1.0, 200, 1_000_000),
        rng.uniform(300, 900, n), rng.uniform(1000, 1400, n),
    )  # fmt: skip
    w.add(kind, n, ref=ref, oneway=oneway, t0=t0, dur=dur, a=member, b=host, dport=port, v6=w.book.is_v6[member], **c)
    return n


def _matrix(rng: np.random.Generator, op: dict[str, Any], m: int, k: int) -> np.ndarray:
    """Which member manages which of the operation's seeds."""
    if op.get("management") == "chained":
        step, width = int(op["step"]), int(op["width"])
        mat = np.zeros((m, k), bool)
        for i in range(m):
            mat[i, i * step : i * step + width] = True
        return mat
    mat = rng.random((m, k)) < float(op.get("coverage", 0.7))
    for j in range(k):
        if not mat[:, j].any():
            mat[rng.integers(m), j] = True
    for i in range(m):
        if mat[i].sum() < min(2, k):
            mat[i, rng.choice(k, min(2, k), replace=False)] = True
    return mat


def operations(w: World, p: dict[str, Any], op_seeds: list[np.ndarray]) -> None:
    """Every operation: members, management of seeds and new infrastructure, their ordinary traffic."""
    rng = w.rng
    w.truth["operations"] = []
    w.truth["expansion"] = []
    for i, (op, seeds) in enumerate(zip(p["operations"], op_seeds, strict=True)):
        m, v6 = int(op["members"]), bool(op.get("v6", False))
        provs = op["providers"] if isinstance(op["providers"], list) else [op["providers"]]
        members = np.concatenate([w.alloc("member", [provs[j % len(provs)]], 1, v6) for j in range(m)])
        mat = _matrix(rng, op, m, len(seeds))
        ports = op.get("ports", [22, 3389, 443])
        port = [int(rng.choice(ports)) for _ in range(m)]
        one_way = rng.random(m) < float(op.get("one_way_share", 0.0))
        slots = np.linspace(w.t0, w.t_end, m + 1).astype(np.int64)
        for a in range(m):
            lo_slot, hi_slot = (
                (int(slots[a]), int(slots[a + 1])) if op.get("management") == "rotating" else (w.t0, w.t_end)
            )
            for j in np.flatnonzero(mat[a]).tolist():
                s = int(seeds[j])
                lo, hi = _seed_window(w, s)
                manage(
                    w,
                    op,
                    "manage",
                    i,
                    int(members[a]),
                    s,
                    port[a],
                    max(lo, lo_slot),
                    min(hi, hi_slot),
                    bool(one_way[a]),
                )
        w.truth["operations"].append({
            "members": members, "seeds": seeds, "matrix": mat, "one_way": one_way, "ports": port,
            "providers": provs, "management": op.get("management", "mesh"),
        })  # fmt: skip
        _expansion(w, op, i, members, port)
        _ordinary(w, op, members, v6)


def _expansion(w: World, op: dict[str, Any], i: int, members: np.ndarray, port: list[int]) -> None:
    ex = op.get("expansion") or {}
    n = int(ex.get("count", 0))
    if n == 0:
        return
    rng = w.rng
    where = ex.get("provider", "seed")
    prov = str(w.truth["seed_provider"]) if where == "seed" else str(where)
    v6 = bool(op.get("v6", False))
    hosts = w.alloc("expansion", [prov], n, v6)
    for h in hosts.tolist():
        k = min(len(members), int(ex.get("managers", 2)))
        who = rng.choice(len(members), k, replace=False)
        setup = w.t0 + int(rng.integers(0, max(1, w.days // 2))) * DAY + int(rng.integers(0, DAY))
        for a in who.tolist():
            manage(w, op, "manage_new", i, int(members[a]), h, port[a], setup, w.t_end)
        host_upkeep(w, np.array([h]), np.array([setup]), np.array([w.t_end - MIN]), np.array([v6]), 150.0)
        w.truth["expansion"].append({"host": h, "managers": members[who], "operation": i, "provider": prov})


def _ordinary(w: World, op: dict[str, Any], members: np.ndarray, v6: bool) -> None:
    """The member's own browsing, mail and updates; behind a NAT, other users' traffic on the same address."""
    per_day = float(op.get("ordinary_per_day", 0))
    users = int(op.get("nat_users", 0))
    for h in members.tolist():
        n = int(w.rng.poisson(per_day * w.days))
        client_sessions(w, "ordinary", np.full(n, h), diurnal_times(w, n), v6)
        n = int(w.rng.poisson(users * CLIENT_SESSIONS_PER_DAY / 4 * w.days))
        client_sessions(w, "nat_user", np.full(n, h), diurnal_times(w, n), v6, MIX)


def exits(w: World, p: dict[str, Any], op_seeds: list[np.ndarray]) -> None:
    """VPN/Tor exits: many users' traffic leaves from each; some users visit seeds; an operator manages some seeds through one."""
    spec = p.get("exits") or {}
    n = int(spec.get("count", 0))
    if n == 0:
        return
    rng = w.rng
    label = f"{spec.get('kind', 'vpn')} exit"
    hosts = w.alloc(label, spec.get("orgs", ["hetzner", "ovh", "digitalocean"]), n, False)
    w.truth["exits"] = hosts
    v4_seeds = w.seeds.ix[~w.seeds.v6]
    for h in hosts.tolist():
        k = int(rng.poisson(float(spec.get("sessions_per_day", 3000)) * w.days))
        client_sessions(w, "exit_user", np.full(k, h), diurnal_times(w, k), False)
        # users who open a seed's public page (a phishing site, a panel's login page)
        k = int(rng.poisson(float(spec.get("seed_visits_per_day", 2)) * w.days))
        if k and len(v4_seeds):
            c = T.tcp_established(rng, k, rng.integers(3, 12, k), rng.integers(5, 60, k), 400.0, 1300.0)
            w.add("exit_user", k, t0=diurnal_times(w, k), dur=rng.integers(300, 20_000, k), a=h,
                  b=rng.choice(v4_seeds, k), dport=443, **c)  # fmt: skip
    who = spec.get("operator")
    if who:
        i = int(who["operation"])
        op = p["operations"][i]
        seeds = op_seeds[i][: int(who.get("seeds", 2))]
        via = int(rng.choice(hosts))
        for s in seeds.tolist():
            if not w.book.is_v6[s]:
                lo, hi = _seed_window(w, s)
                manage(w, op, "exit_manage", i, via, s, 22, lo, hi)
        w.limits.append(
            f"an operator of operation {i} manages {len(seeds)} seeds through the {label} {w.text(via)}: the exit "
            "carries thousands of other users, so it is shared infrastructure, never a member, and the operator "
            "behind it cannot be told apart from them"
        )

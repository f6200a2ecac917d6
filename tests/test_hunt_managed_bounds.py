"""Managed draws from the index's host-peer table: the same verdicts as counting the busy hosts.

Round 2 bounds the busiest candidates' managed draws from below (``reach.managed_bounds``) and
decides the enrichment test on Holm's adjustment of the resulting p-value bounds; only the hosts
that does not decide are counted (docs/hunt.md, "Managed draws from a bound"). Oracles: the exact
count of the same hosts' managed draws over the window (``reach.managed_counts`` on their full
reach), and the same hunt with the table turned off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import flowpivot.hunt.noise_stage as ns
import flowpivot.hunt.reach as reach
from flowpivot.hunt import hunt
from flowpivot.store import Store
from flowpivot.store.index import build_index

# the bound-specific keys of an exclusion decided from a bound (p-values and draws from below)
_BOUNDED = ("p_value", "p_adjusted", "p_global", "confidence", "detail", "draws", "p_bound", "draws_bound")
_BOUNDED += ("degree", "fan_out", "fan_in", "noise_peers", "specificity", "degree_bound", "bound_span", "bound_day")
_BOUNDED += ("bound_side", "known_bound", "p_local")


@pytest.fixture(scope="module")
def border(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    """The benchmark's border mix (gateways and servers with thousands of peers, 150 random seeds),
    300,000 flows, indexed with busy hosts from 128 flows a day."""
    from bench.hunt import build

    work = tmp_path_factory.mktemp("border")
    build(300_000, 150, work)
    (work / "datagrams.npy").unlink()
    store = Store(work / "store")
    build_index(store, host_day_min_flows=128)
    return store, work / "seeds.txt"


def test_bound_of_managed_draws_is_at_most_the_count_and_hits_are_exact(
    border: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, seeds = border
    monkeypatch.setattr(reach, "peer_table", lambda con: None)  # every candidate counted
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    real = ns.managed_counts

    def spy(con: Any, table: str, pairs: Any, targets: Any, noise: Any, margin: float) -> Any:
        out = real(con, table, pairs, targets, noise, margin)
        monkeypatch.undo()  # the table back on, for the bound only
        try:
            seen.append((out, ns.managed_bounds(con, "spy", pairs, "sp", noise, margin, 0, 1 << 62)))
        finally:
            monkeypatch.setattr(reach, "peer_table", lambda con: None)
            monkeypatch.setattr(ns, "managed_counts", spy)
        return out

    monkeypatch.setattr(ns, "managed_counts", spy)
    hunt(store, [seeds])
    pairs = [(k, exact.get(k, (0, 0)), b) for exact, bounds in seen for k, b in bounds.items()]
    assert len(pairs) >= 5, "too few busy candidates: the test would prove little"
    for k, (draws, hits), (low, low_hits) in pairs:
        assert low <= draws and low_hits == hits, k
    # and the bound is not vacuous: most of the count
    assert sum(low for _, _, (low, _) in pairs) >= 0.5 * sum(d for _, (d, _), _ in pairs)


def test_hunt_with_bounds_gives_the_verdicts_of_the_full_count(
    border: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, seeds = border
    fast = hunt(store, [seeds])
    monkeypatch.setattr(reach, "peer_table", lambda con: None)
    full = hunt(store, [seeds])
    bounded = [e for e in fast["excluded"] if e.get("p_bound")]
    assert bounded, "no candidate was decided from its bound: the test would prove nothing"
    strip = lambda r: {k: v for k, v in r.items() if k not in ("excluded", "parameters", "provenance")}  # noqa: E731
    assert json.dumps(strip(fast), sort_keys=True) == json.dumps(strip(full), sort_keys=True)
    theirs = {e["ip"]: e for e in full["excluded"]}
    assert sorted(theirs) == sorted(e["ip"] for e in fast["excluded"])
    for e in fast["excluded"]:
        o = theirs[e["ip"]]
        if e.get("p_bound"):
            # a lower bound of what the count gives; the label from its busiest day's sessions
            assert e["p_bound"] == e["draws_bound"] == "lower"
            assert e["p_value"] <= o["p_value"] and e["p_adjusted"] <= o["p_adjusted"]
            assert e["p_adjusted"] > fast["parameters"]["alpha"]
            assert e["reason"] in ("scanner", "shared-service") and o["reason"] in ("scanner", "shared-service")
            assert {k: v for k, v in e.items() if k not in _BOUNDED and k != "reason"} == {
                k: v for k, v in o.items() if k not in _BOUNDED and k != "reason"
            }
        elif e.get("p_adjusted_bound"):
            # counted, not enriched either way: its adjustment known from below
            assert e["p_adjusted"] <= o["p_adjusted"] and e["p_adjusted"] > fast["parameters"]["alpha"]
            assert "tested with it: at least" in e["detail"]
            assert {
                k: v for k, v in e.items() if k not in ("p_adjusted", "p_adjusted_bound", "confidence", "detail")
            } == {k: v for k, v in o.items() if k not in ("p_adjusted", "confidence", "detail")}
        else:
            assert e == o, e["ip"]

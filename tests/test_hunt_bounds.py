"""The reach rule judged from a lower bound gives the verdicts of the exact count over the window.

The hunt counts the busiest candidates' peers over the last part of the window first and condemns
those the bound already proves noise (``engine._bounded_reach``). The oracle is the same hunt with
the shortcut turned off, which counts every candidate's peers over the whole window.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import flowpivot.hunt.noise_stage as noise_stage
import flowpivot.hunt.reach as reach
from flowpivot.hunt import hunt
from flowpivot.ingest import ingest_paths
from flowpivot.simulate import Scenario, simulate
from flowpivot.store import Store


@pytest.fixture(scope="module")
def fin7_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path, Path]:
    tmp = tmp_path_factory.mktemp("bounds")
    simulate(dataclasses.replace(Scenario(flows=300_000), sampling=100, seed=11), tmp / "sim")
    store = Store(tmp / "store")
    ingest_paths(sorted((tmp / "sim" / "exports").glob("*.pcap")), store)
    return store, tmp / "sim" / "seeds.txt", tmp / "sim" / "asn.tsv"


def _verdicts(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "clusters": sorted((c["asn"], sorted(c["members"]), sorted(c["seeds"])) for c in r["clusters"]),
        "expansion": sorted(e["ip"] for e in r["expansion"]),
        "victims": sorted(v["ip"] for v in r["victims"]),
        "excluded": sorted((e["ip"], e["reason"]) for e in r["excluded"]),
    }


def test_bounded_reach_gives_the_exact_verdicts(
    fin7_store: tuple[Store, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, seeds, asn = fin7_store
    fast = hunt(store, [seeds], asn_dbs=[asn])
    bounded = {e["ip"]: e for e in fast["excluded"] if e.get("degree_bound") == "lower"}
    assert bounded, "no host was judged from the bound: the test would prove nothing"

    with monkeypatch.context() as m:
        m.setattr(reach, "BOUND_FRACTION", 1)  # the bound's span is the whole window: no shortcut
        exact = hunt(store, [seeds], asn_dbs=[asn])
    assert not any(e.get("degree_bound") for e in exact["excluded"])
    assert _verdicts(fast) == _verdicts(exact)

    full = {e["ip"]: e for e in exact["excluded"]}
    for ip, e in bounded.items():
        assert e["reason"] in ("scanner", "shared-service")
        assert "at least" in e["detail"] and e["bound_span"].endswith("days")
        # a lower bound of the degree the exact pass counts over the whole window
        assert 0 < e["degree"] <= full[ip]["degree"], (ip, e, full[ip])

    with monkeypatch.context() as m:
        m.setattr(reach, "KNOWN_PASS_SHARE", -1)  # count the known peers exactly whenever it could help
        counted = hunt(store, [seeds], asn_dbs=[asn])
    assert _verdicts(counted) == _verdicts(exact)

    # the estimate says "not worth counting", then keeping the flows overflows: count after all
    counts: list[int] = []
    real = reach._condemn_counted

    def spy(con: Any, name: str, keys: Any, *a: Any) -> Any:
        counts.append(len(keys))
        return real(con, name, keys, *a)

    with monkeypatch.context() as m:
        m.setattr(reach, "KNOWN_PASS_SHARE", 1e9)
        m.setattr(reach, "KEEP_SHARE", 0)
        m.setattr(reach, "_condemn_counted", spy)
        fallback = hunt(store, [seeds], asn_dbs=[asn])
    assert any(counts), "the fallback count never ran: the test would prove nothing"
    assert _verdicts(fallback) == _verdicts(exact)


def test_members_sessions_from_kept_flows_equal_a_scan_of_the_store(
    fin7_store: tuple[Store, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The members' session pass reads the flows the candidates' reach pass kept, or the store."""
    store, seeds, asn = fin7_store
    calls: list[str | None] = []
    real = noise_stage.create_pairs

    def spy(*a: Any, **k: Any) -> None:
        calls.append(k.get("source"))
        real(*a, **k)

    monkeypatch.setattr(noise_stage, "create_pairs", spy)  # the members' session pass
    monkeypatch.setattr(reach, "KEEP_SHARE", 0.5)  # this small store's candidates hold a few % of it
    kept = hunt(store, [seeds], asn_dbs=[asn])
    assert "cand_flows" in calls  # the kept flows were used
    calls.clear()
    monkeypatch.setattr(reach, "KEEP_SHARE", -1)  # never keep: scan the store
    scanned = hunt(store, [seeds], asn_dbs=[asn])
    assert "cand_flows" not in calls
    assert kept["clusters"] and _verdicts(kept) == _verdicts(scanned)
    assert [e["evidence"] for e in kept["expansion"]] == [e["evidence"] for e in scanned["expansion"]]

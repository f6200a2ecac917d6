"""End to end on simulated data: simulate -> ingest -> hunt, judged only by the acceptance block of truth.json.

The test knows nothing of the scenario but what truth.json states, so it holds the hunt to the
issue's acceptance criteria on the fin7 preset and its variants (sampling rates, IPv6 seeds).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest

from flowpivot.simulate import Scenario, simulate


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [
        {"sampling": 100},
        {"sampling": 1000, "ipv6_seeds": True, "seed": 5},
    ],
    ids=["fin7-1:100", "fin7-ipv6-1:1000"],
)
def test_hunt_meets_the_acceptance_stated_in_truth(variant: dict, tmp_path: Path) -> None:
    from flowpivot.hunt import hunt
    from flowpivot.ingest import ingest_paths
    from flowpivot.store import Store

    sc = dataclasses.replace(Scenario(flows=300_000), **variant)
    truth = simulate(sc, tmp_path / "sim")
    acc = truth.data["acceptance"]
    store = Store(tmp_path / "store")
    reports = ingest_paths(sorted((tmp_path / "sim" / "exports").glob("*.pcap")), store)
    assert sum(r.records for r in reports) == truth.data["flows"]["exported"]
    r = hunt(store, [tmp_path / "sim" / "seeds.txt"], asn_dbs=[tmp_path / "sim" / "asn.tsv"])

    got = sorted((c["asn"], sorted(c["members"]), len(c["seeds"])) for c in r["clusters"])
    want = sorted((c["asn"], c["members"], c["seeds"]) for c in acc["clusters"])
    assert got == want
    assert len(r["clusters"]) == acc["cluster_count"]
    assert sorted(o["count"] for o in r["overlaps"]) == sorted(o["count"] for o in acc["overlaps"])
    expansion = {e["ip"] for e in r["expansion"]}
    assert expansion == set(acc["expansion"])
    noise = set(acc["noise_never_in_clusters_or_expansion"])
    assert not noise & ({m for c in r["clusters"] for m in c["members"]} | expansion)
    dark_after = _ms(acc["every_seed_dark_after"])
    for s in r["seeds"]:
        assert s["status"] == "dark", s
        assert _ms(s["last_seen"]) < dark_after

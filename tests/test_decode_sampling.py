"""Sampling rates announced in options records, against an independent decoder's renormalisation."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import shared

from flowpivot.ingest import ingest_paths
from flowpivot.store import Store

PMACCT = "realworld/pmacct/104-IPFIXv10-IPv6-CISCO-sampling_option"


def test_iosxr_random_sampling_is_renormalised_as_pmacct_does(tmp_path: Path) -> None:
    """Cisco IOS-XR announces random 1-out-of-256 sampling (selectorAlgorithm 3, samplingSize 1,
    samplingPopulation 256, beside samplingPacketInterval 1 and no packet space). pmacct's
    nfacctd multiplies each flow's packets and bytes by the rate: so must ours."""
    d = shared(PMACCT)
    oracle = [json.loads(line) for line in (d / "output-flow-00.json").read_text().splitlines() if line.strip()]
    store = Store(tmp_path / "store")
    [rep] = ingest_paths([d / "traffic-00.pcap"], store)
    assert rep.bad == 0
    rows = store.connect().sql("SELECT sampling_rate, packets, bytes FROM flows").fetchall()
    assert {r[0] for r in rows} == {256}
    assert sorted((r[1] * r[0], r[2] * r[0]) for r in rows) == sorted((o["packets"], o["bytes"]) for o in oracle)

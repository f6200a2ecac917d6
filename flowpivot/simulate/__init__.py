"""Scenario simulator: realistic NetFlow v9 export pcaps with ground truth, for testing and benchmarking the hunt.

    >>> from flowpivot.simulate import Scenario, simulate
    >>> truth = simulate(Scenario(flows=200_000), "out/")     # doctest: +SKIP

writes ``out/exports/day-NN.pcap``, ``out/seeds.txt``, ``out/asn.tsv`` (ip2asn TSV) and ``out/truth.json``.
"""

from __future__ import annotations

from .core import Truth, simulate
from .scenario import PRESETS, ClusterSpec, NoiseSpec, Provider, Scenario, load_config, org, preset, scenario_from_dict

__all__ = [
    "Scenario",
    "ClusterSpec",
    "NoiseSpec",
    "Provider",
    "Truth",
    "simulate",
    "PRESETS",
    "preset",
    "scenario_from_dict",
    "load_config",
    "org",
]

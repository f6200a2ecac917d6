"""The hunt's judgement: pure functions over small per-pair and per-host statistics.

The query stages (:mod:`flowpivot.hunt.pivot`, :mod:`flowpivot.hunt.reach`) produce the tables;
the functions here decide, each returning the figures it decided from. Nothing here touches a
store or a connection, so every rule can be tested on hand-made tables
(``tests/test_hunt_rules.py``) and any engine that produces the same tables shares them.

* :mod:`.substance` - is a seed-peer pair an operator's sessions, or only checks and probes?
* :mod:`.enrichment` - is a host's contact with the seeds more than its reach explains?
* :mod:`.noise` - scanner, shared service, or specific: the verdict and its detail
* :mod:`.clusters` - connected members within a provider, links and confidence
* :mod:`.contacts` - victims (beacons) and probes (bursts) from connection starts
* :mod:`.seedstatus` - answered, dark, unanswered: when a seed stopped answering
"""

from .clusters import Link, cluster_confidence, components
from .contacts import Probe, Series, classify_series, probe_of
from .enrichment import Enrichment, holm, hypergeom_sf, seed_enrichment
from .noise import HostStats, NoiseVerdict, Population, enrichment_of, noise_verdict
from .seedstatus import SeedActivity, seed_status
from .stats import PairStats
from .substance import Substance, managed_like, per_record_mean, session_size, small_client, substance

__all__ = [
    "Enrichment",
    "HostStats",
    "Link",
    "NoiseVerdict",
    "PairStats",
    "Population",
    "Probe",
    "SeedActivity",
    "Series",
    "Substance",
    "classify_series",
    "cluster_confidence",
    "components",
    "enrichment_of",
    "holm",
    "hypergeom_sf",
    "managed_like",
    "noise_verdict",
    "per_record_mean",
    "probe_of",
    "seed_enrichment",
    "seed_status",
    "session_size",
    "small_client",
    "substance",
]

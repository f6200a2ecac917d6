"""Every parameter of a hunt, in one dataclass: the library, the CLI and the result share it.

Each field says where its default comes from. The CLI exposes every field as ``--field-name``
(``flowpivot hunt --help``); the result records them all under ``parameters``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HuntParams", "PARAM_HELP"]


@dataclass(frozen=True)
class HuntParams:
    """The knobs of :func:`flowpivot.hunt.hunt`. Verdict thresholds are significance levels and
    protocol constants, never numbers fitted to one data set (docs/hunt.md says why each holds)."""

    #: Window length in days, ending at the newest flow in the store (or at ``until``).
    days: float = 30
    #: Window start and end (ms since epoch or ISO 8601); None: from ``days`` and the store.
    since: int | str | None = None
    until: int | str | None = None
    #: Expansion depth from cluster members.
    hops: int = 1
    #: Seeds a peer must have substantial established sessions with to be a cluster candidate.
    min_seeds: int = 2
    #: Members an expansion host must have substantial established sessions with.
    min_members: int = 2
    #: Significance level of the noise tests (seed enrichment), over all hosts tested together
    #: (Bonferroni): the chance of calling one indiscriminate host the actor's.
    alpha: float = 0.01
    #: A host that serves the seeds (they open the sessions) is a shared service when fewer than
    #: this share of its clients that are not noise are seeds or the actor's other hosts.
    min_specificity: float = 0.5
    #: Kept for callers of the pairwise-similarity clustering; clusters now come from the
    #: evidence graph (connected members within a provider) and this value is not used.
    similarity: float = 0.5
    #: IPv4 prefix length of the local (provider range) enrichment test (IPv6 ranges are not
    #: swept, so no local test is made there).
    local_prefix_v4: int = 24
    #: Packets a connection that only checks or grabs a banner carries at most: TCP handshake (3),
    #: a TLS or SSH handshake with one request and answer (about 10), teardown (4) and their ACKs.
    #: A session with the seeds larger than this (or than the sampling can resolve) is substantial.
    small_connection_packets: int = 20
    #: A peer reaching at most this many seeds may be a victim (beacon) or a client.
    victim_max_seeds: int = 2
    #: Connection starts a beacon test needs.
    min_beacon_starts: int = 6
    #: A probe: at least ``probe_min_attempts`` attempts to one seed port, most of them within
    #: ``burst_span_s`` seconds (a tool run; an implant's loop runs as long as the implant).
    probe_min_attempts: int = 10
    burst_span_s: float = 60.0
    #: Pairs kept in the result (the busiest) and near-misses listed.
    max_pairs: int = 10_000
    max_near_misses: int = 500
    #: DuckDB threads (None: all cores) and the memory it may use before spilling to disk.
    threads: int | None = None
    memory_limit: str | None = "2GB"
    #: Look flows up in the store's address index when that is cheaper (same result).
    use_index: bool = True
    #: Extra keys a caller passes through to the result's ``parameters`` (not used by the rules).
    extra: dict[str, Any] = field(default_factory=dict)

    def replace(self, **kw: Any) -> HuntParams:
        return dataclasses.replace(self, **kw)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        d.update(self.extra)
        return d

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]


#: One line of help per field, for the CLI.
PARAM_HELP: dict[str, str] = {
    "days": "Window length in days, ending at the newest flow (or at --until).",
    "since": "Window start (ISO 8601 or epoch seconds).",
    "until": "Window end (ISO 8601 or epoch seconds).",
    "hops": "Expansion depth from cluster members.",
    "min_seeds": "Seeds a peer must have substantial established sessions with to be clustered.",
    "min_members": "Cluster members a new host must have substantial established sessions with.",
    "alpha": "Significance level of the seed-enrichment tests, over all hosts tested (Bonferroni).",
    "min_specificity": "A service the seeds use is shared when fewer than this share of its clients are known.",
    "similarity": "Unused (clusters come from the evidence graph); kept for old scripts.",
    "local_prefix_v4": "IPv4 prefix length of the local (provider range) enrichment test.",
    "small_connection_packets": "Packets of a connection that only checks or grabs a banner (protocol constant).",
    "victim_max_seeds": "A peer reaching at most this many seeds may be a victim.",
    "min_beacon_starts": "Connection starts a beacon test needs.",
    "probe_min_attempts": "Attempts to one seed port that make a burst a probe.",
    "burst_span_s": "Seconds within which a probe's attempts fall.",
    "max_pairs": "Seed-peer pairs kept in the result (the busiest).",
    "max_near_misses": "Near-misses kept in the result (the most evidence first).",
    "threads": "DuckDB threads (default: all cores).",
    "memory_limit": "Memory DuckDB may use before spilling to disk.",
    "use_index": "Use the store's address index when it is cheaper (same result).",
}

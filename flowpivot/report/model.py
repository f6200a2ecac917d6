"""The hunt result (``flowpivot-hunt/1``) as plain objects that every report format shares.

The objects are made by :mod:`.reader` (``load_result``, ``read_result``, re-exported here), which checks
every field at the boundary: each address goes through :func:`.text.canonical_ip` and outside text
through :func:`.text.clean`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import Problem

__all__ = [
    "FORMAT",
    "Allocation",
    "Cluster",
    "Expansion",
    "Excluded",
    "NearMiss",
    "Overlap",
    "Pair",
    "Probe",
    "Report",
    "Seed",
    "Victim",
    "as_display_name",
]

FORMAT = "flowpivot-hunt/1"
# uuid5 namespace for every id flowpivot derives from report content (STIX SDOs, MISP, letter refs).
NAMESPACE = uuid.UUID("6f1c3c1e-6a55-5d0e-9b8a-2f6c70697674")


_HANDLE = re.compile(r"^[A-Z0-9]+(?:-[A-Z0-9]+)+$")


def as_display_name(as_name: str | None, country: str | None) -> str | None:
    """An AS name as people say it. Registry AS names often read ``HANDLE Organisation`` (``STARK-INDUSTRIES
    Stark Industries Solutions Ltd``) or ``CC - Organisation`` (``EE - SmartApe OU``): keep the organisation.
    A name that is only a handle stays as it is."""
    if not as_name:
        return as_name
    name = as_name
    head, _, rest = name.partition(" - ")
    if rest and len(head) == 2 and head.isalpha() and head.isupper():
        name = rest
    first, _, rest = name.partition(" ")
    if rest and _HANDLE.match(first):
        name = rest
    return name.strip() or as_name


@dataclass
class Allocation:
    range: str | None
    netname: str | None
    org: str | None
    org_name: str | None
    status: str | None
    country: str | None
    abuse_mailbox: str | None  # None unless it is a plain e-mail address
    abuse_raw: str | None  # what whois said, cleaned, when it was not usable
    source: str | None


@dataclass
class Seed:
    ip: str
    asn: int | None
    as_name: str | None
    country: str | None
    first_seen: datetime | None
    last_seen: datetime | None
    status: str
    comment: str | None
    daily: list[tuple[str, float]]
    sets: list[str] = field(default_factory=list)  # the seed sets that list it
    last_answered: datetime | None = None  # last flow in which it answered (an established session)
    answered_flows: int | None = None
    unanswered_after: int | None = None  # attempts toward it after last_answered
    last_attempt: datetime | None = None
    flows: int | None = None


@dataclass
class Cluster:
    id: str
    asn: int | None
    as_name: str | None
    country: str | None
    allocation: list[Allocation]
    members: list[str]
    seeds: list[str]
    established: bool
    initiator: str | None
    services: list[dict[str, Any]]
    flows: int | None
    packets_est: int | None
    bytes_est: int | None
    first_seen: datetime | None
    last_seen: datetime | None
    score: float | None
    evidence: Any
    daily: list[tuple[str, float]]
    confidence: float | None = None
    # evidence.members: per member, what its membership rests on (confidence, p_value, substantial_seeds)
    member_evidence: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        """The name people know the provider by: the whois organisation, else the AS name."""
        for a in self.allocation:
            if a.org_name:
                return a.org_name
        return as_display_name(self.as_name, self.country) or "unknown provider"

    @property
    def label(self) -> str:
        inner = ", ".join(x for x in (f"AS{self.asn}" if self.asn is not None else None, self.country) if x)
        return f"{self.provider} ({inner})" if inner else self.provider

    @property
    def abuse_mailbox(self) -> str | None:
        return next((a.abuse_mailbox for a in self.allocation if a.abuse_mailbox), None)


@dataclass
class Overlap:
    clusters: list[str]
    shared_seeds: list[str]
    count: int
    jaccard: float | None


@dataclass
class Expansion:
    ip: str
    asn: int | None
    as_name: str | None
    country: str | None
    contacted_by: list[str]
    clusters: list[str]
    score: float | None
    first_seen: datetime | None
    last_seen: datetime | None
    allocation: list[Allocation] = field(default_factory=list)
    confidence: float | None = None
    established_with: int | None = None  # evidence.established_with: members it had sessions with
    services: list[dict[str, Any]] = field(default_factory=list)  # as Cluster.services, when the hunt gives them


@dataclass
class Victim:
    ip: str
    seeds: list[str]
    port: int | None
    interval_s: float | None
    asn: int | None
    as_name: str | None
    state: str | None = None  # "established", "rejected" or "unanswered": how the seeds answered it
    connections: int | None = None
    established_flows: int | None = None
    rejected_flows: int | None = None
    unanswered_flows: int | None = None
    proto: str | None = None
    method: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None


@dataclass
class Probe:
    """A burst of attempts from one host to one seed port (a tool run, not an implant's loop)."""

    ip: str
    seed: str | None
    port: int | None
    proto: str | None
    kind: str  # "burst", "syn-flood", "retry-storm"
    state: str | None  # how the seed answered: "established", "rejected", "unanswered"
    attempts: int | None
    flows: int | None
    rejected_flows: int | None
    first_seen: datetime | None
    last_seen: datetime | None
    span_s: float | None
    rate_per_s: float | None
    asn: int | None
    as_name: str | None


@dataclass
class NearMiss:
    """A peer that came close to a cluster and why it was not taken."""

    ip: str
    reason: str  # "below-min-seeds", "little-evidence", "noise"
    detail: str | None
    seeds: list[str]
    established_seeds: int | None
    substantial_seeds: int | None
    asn: int | None
    as_name: str | None
    country: str | None


@dataclass
class Excluded:
    ip: str
    reason: str
    detail: str | None
    asn: int | None = None
    as_name: str | None = None
    country: str | None = None


@dataclass
class Pair:
    """One (seed, peer) pair as the hunt lists it: who opened, the main service, flags each way."""

    seed: str
    peer: str
    established: bool
    initiator: str | None  # "seed", "peer", "mixed", ...
    proto: str | None
    port: int | None
    flows: int | None
    flags_seed: int | None  # flags seen from seed to peer
    flags_peer: int | None  # flags seen from peer to seed
    first_seen: datetime | None
    last_seen: datetime | None


@dataclass
class Report:
    """A hunt result ready to render. ``raw`` is the document as read; ``problems`` what was skipped."""

    window_start: datetime | None
    window_end: datetime | None
    parameters: dict[str, Any]
    provenance: dict[str, Any]
    seeds: list[Seed]
    clusters: list[Cluster]
    overlaps: list[Overlap]
    expansion: list[Expansion]
    victims: list[Victim]
    excluded: list[Excluded]
    raw: dict[str, Any]
    pairs: list[Pair] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    near_misses: list[NearMiss] = field(default_factory=list)
    near_misses_total: int = 0
    # seed set name -> {"files": [...], "count": distinct addresses} (seed_input.sets, else from the seeds)
    seed_sets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def min_members(self) -> int:
        v = self.parameters.get("min_members") if isinstance(self.parameters, dict) else None
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 2

    def lead_clusters(self) -> list[Cluster]:
        """Clusters big enough to report (at least ``min_members`` hosts); the best one when none is."""
        lead = [c for c in self.clusters if len(c.members) >= self.min_members]
        return lead or self.clusters[:1]

    def seed_clusters(self) -> dict[str, list[str]]:
        """Seed address -> ids of the clusters that contacted it, in cluster order."""
        out: dict[str, list[str]] = {}
        for c in self.clusters:
            for s in c.seeds:
                out.setdefault(s, []).append(c.id)
        return out

    def cluster_pairs(self, c: Cluster) -> list[Pair]:
        members, seeds = set(c.members), set(c.seeds)
        return [p for p in self.pairs if p.peer in members and p.seed in seeds]

    @property
    def days(self) -> float | None:
        if self.window_start and self.window_end:
            return (self.window_end - self.window_start).total_seconds() / 86400
        return None

    def seed(self, ip: str) -> Seed | None:
        return self._seed_index().get(ip)

    def pairs_of(self, peer: str) -> list[Pair]:
        """The listed pairs of one peer (a cluster member), busiest first as the hunt lists them."""
        idx = getattr(self, "_pairs_by_peer", None)
        if idx is None:
            idx = {}
            for p in self.pairs:
                idx.setdefault(p.peer, []).append(p)
            object.__setattr__(self, "_pairs_by_peer", idx)
        return idx.get(peer, [])

    def _seed_index(self) -> dict[str, Seed]:
        idx = getattr(self, "_seeds_by_ip", None)
        if idx is None:
            idx = {s.ip: s for s in self.seeds}
            object.__setattr__(self, "_seeds_by_ip", idx)
        return idx

    def provider_name(self, asn: int | None, as_name: str | None) -> str | None:
        """The name a cluster in the same AS goes by (whois organisation), else the AS name given."""
        if asn is not None:
            for c in self.clusters:
                if c.asn == asn:
                    return c.provider
        return as_display_name(as_name, None)


def __getattr__(name: str) -> Any:
    """``load_result``, ``read_result`` and ``report_id`` moved to :mod:`.reader`; still importable from here."""
    if name in ("load_result", "read_result", "report_id"):
        from . import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

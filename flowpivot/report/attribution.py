"""Which parts of a hunt each named actor is attributed: the seeds of its sets and what rests on them.

``--actor FIN7`` attributes everything; ``--actor FIN7=fin7,stark`` only the seeds of those seed sets,
the clusters with at least one of those seeds, the new hosts those clusters' members (or hosts already
attributed) contacted, and the member-seed pairs whose seed is one of them. A public report names an
actor only for what its own indicators led to; a host found from another team's seeds is not the
actor's because it sits in the same result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .model import Cluster, Expansion, Pair, Report
from .text import clean

__all__ = ["Actor", "Attribution", "parse_actors", "attribute"]

_SETS = re.compile(r"[A-Za-z0-9_.-]+(?:\s*,\s*[A-Za-z0-9_.-]+)*")


@dataclass(frozen=True)
class Actor:
    name: str
    sets: tuple[str, ...] | None = None  # None: every set

    @property
    def spec(self) -> str:
        return self.name if self.sets is None else f"{self.name}={','.join(self.sets)}"


def parse_actors(spec: str | Actor | Sequence[str | Actor] | None) -> list[Actor]:
    """``"FIN7"``, ``"FIN7=fin7,stark"`` or a list of them -> actors, one per name (sets merged).

    The name is the text before the last ``=`` when what follows is a list of set names (letters,
    digits, ``_ . -``, comma-separated); otherwise the whole text is the name. A name given once
    without sets covers every set.
    """
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str | Actor) else list(spec)
    merged: dict[str, tuple[str, ...] | None] = {}
    for item in items:
        if isinstance(item, Actor):
            name, sets = clean(item.name, 200) or "", item.sets
        else:
            name, sets = _split(item)
        if not name:
            continue
        if sets is None or (name in merged and merged[name] is None):
            merged[name] = None  # every set
        else:
            merged[name] = tuple(dict.fromkeys((merged.get(name) or ()) + sets))
    return [Actor(n, s) for n, s in merged.items()]


def _split(text: str) -> tuple[str, tuple[str, ...] | None]:
    head, eq, tail = text.rpartition("=")
    if eq and head.strip() and _SETS.fullmatch(tail.strip()):
        sets = tuple(dict.fromkeys(s.strip() for s in tail.split(",")))
        return clean(head, 200) or "", sets
    return clean(text, 200) or "", None


@dataclass(frozen=True)
class Attribution:
    """What one actor is attributed in one report."""

    actor: Actor
    seeds: frozenset[str]
    clusters: frozenset[str]  # cluster ids
    members: frozenset[str]
    expansion: frozenset[str]
    complete: bool  # every seed, cluster and new host of the report

    @property
    def name(self) -> str:
        return self.actor.name

    def covers_cluster(self, c: Cluster) -> bool:
        return c.id in self.clusters

    def covers_host(self, ip: str) -> bool:
        return ip in self.members or ip in self.expansion or ip in self.seeds

    def covers_expansion(self, e: Expansion) -> bool:
        return e.ip in self.expansion

    def covers_pair(self, p: Pair) -> bool:
        return p.seed in self.seeds and p.peer in self.members

    def sets_text(self) -> str:
        return "every seed set" if self.actor.sets is None else "seed sets " + ", ".join(self.actor.sets)


def attribute(report: Report, actors: Sequence[Actor]) -> list[Attribution]:
    """Each actor's share of the report. ValueError when an actor names a set the result does not have."""
    known = set(report.seed_sets) | {n for s in report.seeds for n in s.sets}
    out = []
    for a in actors:
        if a.sets is not None:
            missing = [s for s in a.sets if s not in known]
            if missing:
                have = ", ".join(sorted(known)) or "none (the result names no seed sets)"
                raise ValueError(
                    f"--actor {a.spec}: no seed set {', '.join(repr(m) for m in missing)} in the result; its sets: {have}"
                )
        out.append(_attribution(report, a))
    return out


def _attribution(report: Report, a: Actor) -> Attribution:
    if a.sets is None:
        seeds = {s.ip for s in report.seeds} | {ip for c in report.clusters for ip in c.seeds}
    else:
        wanted = set(a.sets)
        seeds = {s.ip for s in report.seeds if wanted & set(s.sets)}
    clusters = [c for c in report.clusters if a.sets is None or seeds & set(c.seeds)]
    ids = {c.id for c in clusters}
    members = {m for c in clusters for m in c.members}
    # new hosts: found from an attributed cluster, or (further hops) contacted by an attributed host
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for e in report.expansion:
            if e.ip not in found and (
                a.sets is None or ids & set(e.clusters) or (members | found) & set(e.contacted_by)
            ):
                found.add(e.ip)
                changed = True
    complete = (
        len(ids) == len(report.clusters)
        and len(found) == len(report.expansion)
        and all(s.ip in seeds for s in report.seeds)
    )
    return Attribution(a, frozenset(seeds), frozenset(ids), frozenset(members), frozenset(found), complete)

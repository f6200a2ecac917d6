"""Clusters from the evidence graph: members of one provider joined by what they manage together.

Within a provider (the ASN, or the allocation when whois data is given) two members are linked
when both hold substantial sessions with the same seed, or both manage the same new host. The
clusters are the connected components of those links. A rotation in which member 1 manages
seeds a-f, member 2 d-i and member 3 g-l is one operation (1-2 share d-f, 2-3 share g-i), which a
pairwise similarity threshold splits into three; two groups that share nothing stay apart, even in
one ASN. Members of different providers are never joined: the overlaps between clusters are what
relate them.

Confidence: each member's enrichment test (:mod:`.enrichment`) gives the chance that its contact
with the seeds is coincidence, adjusted for the hosts tested with it (Holm). A member's
confidence is 1 - that; a cluster is coincidence only if every member is, so its confidence is
1 - the product of its members' adjusted p.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

__all__ = ["Link", "components", "cluster_confidence"]


@dataclass(frozen=True)
class Link:
    members: tuple[str, str]
    seeds: tuple[str, ...]
    hosts: tuple[str, ...]


def components(
    managed: Mapping[str, set[str]],
    provider: Mapping[str, Hashable],
    hosts: Mapping[str, set[str]] | None = None,
) -> list[tuple[list[str], list[Link]]]:
    """Clusters as (members, links): ``managed`` maps a member to the seeds it holds substantial
    sessions with, ``hosts`` to the new hosts it manages, ``provider`` to its provider key."""
    hosts = hosts or {}
    parent = {m: m for m in managed}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    links: list[Link] = []
    by_prov: dict[Hashable, list[str]] = defaultdict(list)
    for m in managed:
        by_prov[provider.get(m)].append(m)
    for members in by_prov.values():
        # members holding one seed (or host) are linked through it: an inverted index keeps this
        # linear in the evidence rather than quadratic in the members
        holders: dict[tuple[str, str], list[str]] = defaultdict(list)
        for m in sorted(members):
            for s in managed[m]:
                holders[("s", s)].append(m)
            for h in hosts.get(m, ()):
                holders[("h", h)].append(m)
        shared: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
        for (kind, x), ms in holders.items():
            for a, b in zip(ms, ms[1:], strict=False):
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[rb] = ra
            for i, a in enumerate(ms):
                for b in ms[i + 1 :]:
                    ss, hs = shared.setdefault((a, b), (set(), set()))
                    (ss if kind == "s" else hs).add(x)
        links.extend(Link((a, b), tuple(sorted(ss)), tuple(sorted(hs))) for (a, b), (ss, hs) in sorted(shared.items()))
    groups: dict[str, list[str]] = defaultdict(list)
    for m in managed:
        groups[find(m)].append(m)
    out = []
    for ms in groups.values():
        mset = set(ms)
        out.append((sorted(ms), [ln for ln in links if ln.members[0] in mset]))
    return out


def cluster_confidence(member_p: list[float]) -> float:
    """1 - the chance that every member is coincidence: the product of their adjusted p-values."""
    if not member_p:
        return 0.0
    log_all = sum(math.log(max(min(1.0, p), 1e-300)) for p in member_p)
    return max(0.0, 1.0 - math.exp(log_all))

"""Seed enrichment: is a host's contact with the seeds more than the rest of its reach explains?

A host that reaches D distinct hosts, picked with no regard to which are seeds, reaches
X ~ Hypergeometric(N, K, D) of the K seeds among the N hosts it could pick from. The chance of
reaching at least the S seeds it did is the upper tail P(X >= S). Two populations are tested:

* **global**: the N hosts active in the window, the K seeds active in it. A research scanner, a
  resolver or a crawler reaches seeds at about their share of everyone it reaches; an operator
  reaches seeds far above it, whatever else it does (browsing, updates, other users behind NAT).
* **local**: the address space of the seeds' own prefixes (a /24 for IPv4) that the host touched,
  and the seeds in them. A scanner that sweeps only the seeds' provider ranges reaches seeds in
  proportion to their share of those ranges, which the global test would miss. IPv6 ranges are
  not swept (a /48 has 2^80 addresses), so no local test is made there.

A host is enriched when both tails are below the significance level, adjusted for the hosts
tested together (Holm's step-down, :func:`holm`: the chance of calling any indiscriminate host
enriched stays below it). The engine draws from the hosts a candidate manages, not from every
host it touches (docs/hunt.md, section 6): browsing is no draw. The rule fails for a scanner seen
only against the seeds (nothing else of it in the store): its reach then looks like an
operator's. That is a limit of the store, not of the test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Enrichment", "holm", "hypergeom_sf", "seed_enrichment"]


def _lcomb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def hypergeom_sf(k: int, population: int, targets: int, draws: int) -> float:
    """P(X >= k) for X ~ Hypergeometric(population, targets, draws): at least ``k`` targets among
    ``draws`` distinct picks from ``population`` items of which ``targets`` are targets."""
    population = max(int(population), 0)
    targets = min(max(int(targets), 0), population)
    draws = min(max(int(draws), 0), population)
    lo = max(int(k), 0, draws - (population - targets))
    hi = min(targets, draws)
    if lo > hi:
        return 0.0
    if int(k) <= max(0, draws - (population - targets)):
        return 1.0
    denom = _lcomb(population, draws)
    terms = [_lcomb(targets, i) + _lcomb(population - targets, draws - i) - denom for i in range(lo, hi + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


@dataclass(frozen=True)
class Enrichment:
    """The two tails and what they were computed from (None: no local test)."""

    hits: int  # seeds (or known hosts) the host reached
    draws: int  # distinct hosts it reached
    population: int
    targets: int
    p_global: float
    expected: float  # seeds it would reach by chance, globally
    p_local: float | None = None
    local_space: int | None = None
    local_targets: int | None = None
    local_draws: int | None = None

    @property
    def p(self) -> float:
        """The weaker of the two tests: the host must beat both."""
        return max(self.p_global, self.p_local if self.p_local is not None else 0.0)

    def enriched(self, level: float) -> bool:
        return self.p <= level

    def describe(self) -> str:
        s = (
            f"reached {self.hits} of {self.targets} seeds among {self.draws:,} distinct hosts "
            f"(chance alone: {self.expected:.3g} of {self.population:,} active hosts, P = {self.p_global:.2g})"
        )
        if self.p_local is not None:
            s += (
                f"; in the seeds' own ranges {self.local_draws:,} of {self.local_space:,} addresses, "
                f"{self.local_targets} of them seeds (P = {self.p_local:.2g})"
            )
        return s


def seed_enrichment(
    hits: int,
    draws: int,
    population: int,
    targets: int,
    local: tuple[int, int, int] | None = None,
) -> Enrichment:
    """Enrichment of ``hits`` seeds among ``draws`` distinct peers, against ``targets`` seeds among
    ``population`` active hosts; ``local`` is (address space, seeds, peers) of the seeds' prefixes
    the host touched, or None. ``draws`` may be a lower bound of the reach: the tails only grow
    with it, so a host not enriched on a lower bound is not enriched on the full count either.
    """
    draws = max(int(draws), int(hits))
    population = max(int(population), draws, int(targets))
    targets = max(int(targets), int(hits))
    p_g = hypergeom_sf(hits, population, targets, draws)
    expected = draws * targets / population if population else 0.0
    if local is None:
        return Enrichment(hits, draws, population, targets, p_g, expected)
    space, lseeds, lpeers = local
    lseeds = max(int(lseeds), int(hits))
    lpeers = max(int(lpeers), int(hits))
    space = max(int(space), lseeds, lpeers)
    p_l = hypergeom_sf(hits, space, lseeds, lpeers)
    return Enrichment(hits, draws, population, targets, p_g, expected, p_l, space, lseeds, lpeers)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment: each host's p-value adjusted for every host tested with it.

    A host is enriched when its adjusted p is at most the significance level; the chance of
    calling any indiscriminate host enriched then stays below that level (as with Bonferroni),
    while hosts tested beside many clear operators are not held to the strictest bar.
    """
    m = len(pvalues)
    out: dict[str, float] = {}
    top = 0.0
    for i, (k, p) in enumerate(sorted(pvalues.items(), key=lambda kv: (kv[1], kv[0]))):
        top = max(top, min(1.0, (m - i) * p))
        out[k] = top
    return out

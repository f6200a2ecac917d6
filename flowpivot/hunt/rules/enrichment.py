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

import functools
import math
from dataclasses import dataclass

__all__ = ["Enrichment", "holm", "holm_bounded", "hypergeom_sf", "managed_lower_bound", "seed_enrichment"]


def _lcomb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@functools.lru_cache(maxsize=65536)
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
    # The log-terms rise to the mode and then fall ever faster (the pmf is log-concave). Once
    # falling and 800 below the largest, every later term's exp(t - top) underflows to exactly
    # 0.0: stopping there gives the same sum, bit for bit, without thousands of lgamma calls.
    terms: list[float] = []
    top = prev = -math.inf
    for i in range(lo, hi + 1):
        t = _lcomb(targets, i) + _lcomb(population - targets, draws - i) - denom
        if t < prev and t < top - 800.0:
            break
        terms.append(t)
        top, prev = max(top, t), t
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


def holm_bounded(
    exact: dict[str, float], lower: dict[str, float], level: float
) -> tuple[set[str], dict[str, float] | None, set[str]]:
    """Holm's adjustment when some p-values are known only from below.

    ``exact``: hosts whose p-value is known; ``lower``: hosts with only a lower bound of theirs
    (the true p lies between it and 1). Each adjusted p-value only grows with each raw one, so
    the adjustment of the bounds bounds every adjusted p from below, and the adjustment with the
    bounded p-values at 1 bounds it from above. A host of ``lower`` whose adjusted bound exceeds
    ``level`` is not enriched whatever its true p-value: it is ``decided``.

    Returns ``(decided, adjusted, loose)``. ``adjusted`` is None while a host of ``lower`` is not
    decided (it must be counted exactly), or when an exact host's verdict, or a member's adjusted
    p-value, depends on where in [bound, 1] the decided hosts' p-values lie (they must be counted
    too). Otherwise it holds the adjusted p-values: exact for the exact hosts but those in
    ``loose`` (not enriched either way, their adjusted p known only from below), lower bounds for
    the decided.
    """
    low = holm({**exact, **lower})
    decided = {k for k in lower if low[k] > level}
    if decided != set(lower):
        return decided, None, set()
    high = holm({**exact, **{k: 1.0 for k in decided}})
    loose = {k for k in exact if high[k] != low[k]}
    if any(low[k] <= level for k in loose):
        return decided, None, set()
    return decided, low, loose


def managed_lower_bound(counted: int, missing_flows: int) -> int:
    """A lower bound of a host's managed draws from its host-peer rows (docs/hunt.md, "Managed
    draws from a bound"): ``counted`` peers that pass the management-size test with the
    connections of both sides added (at least the distinct connections, so a peer that passes
    with them passes with the true count), less one per flow of a side the rows do not hold
    (each such flow can add a connection to at most one counted peer)."""
    return max(int(counted) - int(missing_flows), 0)

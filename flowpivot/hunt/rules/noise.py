"""Noise verdicts: scanner, shared service, or a host specific to the seeds.

Two questions, each answered from the host's own statistics (:class:`HostStats`) and the
window's population (:class:`Population`):

1. **Enrichment** (:mod:`.enrichment`): does it reach more seeds than its reach explains, in the
   window's population and in the seeds' own ranges? Not enriched means its contact with the
   seeds is what any host reaching that many others would have: ``scanner`` when it opened more
   of its connections than it answered, else ``shared-service``. This holds however large the
   host's ordinary traffic is: an operator browsing from its VPS or a subscriber address with many
   users behind NAT still reaches seeds far above their base rate.
2. **Clients of a service** (``shared-service``): a host the seeds connect to (every established
   session with them was opened by the seed) is a service they use. The seeds are alike (servers of
   one provider, often one operating system), so they use the same update servers and CDNs far
   more than hosts at large do: enrichment cannot tell that from the actor's panel. The service's
   other clients can: the actor's panel serves the actor, a shared service serves everyone. When
   fewer than ``min_specificity`` of the hosts that connected to it (its clients, not counting
   scanners and other hosts already found to be noise) are seeds or the actor's other hosts, it
   is a shared service. Only its clients are counted: an operator's host that the seeds call
   back to may browse the web as much as it likes.

3. **Weak evidence, broad reach** (``scanner``): a host none of whose sessions with the seeds is
   substantial (:mod:`.substance`: at 1:100 and coarser, sessions under N packets cannot be
   sized) and that reaches more hosts than a seed does, fewer than ``min_specificity`` of them
   seeds or the actor's other hosts, is judged by that reach: a research scanner completing a
   handshake and grabbing a banner, or a crawler. An operator's management sessions are
   substantial at any sampling a store is kept at, and then its reach is no evidence against it.

Peers that are themselves noise (scanners, shared services, hosts other known hosts also talk to)
are left out of both counts in the second round (``noise``): talking to resolvers and being
scanned makes no host a scanner.
"""

from __future__ import annotations

from dataclasses import dataclass

from .enrichment import Enrichment, seed_enrichment

__all__ = ["HostStats", "NoiseVerdict", "Population", "enrichment_of", "noise_verdict"]


@dataclass(frozen=True)
class HostStats:
    """A host's reach over the window (or a lower bound of it, ``bound`` says how it was counted)."""

    degree: int  # distinct peers
    known: int  # of them seeds or the actor's other (candidate) hosts
    fan_out: int  # peers it connected to (from the higher, client port)
    fan_in: int  # peers that connected to it: its clients
    seeds: int  # seeds it exchanged flows with (exact, from the seed pass)
    seed_clients: bool = False  # every established session with a seed was opened by the seed
    substantial: int = 1  # seeds it holds substantial sessions with (0: only unresolved ones)
    known_in: int | None = None  # of its clients, seeds or the actor's other hosts (None: use ``known``)
    noise: int | None = None  # peers that are themselves noise (None: round 1, not yet known)
    noise_in: int = 0  # of its clients, those that are noise
    local: tuple[int, int, int] | None = None  # (address space, seeds, its peers) of the seeds' ranges it touched
    bound: str | None = None  # how a lower-bound degree was counted ("in its last 3.75 days", ...)
    #: The enrichment test's draws and hits: the peers it holds sessions with of the kind it
    #: holds with the seeds (``managed_counts``), and the seeds among them (None: reach, seeds)
    draws: int | None = None
    draw_hits: int | None = None

    @property
    def reach(self) -> int:
        return self.degree - (self.noise or 0)


@dataclass(frozen=True)
class Population:
    """What the window holds: active hosts and seeds, the yardstick and the test level."""

    hosts: int
    seeds: int
    yardstick: float  # the median seed's reach (distinct peers that are not noise)
    level: float  # alpha / hosts tested
    min_specificity: float = 0.5
    min_seeds: int = 2  # seeds a candidate holds sessions with (kept for the verdicts' details)


@dataclass(frozen=True)
class NoiseVerdict:
    reason: str  # "scanner", "shared-service"
    detail: str
    enrichment: Enrichment
    specificity: float | None


def enrichment_of(h: HostStats, pop: Population) -> Enrichment:
    """The host's enrichment test (the local one only on an exact count)."""
    draws = h.reach if h.draws is None else h.draws
    hits = h.seeds if h.draw_hits is None else h.draw_hits
    return seed_enrichment(hits, draws, pop.hosts, pop.seeds, h.local if h.bound is None else None)


def service_verdict(h: HostStats, pop: Population) -> str | None:
    """The detail when the host is a service the seeds use along with others, else None."""
    clients = h.fan_in - h.noise_in
    if not h.seed_clients or clients <= 0:
        return None
    known = h.known if h.known_in is None else h.known_in
    spec = known / clients
    if spec >= pop.min_specificity:
        return None
    where = f" ({h.bound}: at least that many)" if h.bound else ""
    noise = f", {h.noise_in:,} more that are scanners or other noise not counted" if h.noise_in else ""
    upper = "at most " if h.known_in is None else ""
    return (
        f"the seeds opened every session with it, and it serves {clients:,} distinct clients{where}{noise}, of which "
        f"{upper}{known:,} ({spec:.1%}) are seeds or the actor's other hosts: a service others use too"
    )


def noise_verdict(
    h: HostStats, pop: Population, enrichment: bool = True, p_adjusted: float | None = None, adjusted_low: bool = False
) -> NoiseVerdict | None:
    """The noise reason for a host, or None when its contact with the seeds is specific to them.

    ``enrichment=False`` leaves the test out: the first round applies only the service and
    weak-evidence rules; the enrichment test waits for the second, where every candidate is tested
    over the hosts it manages, all adjusted together.

    With ``bound`` set, ``degree`` and ``fan_in`` are lower bounds: both tests only grow more
    certain with the full count, so a verdict of noise holds for it too (a verdict of not-noise
    on a bound is not final: such a host gets the full count). ``adjusted_low``: ``p_adjusted``
    is a lower bound of the adjusted p-value (``enrichment.holm_bounded``).
    """
    reach = h.reach
    if reach <= 0:
        return None
    spec = h.known / reach if not h.bound else None
    # the test's tails only when a verdict is given or the test is made (round 1 judges most
    # hosts, and the busiest many times, without it)
    e = enrichment_of(h, pop) if enrichment else None
    enriched = True if e is None else e.enriched(pop.level) if p_adjusted is None else p_adjusted <= pop.level
    if e is not None and not enriched:
        where = f" ({h.bound}: at least that many)" if h.bound else ""
        noise = f", {h.noise:,} more that are themselves noise not counted" if h.noise else ""
        kind = "scanner" if h.fan_out >= h.fan_in else "shared-service"
        low = "at least " if adjusted_low else ""
        adj = f" (adjusted for the hosts tested with it: {low}{p_adjusted:.2g})" if p_adjusted is not None else ""
        detail = (
            f"{reach:,} distinct peers{where}{noise} (fan-out {h.fan_out:,}, fan-in {h.fan_in:,}); {e.describe()}{adj}: "
            f"not above chance at {pop.level:.2g}"
        )
        return NoiseVerdict(kind, detail, e, spec)
    svc = service_verdict(h, pop)
    if svc:
        return NoiseVerdict("shared-service", svc, e or enrichment_of(h, pop), spec)
    weak = weak_verdict(h, pop)
    if weak:
        kind = "scanner" if h.fan_out >= h.fan_in else "shared-service"
        return NoiseVerdict(kind, weak, e or enrichment_of(h, pop), spec)
    return None


def weak_verdict(h: HostStats, pop: Population) -> str | None:
    """The detail when the host's sessions with the seeds are unresolved and its reach is broad."""
    reach = h.reach
    if h.substantial > 0 or reach <= pop.yardstick or h.known >= pop.min_specificity * reach:
        return None
    where = f" ({h.bound}: at least that many)" if h.bound else ""
    known = f"at most {h.known:,}" if h.bound and h.known_in is None else f"{h.known:,}"
    return (
        f"no session with a seed larger than the sampling can size, and {reach:,} distinct peers{where} "
        f"(fan-out {h.fan_out:,}, fan-in {h.fan_in:,}), of which {known} ({h.known / reach:.1%}) are seeds or the "
        f"actor's other hosts; a seed has {pop.yardstick:g} peers (median)"
    )

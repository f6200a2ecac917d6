"""Session substance: does a seed-peer pair show an operator's sessions, or only checks and probes?

A host that manages a server holds sessions with it: interactive shells, transfers, a panel kept
open. A research scanner, an uptime monitor, a banner grabber or a beaconing implant holds
connections of a handful of packets each (a TCP handshake, one TLS or SSH exchange, a teardown:
``small`` packets, about 20). The flow records show which, within what sampling lets us see:

* **Unsampled** (1:1 NetFlow/IPFIX, Zeek): the packets of each connection are counted. More than
  ``small`` packets per connection on average is more than a check.
* **Sampled 1:N**: a record of n packets is exported with chance 1 - (1 - 1/N)^n and then holds
  (n/N) / (1 - (1 - 1/N)^n) sampled packets on average (:func:`per_record_mean`): about 1 for
  n << N, 1.58 at n = N, n/N beyond. Sizes below max(N, small) cannot be resolved, so a pair is
  substantial when its records hold at least what a connection of max(N, small) packets leaves,
  and more than connections of that size would leave by chance (Poisson tail of the packets
  beyond one per record, below 1 %): one record with two sampled packets proves nothing.
* **Any sampling**: a connection seen in two or more records in one direction outlasted the
  exporter's active timeout or went idle and came back: a check, a scan or a probe lasts seconds.
  (Biflow records, one per connection, never show this; their packet count does.)

A pair that is not established is never substantial. Below the resolution a pair is only
``unresolved``, not small: at 1:100 a 60-packet shell session and a 15-packet banner grab leave the
same single-packet records, so such a pair still counts as a session (the enrichment test and the
``client`` rule judge its host). It is ``small`` - a check, not management - only where the
sampling resolves connections of ``small`` packets (N <= ``small``) and its records show none
larger. Research scanners and monitors seen unsampled, or at 1:10, are told apart so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .stats import PairStats

__all__ = ["Substance", "managed_like", "per_record_mean", "session_size", "small_client", "substance"]


def per_record_mean(n: float, rate: float) -> float:
    """Sampled packets a record of ``n`` packets holds on average, given that it was exported at 1:``rate``."""
    if rate <= 1:
        return float(n)
    kept = 1.0 - (1.0 - 1.0 / rate) ** n
    return (n / rate) / kept if kept > 0 else 1.0


@dataclass(frozen=True)
class Substance:
    substantial: bool
    why: str
    kind: str  # "substantial", "unresolved", "small" or "none" (not established)
    packets_per_record: float
    records_per_connection: float
    needed: float  # packets per record (sampled) or per connection (unsampled) that would do

    @property
    def counts(self) -> bool:
        """Whether the pair counts as a session with the seed (substantial, or unresolved by the sampling)."""
        return self.kind in ("substantial", "unresolved")


def substance(p: PairStats, small: int) -> Substance:
    """Whether the pair's sessions are more than checks of at most ``small`` packets (see above).

    A pair seen by exporters of different sampling (an unsampled one and a 1:N one) is judged on
    each part: counting an unsampled record's packets as sampled ones would size it N times.
    """
    if p.u_flows and p.u_flows < p.a_flows + p.p_flows and p.max_sampling_rate > 1:
        sampled = replace(
            p,
            a_flows=p.a_flows + p.p_flows - p.u_flows,
            p_flows=0,
            a_packets=p.a_packets + p.p_packets - p.u_packets,
            p_packets=0,
            conns=max(p.conns - p.u_conns, 1),
            u_flows=0,
            biflow=True,  # the directions of the sampled records are not kept apart here
        )
        unsampled = replace(
            p, a_flows=p.u_flows, p_flows=0, a_packets=p.u_packets, p_packets=0, conns=max(p.u_conns, 1),
            max_sampling_rate=1, u_flows=0,
        )  # fmt: skip
        parts = [substance(sampled, small), substance(unsampled, small)]
        for kind in ("substantial", "unresolved", "small"):
            for x in parts:
                if x.kind == kind:
                    return x
    return _substance(p, small)


def _substance(p: PairStats, small: int) -> Substance:
    recs = p.a_flows + p.p_flows
    pkts = p.a_packets + p.p_packets
    conns = max(p.conns, 1)
    per_rec = pkts / recs if recs else 0.0
    per_conn = max(p.a_flows, p.p_flows) / conns
    rate = max(int(p.max_sampling_rate or 1), 1)
    if not p.established or recs == 0:
        return Substance(False, "no established session", "none", per_rec, per_conn, 0.0)
    if rate == 1:
        per_connection = pkts / conns
        need = float(small)
        if per_connection > need:
            return Substance(
                True, f"{per_connection:.1f} packets per connection (> {small})", "substantial", per_rec, per_conn, need
            )
        why = f"{per_connection:.1f} packets per connection, no more than a check ({small})"
        return Substance(False, why, "small", per_rec, per_conn, need)
    need = per_record_mean(max(rate, small), rate)
    if per_rec >= need and _above_chance(pkts - recs, recs * (need - 1.0)):
        return Substance(
            True,
            f"{per_rec:.2f} sampled packets per record at 1:{rate} (a connection of {max(rate, small)} packets leaves {need:.2f})",
            "substantial",
            per_rec,
            per_conn,
            need,
        )
    if not p.biflow and per_conn >= 2:
        why = f"{per_conn:.1f} records per connection: sessions outlasting a record"
        return Substance(True, why, "substantial", per_rec, per_conn, need)
    resolved = rate <= small
    return Substance(
        False,
        f"{per_rec:.2f} sampled packets per record at 1:{rate} (a connection of {max(rate, small)} packets leaves {need:.2f}) "
        f"and {per_conn:.1f} records per connection: "
        + ("no more than checks" if resolved else f"sessions under {rate} packets, which 1:{rate} cannot size"),
        "small" if resolved else "unresolved",
        per_rec,
        per_conn,
        need,
    )


def small_client(pairs: list[PairStats], max_seeds: int) -> str | None:
    """Why a host is a client of the seeds (a victim whose beacons are too few to test, or a
    prober), not an operator: it reaches at most ``max_seeds`` seeds, opened every session
    itself, and its records with them hold fewer sampled packets than a record of N packets
    leaves at 1:N, so its sessions were smaller than N packets. Unsampled, the beacon tests
    see every start and this rule never applies. Returns the detail, or None."""
    est = [p for p in pairs if p.established]
    if not est or len(est) > max_seeds or any(p.initiator != "peer" for p in est):
        return None
    rate = max((p.max_sampling_rate or 1 for p in est), default=1)
    recs = sum(p.a_flows + p.p_flows for p in est)
    pkts = sum(p.a_packets + p.p_packets for p in est)
    if rate <= 1 or recs == 0 or pkts / recs >= per_record_mean(rate, rate):
        return None
    return (
        f"opened every session with its {len(est)} seed(s) itself, with {pkts / recs:.2f} sampled packets per "
        f"record at 1:{rate:g} where a record of {rate:g} packets would leave {per_record_mean(rate, rate):.2f}: "
        f"sessions smaller than {rate:g} packets, a client's (a victim whose beacons are too few to test, or "
        "probes), not an operator's"
    )


#: The chance we accept of calling a pair of checks substantial from its sampled packets: the
#: hunt's default significance level.
SUBSTANCE_LEVEL = 0.01


def _above_chance(extra: int, expected: float) -> bool:
    """Whether ``extra`` sampled packets beyond one per record are unlikely (below
    SUBSTANCE_LEVEL, Poisson) when each record adds ``expected / records`` on average: at 1:100,
    4.4 % of the records a 10-packet check leaves hold two sampled packets or more, and a scanner
    that checks thousands of hosts leaves many such records."""
    if extra <= 0:
        return False
    lam = max(expected, 1e-12)
    # P(X >= extra) for X ~ Poisson(lam), summed in log space
    term = math.exp(-lam)
    cdf = term
    for i in range(1, int(extra)):
        term *= lam / i
        cdf += term
    return (1.0 - cdf) < SUBSTANCE_LEVEL


def session_size(p: PairStats) -> float:
    """Packets per connection, estimated (sampled packets times the rate, per distinct connection)."""
    rate = max(int(p.max_sampling_rate or 1), 1)
    return (p.a_packets + p.p_packets) * rate / max(p.conns, 1)


#: Session kinds differ by orders of magnitude in packets per connection (a page fetch: tens; a
#: shell or a remote desktop: thousands); one pair's sampled estimate is noisy by a factor of a few.
ORDER_OF_MAGNITUDE = 10.0


def managed_like(size: float, floor: float) -> bool:
    """Whether sessions of ``size`` packets per connection are managed the way the seeds are.

    New infrastructure is managed the way the seeds are: the member holds sessions with it within
    an order of magnitude, per connection, of the smallest it held with a seed (``floor``). The
    sites an operator browses, the mail it fetches and the updates it downloads are connections
    of tens of packets; its management of servers is shells and desktops of thousands. The floor
    is the actor's own, measured in the same store at the same sampling, not a number set here.
    """
    return size * ORDER_OF_MAGNITUDE >= floor

"""Beacon detection: does a peer reach a seed at regular intervals, as far as sampling lets us see?

Unsampled, a beacon's connection starts are spaced by its period (plus jitter). Under 1:N packet
sampling most short beacon connections leave no record at all; the ones that do are a random
subset of the same grid, so the gaps between observed starts are whole multiples of the period.
We test both: gaps close to their median, or gaps close to a multiple of a base period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Beacon", "regularity", "MIN_INTERVALS", "JITTER", "MIN_SHARE"]

#: At least this many gaps (so MIN_INTERVALS + 1 connection starts) before calling anything regular.
MIN_INTERVALS = 5
#: Tolerance on a gap, as a share of the period (beacon implants add jitter of 10-20 %).
JITTER = 0.25
#: Share of the gaps that must fit the period.
MIN_SHARE = 0.6
#: Periods tried on a sampled series (5 shortest gaps x divisors 1..8), and the chance we accept of
#: calling random (Poisson) connection starts a beacon, over all of them.
CANDIDATES = 40
FALSE_ALARM = 1e-3
#: Sampled series with jitter: the quantile of the gaps taken as the floor, and how many gaps we need.
FLOOR_QUANTILE = 0.02
MIN_FLOOR_GAPS = 30
#: Heavily thinned series: seen on this share of the days of its span, over at least this many days,
#: with floor evidence at this level.
DAILY_PRESENCE = 0.8
DAILY_MIN_DAYS = 5
DAILY_FLOOR_P = 0.05
#: Very thin series (heavy sampling): starts expected per bin, share of bins that must hold one,
#: and the least evidence we call steady.
STEADY_PER_BIN = 3.0
STEADY_PRESENCE = 0.8
STEADY_MIN_STARTS = 12
STEADY_MIN_DAYS = 5
#: Tolerance on a gap that is a multiple of the period (sampled series), as a share of the period.
MULTIPLE_TOLERANCE = 0.15


@dataclass(frozen=True)
class Beacon:
    interval_s: float
    share: float  # share of gaps that fit the period
    method: str  # "gaps" (consecutive starts) or "multiples" (thinned by sampling)
    starts: int


def _chance(fits: int, n: int, p: float) -> float:
    """P(at least ``fits`` of ``n`` random gaps fit), each fitting with chance ``p`` (binomial tail),
    in log space: a victim retrying for weeks has tens of thousands of gaps, and C(n, i) of those
    overflows a float."""
    if fits <= 0:
        return 1.0
    return max(0.0, 1.0 - _cdf(fits - 1, n, p))


def _cdf(k: int, n: int, p: float) -> float:
    """P(at most ``k`` of ``n``), each with chance ``p`` (binomial), in log space for large n."""
    if p <= 0:
        return 1.0
    if p >= 1:
        return 0.0 if k < n else 1.0
    lp, lq = math.log(p), math.log1p(-p)
    return float(
        sum(
            math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
            for i in range(0, k + 1)
        )
    )


def regularity(starts_ms: np.ndarray) -> Beacon | None:
    """The period of a series of connection start times, or None when it is not regular."""
    t = np.unique(np.asarray(starts_ms, dtype=np.int64)) / 1000.0
    if len(t) < MIN_INTERVALS + 1:
        return None
    d = np.diff(t)
    d = d[d > 0]
    if len(d) < MIN_INTERVALS:
        return None
    period = float(np.median(d))
    if period <= 0:
        return None
    share = float(np.mean(np.abs(d - period) <= JITTER * period))
    if share >= MIN_SHARE:
        return Beacon(round(period, 3), round(share, 3), "gaps", len(t))
    best = _multiples(d, len(t))
    return best or _floor(d, len(t)) or _daily(t, d) or _steady(t, d)


def _floor_pvalue(d: np.ndarray) -> tuple[float, float]:
    """(chance that random starts leave so few short gaps, the floor) for a series of gaps."""
    x = float(np.quantile(d, FLOOR_QUANTILE))
    below = int(np.sum(d < x))
    p = 1.0 - math.exp(-x / float(np.mean(d)))
    return _cdf(below, len(d), p), x


def _floor_period(d: np.ndarray, x: float) -> float:
    """The period: the typical gap among the shortest ones (one beacon apart)."""
    low = d[(d >= x) & (d <= 1.5 * x)]
    return round(float(np.median(low)) if len(low) else x, 3)


def _daily(t: np.ndarray, d: np.ndarray) -> Beacon | None:
    """Weak floor evidence plus contact on nearly every day of its span: a heavily thinned beacon.

    At 1:N sampling a beacon of a few packets leaves a record only now and then, and its jitter
    blurs the multiples; what remains is a floor under the gaps and a presence day after day.
    """
    if len(d) < MIN_INTERVALS * 4:
        return None
    days = np.unique((t // 86400).astype(np.int64))
    span = int(days[-1] - days[0]) + 1
    if span < DAILY_MIN_DAYS or len(days) < DAILY_PRESENCE * span:
        return None
    pval, x = _floor_pvalue(d)
    if pval >= DAILY_FLOOR_P:
        return None
    return Beacon(_floor_period(d, x), round(len(days) / span, 3), "floor+daily", len(t))


def _steady(t: np.ndarray, d: np.ndarray) -> Beacon | None:
    """What 1:1000 sampling leaves of a beacon: a few connections, spread evenly over weeks.

    Cut the span into bins that should each hold STEADY_PER_BIN starts at the observed mean rate;
    a steady (automated) process fills nearly all of them (Poisson: 1 - e^-3 = 95 %), a person
    or a one-off job fills few. The interval reported is the mean gap between observed
    connections, an upper bound on the period.
    """
    n = len(t)
    span = float(t[-1] - t[0])
    if n < STEADY_MIN_STARTS or span < STEADY_MIN_DAYS * 86400:
        return None
    width = STEADY_PER_BIN * span / (n - 1)
    bins = int(np.ceil(span / width))
    if bins < 3:
        return None
    filled = len(np.unique(np.minimum(((t - t[0]) // width).astype(np.int64), bins - 1)))
    if filled < STEADY_PRESENCE * bins:
        return None
    return Beacon(round(float(np.mean(d)), 3), round(filled / bins, 3), "steady", n)


def _floor(d: np.ndarray, starts: int) -> Beacon | None:
    """A thinned beacon with jitter that adds up: no two starts are ever closer than the period.

    Gaps between sampled beacons are sums of k jittered periods, so the shortest gaps sit near one
    period and none is much shorter. Random (Poisson) starts put a share 1 - exp(-x/mean) of their
    gaps below any x. With x the FLOOR_QUANTILE of the gaps, we ask how unlikely it is that so few
    gaps fall below x if the starts were random.
    """
    n = len(d)
    if n < MIN_FLOOR_GAPS:
        return None
    pval, x = _floor_pvalue(d)
    if pval >= FALSE_ALARM:
        return None
    return Beacon(_floor_period(d, x), round(float(np.mean(d >= x)), 3), "floor", starts)


def _multiples(d: np.ndarray, starts: int) -> Beacon | None:
    # thinned by sampling: the gaps are multiples k of the period. The period is one of the
    # shortest gaps divided by a small integer (the shortest observed gap may itself skip beacons).
    # The tolerance is tighter than for plain gaps, since random (Poisson) gaps much longer than
    # the period fit a multiple within +-t of it with chance 2t (0.3 < MIN_SHARE).
    best: Beacon | None = None
    for g in np.unique(np.sort(d)[:5]):
        for j in range(1, 9):
            base = float(g) / j
            if base < 1.0:
                continue
            k = np.maximum(np.rint(d / base), 1)
            share = float(np.mean(np.abs(d - k * base) <= MULTIPLE_TOLERANCE * base))
            fits = int(round(share * len(d)))
            if (
                share >= MIN_SHARE
                and float(np.median(k)) >= 2
                and _chance(fits, len(d), 2 * MULTIPLE_TOLERANCE) * CANDIDATES < FALSE_ALARM
                and (best is None or base > best.interval_s)
            ):
                best = Beacon(round(base, 3), round(share, 3), "multiples", starts)
    return best

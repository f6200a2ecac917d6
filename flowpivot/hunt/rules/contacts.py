"""Victims and probes: what a peer's connection attempts toward one seed port look like over time.

A **probe** is a tool run: many attempts within seconds. The attempts are cut into runs where
they come within ``span`` seconds of each other; a run of at least ``min_attempts`` attempts is a
burst when it lasts no longer than ``span`` in all, and a flood when its attempts come faster
than ten a second for however long (no beacon or reconnect loop fires that fast: implants sleep
between tries to stay quiet; scanners, brute-forcers and floods do not). When bursts and floods
hold most of a peer's attempts on a seed port, the series is a probe, named by how the seed
answered: ``syn-flood`` (nothing answered), ``retry-storm`` (every attempt refused with a reset
and tried again) or ``burst`` (answered: a brute force, a crawl).

A **victim** keeps contacting a seed at a regular cadence over a sustained span: the attempts
outside bursts pass the beacon tests of :mod:`flowpivot.hunt.beacon`. An infected host whose C2
refuses it is still a victim: its state says ``rejected``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..beacon import Beacon, regularity

__all__ = ["Series", "Probe", "probe_of", "classify_series", "FLOOD_GAP_S"]

#: Attempts closer than this, on median, in a run are a flood (ten a second).
FLOOD_GAP_S = 0.1


@dataclass(frozen=True)
class Series:
    """Connection starts (ms) a peer opened toward one seed port, and how the seed answered the pair."""

    peer: str
    seed: str
    proto: int
    port: int
    starts_ms: np.ndarray
    state: str  # "established", "rejected" or "unanswered"


@dataclass(frozen=True)
class Probe:
    kind: str  # "burst", "syn-flood", "retry-storm"
    attempts: int  # attempts in its bursts and floods
    first_ms: int
    last_ms: int
    runs: int

    @property
    def span_s(self) -> float:
        return (self.last_ms - self.first_ms) / 1000.0

    @property
    def rate_per_s(self) -> float:
        return self.attempts / self.span_s if self.span_s > 0 else float(self.attempts)


def _runs(t: np.ndarray, span_ms: float) -> list[tuple[int, int]]:
    """[start, end) index ranges of the runs: consecutive starts within ``span_ms`` of each other."""
    if len(t) == 0:
        return []
    cut = np.flatnonzero(np.diff(t) > span_ms) + 1
    edges = np.concatenate([[0], cut, [len(t)]])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _probe_mask(t: np.ndarray, min_attempts: int, span_ms: float) -> np.ndarray:
    """Which starts belong to a burst or a flood."""
    mask = np.zeros(len(t), bool)
    for a, b in _runs(t, span_ms):
        n = b - a
        if n < min_attempts:
            continue
        burst = t[b - 1] - t[a] <= span_ms
        flood = float(np.median(np.diff(t[a:b]))) < FLOOD_GAP_S * 1000
        if burst or flood:
            mask[a:b] = True
    return mask


def _kind(state: str) -> str:
    return {"unanswered": "syn-flood", "rejected": "retry-storm"}.get(state, "burst")


def _split(s: Series, min_attempts: int, span_s: float) -> tuple[Probe | None, np.ndarray]:
    """The probe a series is (or None), and its sorted starts outside bursts and floods."""
    t = np.sort(np.asarray(s.starts_ms, dtype=np.int64))
    if len(t) < min_attempts:
        return None, t
    mask = _probe_mask(t, min_attempts, span_s * 1000)
    n = int(mask.sum())
    if 2 * n <= len(t):
        return None, t[~mask]
    inside = t[mask]
    runs = sum(1 for a, b in _runs(inside, span_s * 1000) if b > a)
    return Probe(_kind(s.state), n, int(inside[0]), int(inside[-1]), runs), t[~mask]


def probe_of(s: Series, min_attempts: int, span_s: float) -> Probe | None:
    """The probe a series is, when bursts and floods hold most of its attempts; else None."""
    return _split(s, min_attempts, span_s)[0]


def classify_series(s: Series, min_attempts: int, span_s: float, min_starts: int) -> tuple[Probe | None, Beacon | None]:
    """(probe, None) for a probe; (None, beacon) for a victim's series; (None, None) otherwise.

    The beacon tests see only the attempts outside bursts and floods, so a victim that also
    bursts now and then is still found, and a burst never makes a beacon.
    """
    probe, t = _split(s, min_attempts, span_s)
    if probe is not None:
        return probe, None
    if len(t) < min_starts:
        return None, None
    return None, regularity(t)

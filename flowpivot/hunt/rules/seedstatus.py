"""Seed status: when a seed stopped answering, with the evidence a takedown report needs.

A seed *answers* when it sends traffic that is not a bare reset: a SYN-ACK, data, a reply. A
scanner's SYN, an uptime monitor's check or a victim's retry that reaches it afterwards proves
nothing about the seed, so its status is read from its answers alone:

* ``unseen``: no flow in the window.
* ``unanswered``: flows reached it but it never answered (only attempts, or resets).
* ``dark``: it answered, then fell silent for at least ``min_hours`` (24) and for longer than it
  plausibly could by chance while still up: with ``p`` the share of hours that had its answers
  between its first and last answer, a silence of ``h`` hours has chance ``(1 - p)^h``; below
  ``chance`` (1 %), it is dark. At 1:1000 sampling a seed shows up only now and then, so it takes
  a longer silence to call it dark.
  The attempts that keep reaching it count too: with ``q`` the share of its hours with traffic
  (up to its last answer) in which it also answered, ``k`` hours of attempts after its last
  answer, all unanswered, have chance ``(1 - q)^k`` while it is up. Scanners, monitors and
  retrying victims keep knocking on a server taken down; their unanswered knocks are the
  strongest evidence the takedown worked, and they let a thinly sampled seed be called dark
  sooner than its silence alone would. When nothing at all reached it after its last answer, the
  silence of all its traffic is tested the same way, with the share of hours that had any.
  A silence counts only when it is longer than every gap the seed showed while it was up (its
  longest gap between answers, or between any flows for the silence of all traffic). The hourly
  model treats hours as independent, but real activity comes in sessions and working days, so a
  seed present in one hour of ten is often silent for a day and more and still up; a silence no
  longer than one it already had and came back from is no evidence. If the seed is up, its
  current silence exceeds all ``n`` earlier gaps with chance at most ``1 / (n + 1)`` whatever the
  shape of its activity (the gaps are exchangeable), which is the test the hourly chance is
  checked against.
* ``active`` otherwise.

``unanswered_after`` counts the attempts that reached it after its last answer: the evidence,
beside the last answered session, that it was taken down and not merely idle.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SeedActivity", "seed_status", "DARK_MIN_HOURS", "DARK_CHANCE"]

HOUR_MS = 3_600_000
DARK_MIN_HOURS = 24
DARK_CHANCE = 0.01


@dataclass(frozen=True)
class SeedActivity:
    flows: int  # every flow touching the seed
    first_ms: int | None
    last_ms: int | None
    answered_flows: int = 0
    first_answer_ms: int | None = None
    last_answer_ms: int | None = None
    answer_hours: int = 0  # distinct hours with an answer
    unanswered_after: int = 0  # attempts toward it after its last answer
    last_attempt_ms: int | None = None
    hours_before: int = 0  # distinct hours with any flow, up to its last answer
    unanswered_hours_after: int = 0  # distinct hours with attempts after its last answer
    any_hours: int = 0  # distinct hours with any flow
    longest_answer_gap_ms: int = 0  # longest time between two consecutive answers
    longest_any_gap_ms: int = 0  # longest time between two consecutive flows


def seed_status(a: SeedActivity, until_ms: int) -> dict[str, object]:
    """Status and the figures it rests on (``silent_hours``, ``hourly_presence``)."""
    if a.flows == 0:
        return {"status": "unseen"}
    if a.answered_flows == 0 or a.last_answer_ms is None or a.first_answer_ms is None:
        return {"status": "unanswered", "silent_hours": None, "hourly_presence": 0.0}
    span_h = max(1.0, (a.last_answer_ms - a.first_answer_ms) / HOUR_MS)
    presence = min(1.0, a.answer_hours / span_h)
    silent_h = max(0.0, (until_ms - a.last_answer_ms) / HOUR_MS)
    chance = 1.0
    if until_ms - a.last_answer_ms > a.longest_answer_gap_ms:  # longer than any gap it came back from
        chance = (1.0 - presence) ** silent_h if presence < 1.0 else 0.0
    if a.first_ms is not None and a.last_ms is not None and a.any_hours and until_ms - a.last_ms > a.longest_any_gap_ms:
        # nothing at all reached it or came from it since its last flow, which was its answer
        any_presence = min(1.0, a.any_hours / max(1.0, (a.last_ms - a.first_ms) / HOUR_MS))
        quiet_h = max(0.0, (until_ms - a.last_ms) / HOUR_MS)
        chance = min(chance, (1.0 - any_presence) ** quiet_h if any_presence < 1.0 else 0.0)
    q = min(1.0, a.answer_hours / a.hours_before) if a.hours_before else 0.0
    knocked = (1.0 - q) ** a.unanswered_hours_after if q < 1.0 else (0.0 if a.unanswered_hours_after else 1.0)
    dark = silent_h >= DARK_MIN_HOURS and min(chance, knocked) < DARK_CHANCE
    return {
        "status": "dark" if dark else "active",
        "silent_hours": round(silent_h, 1),
        "hourly_presence": round(presence, 4),
        "answer_share": round(q, 4),
        "unanswered_hours_after": a.unanswered_hours_after,
        "longest_answer_gap_hours": round(a.longest_answer_gap_ms / HOUR_MS, 1),
        "dark_chance": float(f"{min(chance, knocked):.3g}"),
    }

"""What every file reader shares: a report of what was read and what was skipped, and where."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem

__all__ = ["ReadReport", "file_key"]

MAX_PROBLEMS_KEPT = 1000


@dataclass
class ReadReport:
    """Filled in by a reader as it goes. Bad input is counted here, never raised.

    ``progress`` (if set) is called with the number of input bytes consumed since the last call.
    """

    source: str
    fmt: str = ""
    records: int = 0
    bad: int = 0
    problems: list[Problem] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    progress: Callable[[int], None] | None = None

    def problem(self, where: str, reason: str) -> None:
        self.bad += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(Problem(self.source, where, reason))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def advance(self, nbytes: int) -> None:
        if self.progress is not None and nbytes:
            self.progress(nbytes)


def file_key(path: str | Path, fmt: str, chunk: int = 1 << 20) -> str:
    """Store key of an input file: its format and the SHA-256 of its content (gunzipped when it is
    gzip), so re-ingesting is a no-op and ``conn.log`` and ``conn.log.gz`` are one input."""
    from .once import content_digest

    return content_digest(path, fmt).key

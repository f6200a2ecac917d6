"""flowpivot's exceptions and the record of bad input.

    FlowpivotError
    ├── InputError        a file, line or datagram that cannot be read (where it was, why)
    ├── StoreError        the Parquet store is missing, locked or inconsistent
    └── EnrichError       an enrichment database cannot be read

Bad input inside a larger input never raises: it is recorded as a :class:`Problem` so that the
good records around it are kept, and the caller reports the problems at the end.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "FlowpivotError", "InputError", "StoreError", "EnrichError", "Problem",
    "EXIT_OK", "EXIT_INPUT", "EXIT_USAGE", "EXIT_NOTHING", "EXIT_INTERRUPTED",
]  # fmt: skip

# The exit codes of every command (docs/cli.md, "Exit codes").
EXIT_OK = 0  # done; warnings, if any, were printed
EXIT_INPUT = 1  # an input could not be read at all (the others were still used)
EXIT_USAGE = 2  # a usage error: a bad option or value, a path that is not what the command needs
EXIT_NOTHING = 3  # the command ran but had nothing to work on (no flows in the window, no seed address)
EXIT_INTERRUPTED = 130  # Ctrl-C


class FlowpivotError(Exception):
    """Base of every error flowpivot raises on purpose."""


class InputError(FlowpivotError):
    """An input cannot be read at all."""


class StoreError(FlowpivotError):
    """The store cannot be used as asked."""


class EnrichError(FlowpivotError):
    """An enrichment source cannot be used."""


@dataclass(frozen=True)
class Problem:
    """One piece of bad input that was skipped: where it was and why."""

    source: str  # file path or exporter address
    where: str  # "offset 1234", "line 17", "datagram 5 offset 40"
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.where}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

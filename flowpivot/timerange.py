"""The plausible time range of flow records, and the repair of a record that ends before it starts.

Every input path (the file readers through ``ingest_paths`` and the collector's windows) passes its
batches through :func:`check_times` before they reach the store. A record whose start or end lies
outside the range is never stored: it is counted and reported with its place in the input. The
range runs from ``TimeRange.earliest_ms`` (1970-01-01 by default) to the input's own time (the
file's modification time, or the datagram's arrival) plus ``TimeRange.slack_ms`` (a day by
default), unless ``TimeRange.latest_ms`` fixes the end. An exporter's clock may run a little ahead;
a flow dated years ahead of the file that holds it is a broken or hostile record, and storing it
would move every default window (the hunt's, ``flows``') into the future.

A record that ends before it starts (a wrapped uptime counter, a swapped pair of fields) is kept
with its end set to its start: the start is the time the exporter saw the first packet and the one
every window and partition is keyed on, and a zero duration claims nothing the record does not say.
It is counted as ``end_before_start_repaired``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["TimeRange", "TimeCheck", "check_times", "fmt_ms", "DAY_MS"]

DAY_MS = 86_400_000


def fmt_ms(ms: int) -> str:
    """An epoch millisecond as ISO 8601 (UTC), or as the raw number when no calendar date holds it."""
    try:
        return (
            _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms since 1970"


@dataclass(frozen=True)
class TimeRange:
    """Which flow times are plausible.

    ``earliest_ms``: the first accepted time (default 0, 1970-01-01T00:00:00Z).
    ``latest_ms``: if set, the last accepted time, whatever the input's own time.
    ``slack_ms``: otherwise the last accepted time is the input's own time plus this (default a day).
    """

    earliest_ms: int = 0
    latest_ms: int | None = None
    slack_ms: int = DAY_MS

    def bounds(self, reference_ms: int | None) -> tuple[int, int]:
        """The accepted [first, last] times for an input whose own time is ``reference_ms``
        (None: now)."""
        if self.latest_ms is not None:
            return self.earliest_ms, self.latest_ms
        if reference_ms is None:
            reference_ms = int(_dt.datetime.now(tz=_dt.UTC).timestamp() * 1000)
        return self.earliest_ms, reference_ms + self.slack_ms

    def describe(self, reference_ms: int | None, what: str = "the input's time") -> str:
        lo, hi = self.bounds(reference_ms)
        if self.latest_ms is not None:
            return f"{fmt_ms(lo)} .. {fmt_ms(hi)}"
        return f"{fmt_ms(lo)} .. {fmt_ms(hi)} ({what} plus {self.slack_ms / 3_600_000:g} h)"


@dataclass
class TimeCheck:
    """What :func:`check_times` found in one batch.

    ``rejected``: (row number in the batch, reason) of every record left out.
    ``repaired``: rows whose end was set to their start.
    """

    rejected: list[tuple[int, str]]
    repaired: int


def _as_ms(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.timestamp("ms", tz=arr.type.tz), safe=False).cast(pa.int64())
    out = arr.to_numpy(zero_copy_only=False)
    return np.asarray(out, dtype=np.float64 if out.dtype == object else out.dtype)


def check_times(batch: pa.RecordBatch, lo_ms: int, hi_ms: int, where: str = "") -> tuple[pa.RecordBatch, TimeCheck]:
    """Keep the records of ``batch`` (store schema: ``start``/``end`` in ms) whose start and end
    lie within [lo_ms, hi_ms]; set the end of a kept record that ends before it starts to its
    start. Returns the kept batch and what was left out (rows of the given batch) and repaired.
    ``where`` names the range in the reasons (e.g. "the file's time plus 24 h")."""
    n = batch.num_rows
    if n == 0:
        return batch, TimeCheck([], 0)
    start = _as_ms(batch.column(batch.schema.get_field_index("start")))
    end = _as_ms(batch.column(batch.schema.get_field_index("end")))
    bad_start = (start < lo_ms) | (start > hi_ms)
    bad_end = (end < lo_ms) | (end > hi_ms)
    bad = bad_start | bad_end
    span = f"{fmt_ms(lo_ms)} .. {fmt_ms(hi_ms)}" + (f" ({where})" if where else "")
    rejected: list[tuple[int, str]] = []
    for i in np.flatnonzero(bad):
        field, value = ("start", start[i]) if bad_start[i] else ("end", end[i])
        rejected.append((int(i), f"{field} {fmt_ms(int(value))} outside the plausible range {span}"))
    swap = ~bad & (end < start)
    repaired = int(swap.sum())
    if not bad.any() and not repaired:
        return batch, TimeCheck([], 0)
    if repaired:
        idx = batch.schema.get_field_index("end")
        col = batch.column(idx)
        fixed = pc.if_else(pa.array(swap), batch.column(batch.schema.get_field_index("start")), col)
        batch = pa.RecordBatch.from_arrays(
            [fixed if j == idx else batch.column(j) for j in range(batch.num_columns)], schema=batch.schema
        )
    if bad.any():
        batch = batch.filter(pa.array(~bad))
    return batch, TimeCheck(rejected, repaired)

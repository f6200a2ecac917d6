"""The collector's use of :func:`flowpivot.timerange.check_times`: which exporter sent the records
left out or repaired, as problems and per-exporter counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import Problem
from ..timerange import TimeRange, check_times
from .rotation import iso_ms

__all__ = ["check_batch_times", "TimeFindings", "TIME_COUNTERS"]

# Counters the collector keeps per exporter next to the decoder's.
TIME_COUNTERS = ("out_of_time_range", "end_before_start_repaired")


@dataclass
class TimeFindings:
    rejected: int = 0
    repaired: int = 0
    per_exporter: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def check_batch_times(
    batch: pa.RecordBatch, time_range: TimeRange, now_ms: int, max_problems: int = 50
) -> tuple[pa.RecordBatch, TimeFindings]:
    """The records of a decoded batch (store schema) dated inside the plausible range for a
    collector whose clock says ``now_ms``, ends before starts repaired; what was found, by exporter."""
    lo, hi = time_range.bounds(now_ms)
    where = (
        "" if time_range.latest_ms is not None else f"the collector's clock plus {time_range.slack_ms / 3_600_000:g} h"
    )
    kept, chk = check_times(batch, lo, hi, where)
    found = TimeFindings(len(chk.rejected), chk.repaired)
    if not chk.rejected and not chk.repaired:
        return kept, found
    exporters = np.asarray(batch.column(batch.schema.get_field_index("exporter")).to_pylist(), dtype=object)

    def count(name: str, key: str) -> None:
        c = found.per_exporter.setdefault(name, dict.fromkeys(TIME_COUNTERS, 0))
        c[key] += 1

    for row, reason in chk.rejected:
        name = str(exporters[row])
        count(name, "out_of_time_range")
        if len(found.problems) < max_problems:
            found.problems.append(Problem(name, f"a flow record decoded {iso_ms(now_ms)}", f"not stored: {reason}"))
    if chk.repaired:
        start = batch.column(batch.schema.get_field_index("start"))
        end = batch.column(batch.schema.get_field_index("end"))
        mask = np.asarray(pc.less(end, start).to_numpy(zero_copy_only=False), dtype=bool)
        if chk.rejected:
            mask[[r for r, _ in chk.rejected]] = False
        for name in exporters[mask]:
            count(str(name), "end_before_start_repaired")
    return kept, found

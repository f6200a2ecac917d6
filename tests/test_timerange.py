"""The plausible time range and the end-before-start repair (flowpivot/timerange.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from flowpivot.schema import conform
from flowpivot.timerange import DAY_MS, TimeRange, check_times

NOW = 1_700_000_000_000  # 2023-11-14


def _batch(starts: list[int], ends: list[int]) -> pa.RecordBatch:
    n = len(starts)
    return conform(
        {
            "start": pa.array(starts, pa.int64()),
            "end": pa.array(ends, pa.int64()),
            "src_addr_v4": pa.array(np.arange(n, dtype=np.uint32)),
            "dst_addr_v4": pa.array(np.arange(n, dtype=np.uint32) + 1000),
        }
    )


def test_out_of_range_records_are_left_out_and_named() -> None:
    lo, hi = TimeRange().bounds(NOW)
    assert (lo, hi) == (0, NOW + DAY_MS)
    b = _batch([NOW, 2**62, NOW, -5, NOW + DAY_MS], [NOW + 5, 2**62, 4_070_908_800_000, NOW, NOW + DAY_MS])
    kept, chk = check_times(b, lo, hi)
    # rows 0 and 4 are inside (the last exactly at the edge); 1 start too late, 2 end in 2099, 3 before 1970
    assert kept.num_rows == 2
    assert kept.column(kept.schema.get_field_index("src_addr_v4")).to_pylist() == [0, 4]
    assert [r for r, _ in chk.rejected] == [1, 2, 3]
    assert "start" in chk.rejected[0][1] and "end 2099-01-01" in chk.rejected[1][1]
    assert chk.repaired == 0


def test_end_before_start_is_repaired_to_a_zero_duration() -> None:
    b = _batch([NOW + 500, NOW], [NOW, NOW + 10])
    kept, chk = check_times(b, *TimeRange().bounds(NOW))
    assert chk.rejected == [] and chk.repaired == 1
    s = kept.column(kept.schema.get_field_index("start")).cast(pa.int64()).to_pylist()
    e = kept.column(kept.schema.get_field_index("end")).cast(pa.int64()).to_pylist()
    assert s == [NOW + 500, NOW] and e == [NOW + 500, NOW + 10]


def test_a_fixed_range_overrides_the_input_time() -> None:
    tr = TimeRange(earliest_ms=NOW - DAY_MS, latest_ms=NOW)
    assert tr.bounds(0) == (NOW - DAY_MS, NOW)
    kept, chk = check_times(_batch([NOW - 2 * DAY_MS, NOW - 1], [NOW - 2 * DAY_MS, NOW]), *tr.bounds(None))
    assert kept.num_rows == 1 and [r for r, _ in chk.rejected] == [0]

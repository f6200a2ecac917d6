"""The store's day sketches computed by Spark, for a store whose files are not on this machine.

A local store keeps each file's HyperLogLog sketches in ``STORE/sketches/`` (:mod:`flowpivot.store.sketch`)
and the Spark hunt reads them as the DuckDB hunt does. A store on object storage has them
computed here: every task folds its rows into per-day registers with the same hash functions,
and the driver merges them register-wise (a maximum, which is what merging sketch files is), so
the figures are the ones the sketch files would give.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["population"]

_COLS = ["start", "src_addr_v4", "src_addr_v6", "dst_addr_v4", "dst_addr_v6"]


def _fold(day_ms: int) -> Any:
    def fold(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from ..store.sketch import DaySketches

        sk = DaySketches()
        for b in batches:
            if b.num_rows:
                sk.add(b, day_ms)
        days = sorted(sk.hosts)
        yield pa.RecordBatch.from_pydict(
            {
                "day": pa.array(days, pa.int64()),
                "hosts": pa.array([sk.hosts[d].tobytes() for d in days], pa.binary()),
                "edges": pa.array([sk.edges[d].tobytes() for d in days], pa.binary()),
            }
        )

    return fold


def population(store: Any, first_day: int, last_day: int, day_ms: int) -> tuple[int, int]:
    """Distinct hosts and host pairs on the days first..last (see :func:`flowpivot.store.sketch.population`)."""
    from ..store.sketch import estimate

    df = store.frame(first_day * day_ms, (last_day + 1) * day_ms - 1).select(*_COLS)
    rows = df.mapInArrow(_fold(day_ms), "day BIGINT, hosts BINARY, edges BINARY").toArrow().to_pylist()
    hosts = [np.frombuffer(r["hosts"], np.uint8) for r in rows if first_day <= r["day"] <= last_day]
    edges = [np.frombuffer(r["edges"], np.uint8) for r in rows if first_day <= r["day"] <= last_day]
    if not hosts:
        return 0, 0
    return round(estimate(np.maximum.reduce(hosts))), round(estimate(np.maximum.reduce(edges)))

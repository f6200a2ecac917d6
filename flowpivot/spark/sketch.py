"""The store's day sketches computed by Spark, for a store whose files are not on this machine.

A local store keeps each file's HyperLogLog sketches in ``STORE/sketches/`` (:mod:`flowpivot.store.sketch`)
and the Spark hunt reads them as the DuckDB hunt does. A store on object storage has them
computed by Spark's executors: each task reads its store files (through Hadoop's file system, so
any URL Spark reads) with pyarrow and folds them into per-day registers exactly as
:func:`flowpivot.store.sketch.file_sketch` does, and the driver merges the registers (a maximum,
which is what merging sketch files is). The figures are the ones the sketch files would give.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

__all__ = ["population"]

_COLS = ["start", "src_addr_v4", "src_addr_v6", "dst_addr_v4", "dst_addr_v6"]


def _fold(day_ms: int, first_day: int, last_day: int) -> Any:
    def fold(files: Iterable[tuple[str, bytes]]) -> Iterator[tuple[int, tuple[bytes, bytes]]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..store.sketch import DaySketches

        sk = DaySketches()
        for _, data in files:
            for batch in pq.ParquetFile(pa.BufferReader(data)).iter_batches(1 << 20, columns=_COLS):
                sk.add(batch, day_ms)
        for d in sorted(sk.hosts):
            if first_day <= d <= last_day:
                yield d, (sk.hosts[d].tobytes(), sk.edges[d].tobytes())

    return fold


def _max(a: tuple[bytes, bytes], b: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    return tuple(  # type: ignore[return-value]
        np.maximum(np.frombuffer(x, np.uint8), np.frombuffer(y, np.uint8)).tobytes() for x, y in zip(a, b, strict=True)
    )


def population(store: Any, first_day: int, last_day: int, day_ms: int) -> tuple[int, int]:
    """Distinct hosts and host pairs on the days first..last over ``store``'s files
    (:class:`flowpivot.spark.SparkStore`); see :func:`flowpivot.store.sketch.population`."""
    from ..store.sketch import estimate

    files = store.files(first_day, last_day)
    if not files:
        return 0, 0
    sc = store.spark.sparkContext
    rdd = sc.binaryFiles(",".join(files), minPartitions=min(len(files), sc.defaultParallelism))
    days = rdd.mapPartitions(_fold(day_ms, first_day, last_day)).reduceByKey(_max).collect()
    if not days:
        return 0, 0
    hosts = np.maximum.reduce([np.frombuffer(h, np.uint8) for _, (h, _e) in days])
    edges = np.maximum.reduce([np.frombuffer(e, np.uint8) for _, (_h, e) in days])
    return round(estimate(hosts)), round(estimate(edges))

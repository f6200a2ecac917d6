"""The store's flows as a Spark temporary view, read where the store lies.

The store is ``STORE/flows/day=YYYY-MM-DD/*.parquet`` (docs/schema.md). Spark reads it through
Hadoop's file systems, so ``STORE`` may be a local path or any URL Spark has a connector for
(``s3a://``, ``hdfs://``, ``abfss://``, ``gs://``). The day directories are listed first and only
those a window overlaps are read: the partition pruning is done by name, before Spark opens a
file, and Parquet's row-group statistics on ``start`` skip the rest inside each file.

The view has the store's columns and nothing more (no ``day`` partition column), with the two
types Spark cannot hold as they are mapped: unsigned 64-bit counters (``packets``, ``bytes``,
``rev_packets``, ``rev_bytes``, which Spark reads as DECIMAL(20,0)) become BIGINT, and the
16-byte IPv6 columns are BINARY.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pyarrow as pa

from ..schema import STORE_SCHEMA

__all__ = ["SparkStore", "is_url", "spark_type"]

DAY_MS = 86_400_000
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")


def is_url(path: Any) -> bool:
    """Whether ``path`` is a file-system URL (``s3a://...``, ``file:///...``) rather than a local path."""
    return isinstance(path, str) and bool(_URL.match(path))


def spark_type(t: pa.DataType) -> str:
    """The Spark SQL type a store column is read as (after the view's casts)."""
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_string(t):
        return "STRING"
    if pa.types.is_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BINARY"
    if t in (pa.uint8(), pa.int16()):
        return "SMALLINT"
    if t in (pa.uint16(), pa.int32()):
        return "INT"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    raise TypeError(f"no Spark type for {t}")  # pragma: no cover - the store schema has none other


def read_schema() -> str:
    """The store's columns as Spark's Parquet reader reads them (what it would infer): unsigned
    integers in the next wider signed type, UINT_64 as DECIMAL(20,0)."""
    parquet = {pa.uint8(): "SMALLINT", pa.uint16(): "INT", pa.uint32(): "BIGINT", pa.uint64(): "DECIMAL(20,0)"}
    return ", ".join(f"`{f.name}` {parquet.get(f.type) or spark_type(f.type)}" for f in STORE_SCHEMA)


class SparkStore:
    """A flow store read by Spark: its day partitions, listed through Hadoop's file system."""

    def __init__(self, spark: Any, root: Any) -> None:
        self.spark = spark
        text = str(root)
        self.root = text.rstrip("/") if is_url(text) else str(_local(text))
        self._days: dict[int, list[str]] | None = None

    # ---- listing ---------------------------------------------------------------------------------

    def _fs(self, path: str) -> tuple[Any, Any]:
        jvm = self.spark._jvm
        p = jvm.org.apache.hadoop.fs.Path(path)
        return p.getFileSystem(self.spark._jsc.hadoopConfiguration()), p

    def days(self) -> dict[int, list[str]]:
        """Day number (UTC days since 1970) -> the Parquet files of its partition (visible ones:
        names starting with ``.`` or ``_`` are files being written, or metadata)."""
        if self._days is None:
            out: dict[int, list[str]] = {}
            fs, pattern = self._fs(f"{self.root}/flows/day=*/*.parquet")
            for st in fs.globStatus(pattern) or []:
                path = st.getPath()
                name, parent = path.getName(), path.getParent().getName()
                m = _DAY_DIR.match(parent)
                if not m or name.startswith((".", "_")) or not st.isFile():
                    continue
                day = (dt.date.fromisoformat(m.group(1)) - dt.date(1970, 1, 1)).days
                out.setdefault(day, []).append(path.toString())
            self._days = {d: sorted(v) for d, v in sorted(out.items())}
        return self._days

    def files(self, first_day: int | None = None, last_day: int | None = None) -> list[str]:
        """The store's files, or those of the days ``first_day`` to ``last_day``."""
        return [
            f
            for d, fs in self.days().items()
            if (first_day is None or d >= first_day) and (last_day is None or d <= last_day)
            for f in fs
        ]

    def exists(self) -> bool:
        fs, p = self._fs(f"{self.root}/flows")
        return bool(fs.exists(p))

    # ---- the view --------------------------------------------------------------------------------

    def frame(self, since_ms: int | None = None, until_ms: int | None = None) -> Any:
        """A DataFrame of the store's flows with the store's columns; with a window, only the day
        partitions it overlaps are read (rows outside the window are still there: filter on
        ``start``)."""
        first = None if since_ms is None else int(since_ms) // DAY_MS
        last = None if until_ms is None else int(until_ms) // DAY_MS
        files = self.files(first, last)
        cols = [(f.name, spark_type(f.type)) for f in STORE_SCHEMA]
        if not files:
            schema = ", ".join(f"`{n}` {t}" for n, t in cols)
            return self.spark.createDataFrame([], schema)
        # The schema is given, not inferred: no job reading every footer first, and a file
        # written before a column was added reads it as nulls (DuckDB's union_by_name)
        df = self.spark.read.schema(read_schema()).parquet(*files)
        return df.selectExpr(*(f"CAST(`{n}` AS {t}) AS `{n}`" for n, t in cols))

    def register(self, view: str = "flows", since_ms: int | None = None, until_ms: int | None = None) -> Any:
        """Create or replace the temporary view ``view`` (see :meth:`frame`); returns the DataFrame."""
        df = self.frame(since_ms, until_ms)
        df.createOrReplaceTempView(view)
        return df


def _local(path: str) -> Any:
    from pathlib import Path

    return Path(path).expanduser().resolve()

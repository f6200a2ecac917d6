"""``flows`` (with ``-f`` and ``-s``) and ``stats`` on Apache Spark: the same SQL as on DuckDB.

The filter tree renders through :data:`flowpivot.query.sql.SPARK` and the top-N query comes from
:func:`flowpivot.query.stats.top_n_sql`: one definition, two dialects. What is particular to Spark
is only here: the store read where it lies (:class:`flowpivot.spark.SparkStore`: a local path or
any Hadoop file-system URL, ``s3a://``, ``hdfs://``, ``abfss://``), the day partitions pruned by
``--until`` (a flow is filed under the day it starts, so ``--since`` cannot prune: a flow that
ends after it may start any day before); and the results brought back as Arrow in store form, so
that output goes through the same writers as DuckDB's.

pyspark is imported only when one of these runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..schema import STORE_SCHEMA
from ..store import DAY_MS, tally_sql
from .asn import AsnTable
from .ast import Node
from .sql import SPARK, render, time_window
from .stats import StatSpec, top_n_rows, top_n_sql

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["ENGINES", "read_store", "select_flows", "store_stats", "to_store_form", "top_n", "where_sql"]

log = logging.getLogger(__name__)
_EPOCH = dt.date(1970, 1, 1)


#: ``--engine``: the embedded default and the distributed one
ENGINES = ("duckdb", "spark")


def read_store(spark: SparkSession, store: str, until: int | None = None) -> DataFrame:
    """The store's flows as a DataFrame (:class:`flowpivot.spark.SparkStore`), the day partitions
    that start after ``until`` left unread. No ``since``: a flow is filed under the day it starts,
    and one that ends after ``since`` may start any day before."""
    from ..spark import SparkStore

    return SparkStore(spark, store).frame(None, until)


def _view(spark: SparkSession, store: str, until: int | None = None) -> None:
    read_store(spark, store, until).createOrReplaceTempView("flows")


def where_sql(node: Node, since: int | None = None, until: int | None = None) -> tuple[str, list[Any]]:
    """The tree and a time window as one Spark SQL ``WHERE`` clause and its ``?`` parameters."""
    sql, params = render(node, SPARK)
    return f"{time_window(since, until, SPARK)} AND {sql}", params


def _sql(spark: SparkSession, sql: str, params: list[Any]) -> DataFrame:
    return spark.sql(sql, args=params) if params else spark.sql(sql)


def to_store_form(t: pa.Table) -> pa.Table:
    """Spark's Arrow (signed and decimal integers, microsecond times, variable binary) -> store form."""
    cols = []
    for f in STORE_SCHEMA:
        c = t.column(f.name)
        if pa.types.is_fixed_size_binary(f.type):
            c = pa.array(c.to_pylist(), f.type)
        cols.append(c.cast(f.type))
    return pa.Table.from_arrays(cols, schema=STORE_SCHEMA)


def select_flows(
    spark: SparkSession,
    store: str,
    node: Node,
    since: int | None = None,
    until: int | None = None,
    limit: int | None = None,
) -> pa.Table:
    """:func:`flowpivot.query.select_flows` on Spark: flows in store form, oldest first."""
    _view(spark, store, until)
    where, params = where_sql(node, since, until)
    cols = ", ".join(SPARK.q(f.name) for f in STORE_SCHEMA)
    sql = f"SELECT {cols} FROM flows WHERE {where} ORDER BY start"
    if limit:
        sql += f" LIMIT {int(limit)}"
    t0 = time.monotonic()
    t = to_store_form(_sql(spark, sql, params).toArrow())
    log.debug("spark flows: %d rows in %.2fs", t.num_rows, time.monotonic() - t0)
    return t


def top_n(
    spark: SparkSession,
    store: str,
    spec: StatSpec,
    node: Node,
    since: int | None = None,
    until: int | None = None,
    n: int = 10,
    asn: AsnTable | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """:func:`flowpivot.query.top_n` on Spark, from the same query in the Spark dialect."""
    _view(spark, store, until)
    where, params = where_sql(node, since, until)
    sql, totals_sql = top_n_sql(spec, where, n, asn, SPARK)
    t0 = time.monotonic()
    t = _sql(spark, sql, params).toArrow()
    tot = tuple(_sql(spark, totals_sql, params).collect()[0])
    log.debug("spark -s %s/%s: %d rows in %.2fs", spec.field, spec.order, t.num_rows, time.monotonic() - t0)
    return top_n_rows(t, tot, spec, n, asn)


def store_stats(spark: SparkSession, store: str, name: str | None = None) -> dict[str, Any]:
    """:meth:`flowpivot.store.Store.stats` on Spark: flows per day, exporter and sampling rate, and
    the files and their bytes (through the store's Hadoop file system, so also on object storage).
    ``name``: the store as the user wrote it (``store`` key), by default ``store``."""
    t0 = time.monotonic()
    out: dict[str, Any] = {
        "store": name or store,
        "files": 0,
        "disk_bytes": 0,
        "flows": 0,
        "days": [],
        "exporters": [],
        "sampling_rates": [],
    }
    from ..spark import SparkStore

    st = SparkStore(spark, store)
    files = st.files()
    if not files:
        return out
    out["files"] = len(files)
    out["disk_bytes"] = _sizes(spark, files)
    st.register("flows")
    out["flows"] = int(spark.sql("SELECT count(*) FROM flows").collect()[0][0])
    out["days"] = [
        {"day": (_EPOCH + dt.timedelta(days=int(d))).isoformat(), "flows": int(n), "files": int(f)}
        for d, n, f in spark.sql(
            f"SELECT d, count(*), count(DISTINCT f) FROM (SELECT floor({SPARK.ms('start')} / {DAY_MS}) AS d,"
            " input_file_name() AS f FROM flows) AS t GROUP BY d ORDER BY d"
        ).collect()
    ]
    exporters, rates = tally_sql("flows")
    out["exporters"] = [
        {"exporter": e, "observation_domain": None if o is None else int(o), "flows": int(n)}
        for e, o, n in spark.sql(exporters).collect()
    ]
    out["sampling_rates"] = [
        {"sampling_rate": None if r is None else int(r), "flows": int(n)} for r, n in spark.sql(rates).collect()
    ]
    if out["flows"]:
        out["bytes_per_flow"] = round(out["disk_bytes"] / out["flows"], 2)
    log.debug("spark stats: %d flows in %d files in %.2fs", out["flows"], len(files), time.monotonic() - t0)
    return out


def _sizes(spark: SparkSession, files: list[str]) -> int:
    """The bytes of ``files`` (URLs) through their Hadoop file system."""
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    total = 0
    for f in files:
        p = jvm.org.apache.hadoop.fs.Path(f)
        total += int(p.getFileSystem(conf).getFileStatus(p).getLen())
    return total

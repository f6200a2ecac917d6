"""``flows`` (with ``-f`` and ``-s``) and ``stats`` on Apache Spark: the same SQL as on DuckDB.

The filter tree renders through :data:`flowpivot.query.sql.SPARK` and the top-N query comes from
:func:`flowpivot.query.stats.top_n_sql`: one definition, two dialects. What is particular to Spark
is only here: the store read where it lies (a local path or any Hadoop file-system URL: ``s3a://``,
``hdfs://``, ``abfss://``) with the store's schema given, so that no footer is read to infer it and
an older file without a later column reads it as NULL (DuckDB's ``union_by_name``); the day
partitions pruned by ``--until`` (a flow is filed under the day it starts, so ``--since`` cannot
prune: a flow that ends after it may start any day before); and the results brought back as Arrow
in store form, so that output goes through the same writers as DuckDB's.

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

__all__ = [
    "ENGINES",
    "session",
    "parse_conf",
    "flows_location",
    "read_store",
    "select_flows",
    "spark_schema",
    "store_stats",
    "top_n",
    "where_sql",
]

log = logging.getLogger(__name__)
_EPOCH = dt.date(1970, 1, 1)


#: ``--engine``: the embedded default and the distributed one
ENGINES = ("duckdb", "spark")

#: Settings a flowpivot session starts with; ``--spark-conf`` overrides any of them.
DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",  # times to and from ms as UTC, as the store holds them
    "spark.ui.showConsoleProgress": "false",  # stderr is for flowpivot's own progress
}


def parse_conf(items: list[str] | None) -> dict[str, str]:
    """``--spark-conf KEY=VALUE`` options -> a dict. ValueError on one without ``=`` or a key."""
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--spark-conf {item!r}: give KEY=VALUE, e.g. spark.executor.memory=4g")
        out[key.strip()] = value
    return out


def session(master: str | None = None, conf: dict[str, str] | None = None) -> SparkSession:
    """A Spark session on ``master`` with :data:`DEFAULT_CONF` and ``conf`` set. Without
    ``master``: the one ``spark-submit --master`` gave, else ``local[*]`` (this machine's cores)."""
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    logging.getLogger("py4j").setLevel(logging.WARNING)  # py4j logs every connection at INFO
    SparkContext._ensure_initialized()  # type: ignore[attr-defined]  # the JVM, with spark-submit's settings
    sc = SparkConf()
    if master:
        sc.setMaster(master)
    elif not sc.contains("spark.master"):
        sc.setMaster("local[*]")
    if not sc.contains("spark.app.name"):
        sc.setAppName("flowpivot")
    for k, v in {**DEFAULT_CONF, **(conf or {})}.items():
        sc.set(k, v)
    t0 = time.monotonic()
    spark = SparkSession.builder.config(conf=sc).getOrCreate()
    log.debug("spark session on %s in %.1fs", spark.sparkContext.master, time.monotonic() - t0)
    return spark


def spark_schema() -> Any:
    """The store's schema as Spark reads its Parquet: unsigned integers one size up (uint64 as
    DECIMAL(20,0)), timestamps, 16-byte addresses as binary."""
    from pyspark.sql import types as T

    def one(t: pa.DataType) -> Any:
        if pa.types.is_timestamp(t):
            return T.TimestampType()
        if pa.types.is_fixed_size_binary(t) or pa.types.is_binary(t):
            return T.BinaryType()
        if pa.types.is_string(t):
            return T.StringType()
        return {
            "uint8": T.ShortType(),
            "uint16": T.IntegerType(),
            "uint32": T.LongType(),
            "uint64": T.DecimalType(20, 0),
            "int32": T.IntegerType(),
            "int64": T.LongType(),
        }[str(t)]

    return T.StructType([T.StructField(f.name, one(f.type), f.nullable) for f in STORE_SCHEMA])


def flows_location(store: str) -> str:
    """The flows directory of a store given as a path or a URL (``s3a://bucket/store``)."""
    return store.rstrip("/") + "/flows"


def read_store(spark: SparkSession, store: str, until: int | None = None) -> DataFrame:
    """The store's flows as a DataFrame with a ``day`` partition column, the day partitions that
    start at or after ``until`` left unread."""
    loc = flows_location(store)
    df = spark.read.schema(spark_schema()).option("basePath", loc).parquet(loc)
    if "day" in df.columns and until is not None:
        last = dt.datetime.fromtimestamp((int(until) - 1) // 1000, tz=dt.UTC).date()
        df = df.where(f"CAST(day AS STRING) <= '{last.isoformat()}'")
    return df


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
    df = read_store(spark, store)
    files = df.inputFiles()
    if not files:
        return out
    out["files"] = len(files)
    out["disk_bytes"] = _sizes(spark, files)
    df.createOrReplaceTempView("flows")
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

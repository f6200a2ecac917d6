"""The hunt's stage context on Spark: the surface of :class:`flowpivot.hunt.context.HuntContext`.

The query stages talk to a context: ``sql`` (a query whose rows come back), ``create_table`` /
``drop_table`` (a stage table kept for the next passes), ``register`` / ``unregister`` (an Arrow
table of anchors or keys), and ``d`` (the dialect, :mod:`flowpivot.engine`). On DuckDB a stage
table is a TEMP TABLE; here it is a temporary view over a materialised DataFrame (checkpointed
locally: computed once, its lineage cut, so later passes do not run the scan again). Arrow tables
become DataFrames (small: broadcast to the executors in the joins that use them). There is no
address index on Spark (``plan`` stays None): the passes scan the window's day partitions, with
Parquet's statistics skipping row groups outside it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from ..engine import SPARK
from .store import SparkStore

__all__ = ["SparkHuntContext", "arrow_for_spark"]

log = logging.getLogger("flowpivot.hunt")

#: What the stages' SQL needs of a session: the standard's "quoted identifiers" (DuckDB's), and UTC.
SQL_CONF = {
    "spark.sql.ansi.enabled": "true",
    "spark.sql.ansi.doubleQuotedIdentifiers": "true",
    "spark.sql.session.timeZone": "UTC",
}


def arrow_for_spark(table: pa.Table) -> pa.Table:
    """Arrow types Spark takes: unsigned integers widened to the next signed type, fixed-size
    binary as binary."""
    widen = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64(), pa.uint64(): pa.int64()}
    fields = []
    for f in table.schema:
        t = widen.get(f.type, f.type)
        if pa.types.is_fixed_size_binary(t):
            t = pa.binary()
        fields.append(pa.field(f.name, t, f.nullable))
    return table.cast(pa.schema(fields))


class _Rows:
    """What ``sql()`` returns: the DuckDB relation methods the stages call, on a Spark DataFrame."""

    def __init__(self, df: Any) -> None:
        self.df = df

    def to_arrow_table(self) -> pa.Table:
        return self.df.toArrow()

    def fetchall(self) -> list[tuple[Any, ...]]:
        t = self.to_arrow_table()
        cols = [t.column(i).to_pylist() for i in range(t.num_columns)]
        return list(zip(*cols, strict=True)) if cols else []

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        t = self.to_arrow_table()
        return {n: t.column(n).to_numpy() for n in t.column_names}


class SparkHuntContext:
    """A Spark session's view of the store for one hunt, with the stage tables the passes share."""

    d = SPARK

    def __init__(self, store: SparkStore, *, owns_session: bool = False) -> None:
        self.store = store
        self.spark = store.spark
        self.plan: Any = None  # no address index on Spark
        self.window_flows = 0
        self._owns = owns_session
        self._views: set[str] = set()
        self._frames: dict[str, Any] = {}
        for k, v in SQL_CONF.items():  # (a session made elsewhere may lack them)
            self.spark.conf.set(k, v)
        store.register("flows")
        self._views.add("flows")

    # ---- the surface the stages use -----------------------------------------------------------------

    def sql(self, query: str) -> _Rows:
        return _Rows(self.spark.sql(query))

    def execute(self, query: str, *args: Any) -> Any:
        if args:
            raise TypeError("Spark SQL statements take no parameters here")
        return self.spark.sql(query)

    def create_table(self, name: str, query: str) -> None:
        """``name``: the query's rows, computed now and kept (a checkpointed temporary view)."""
        df = self.spark.sql(query).localCheckpoint(eager=True)
        self._drop(name)
        df.createOrReplaceTempView(name)
        self._frames[name] = df
        self._views.add(name)

    def insert_into(self, name: str, query: str) -> None:
        """Append the query's rows to the stage table ``name`` (by column name; a view cannot be
        inserted into: the union is checkpointed as the new table)."""
        df = self.spark.table(name).unionByName(self.spark.sql(query)).localCheckpoint(eager=True)
        self._drop(name)
        df.createOrReplaceTempView(name)
        self._frames[name] = df
        self._views.add(name)

    def load_table(self, name: str, table: pa.Table) -> None:
        """``name``: the Arrow ``table`` (a local relation: small, with the size statistics that
        let Spark broadcast it; no job to run)."""
        self._drop(name)
        self.register(name, table)

    def drop_table(self, name: str) -> None:
        self._drop(name)

    def _drop(self, name: str) -> None:
        df = self._frames.pop(name, None)
        if df is not None:
            try:
                df.unpersist()
            except Exception as e:  # pragma: no cover - releasing must not fail the hunt
                log.debug("unpersist %s: %s", name, e)
        self.spark.catalog.dropTempView(name)
        self._views.discard(name)

    def register(self, name: str, table: Any) -> None:
        if isinstance(table, pa.Table):
            df = self.spark.createDataFrame(arrow_for_spark(table))
        else:
            df = table
        df.createOrReplaceTempView(name)
        self._views.add(name)

    def unregister(self, name: str) -> None:
        self._drop(name)

    def use_index(self, plan: Any, window_flows: int) -> None:
        self.plan = None  # (an index plan is DuckDB's acceleration; Spark scans)
        self.window_flows = int(window_flows)

    def narrow(self, since_ms: int, until_ms: int) -> None:
        """Read only the day partitions the window overlaps from now on."""
        self.store.register("flows", since_ms, until_ms)

    def close(self) -> None:
        """Drop the views; stop the session when this context made it. Safe to call twice."""
        for name in list(self._views):
            try:
                self._drop(name)
            except Exception as e:  # pragma: no cover
                log.debug("dropping %s: %s", name, e)
        if self._owns and self.spark is not None:
            self.spark.stop()
        self.spark = None

    def __enter__(self) -> SparkHuntContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_context(store: Any, master: str | None, conf: Any, spark: Any = None) -> SparkHuntContext:
    """A hunt's Spark context over ``store`` (a :class:`flowpivot.store.Store`, a path or a Hadoop
    URL), on the session ``spark`` or a new one on ``master`` with ``conf``."""
    from .session import spark_session

    session = spark if spark is not None else spark_session(master, conf)
    root = getattr(store, "root", store)
    st = SparkStore(session, str(root))
    if not st.exists():
        from ..store.check import NotAStoreError

        raise NotAStoreError(f"no flow store at {st.root} (no flows/ in it)")
    return SparkHuntContext(st, owns_session=False)

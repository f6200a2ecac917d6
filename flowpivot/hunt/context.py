"""What one hunt holds open: the DuckDB connection, its spill directory, the address-index plan.

:class:`HuntContext` owns them and releases them on every exit path (an error, Ctrl-C, a normal
return): use it as a context manager. The query stages take it where they took a connection
(it forwards ``sql``, ``execute``, ``register`` and ``unregister``) and read the index plan and
the window's flow count from it, so nothing is kept in module globals or in DuckDB variables.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..engine import DUCKDB

if TYPE_CHECKING:
    import duckdb

    from ..store import Store
    from ..store.index import IndexPlan

__all__ = ["HuntContext"]

log = logging.getLogger("flowpivot.hunt")


class HuntContext:
    """A connection to the store for one hunt, with the resources the passes share.

    The DuckDB side of the stage context (:class:`flowpivot.spark.context.SparkHuntContext` is
    the Spark side): stage tables are TEMP TABLEs, Arrow tables are registered as they are.
    """

    #: the SQL dialect the stages write (flowpivot.engine)
    d = DUCKDB

    def __init__(self, store: Store, *, threads: int | None = None, memory_limit: str | None = None) -> None:
        self.store = store
        self.con: duckdb.DuckDBPyConnection = store.connect(threads=threads)
        self.spill: str | None = None
        self.plan: IndexPlan | None = None
        #: Flows that start in the window (what a scan of it reads): the index's cost rule compares with it.
        self.window_flows = 0
        self._registered: set[str] = set()
        try:
            if memory_limit:
                # DuckDB spills its hash tables to disk past this, instead of growing with the store
                self.spill = tempfile.mkdtemp(prefix="flowpivot-hunt-")
                self.con.execute(f"SET memory_limit = '{memory_limit}'")
                self.con.execute(f"SET temp_directory = '{self.spill}'")
        except BaseException:
            self.close()
            raise

    # the connection's surface the query stages use
    def sql(self, query: str) -> Any:
        return self.con.sql(query)

    def execute(self, query: str, *args: Any) -> Any:
        return self.con.execute(query, *args)

    def register(self, name: str, table: Any) -> None:
        self.con.register(name, table)
        self._registered.add(name)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)
        self._registered.discard(name)

    def create_table(self, name: str, query: str) -> None:
        """TEMP TABLE ``name``: the query's rows, kept for the next passes."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {query}")

    def insert_into(self, name: str, query: str) -> None:
        """Append the query's rows to the stage table ``name``."""
        self.con.execute(f"INSERT INTO {name} {query}")

    def load_table(self, name: str, table: Any) -> None:
        """TEMP TABLE ``name``: a copy of the Arrow ``table``."""
        self.register(f"{name}_arrow", table)
        self.create_table(name, f"SELECT * FROM {name}_arrow")
        self.unregister(f"{name}_arrow")

    def drop_table(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")

    def narrow(self, since_ms: int, until_ms: int) -> None:
        """(Spark reads only the window's day partitions from here; DuckDB's scans skip the
        other files by their statistics, and the index knows its own.)"""

    def use_index(self, plan: IndexPlan | None, window_flows: int) -> None:
        """Let the passes look flows up in ``plan`` when that is cheaper than scanning the window."""
        self.plan = plan
        self.window_flows = int(window_flows)

    def close(self) -> None:
        """Release everything; safe to call twice."""
        plan, self.plan = self.plan, None
        if plan is not None:
            try:
                plan.release()
            except Exception as e:  # releasing must not hide the error that brought us here
                log.debug("releasing the index plan: %s", e)
        con = getattr(self, "con", None)
        if con is not None:
            try:
                con.close()
            except Exception as e:
                log.debug("closing the connection: %s", e)
            self.con = None  # type: ignore[assignment]
        if self.spill:
            shutil.rmtree(self.spill, ignore_errors=True)
            self.spill = None

    def __enter__(self) -> HuntContext:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

"""The hunt's window and the population in it, from the store files' footers where they suffice."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from ..sqltext import sql_str
from ..store import DAY_MS, Store, parse_time
from .keys import iso
from .pivot import _window_sql

if TYPE_CHECKING:
    from .context import HuntContext

__all__ = ["start_stats", "window", "window_flows", "population"]

StartStats = list[tuple[Path, list[tuple[int, int, int]] | None]]


def window(con: HuntContext, days: float, since: Any, until: Any, newest: int | None = None) -> tuple[int, int]:
    s = parse_time(since) if isinstance(since, str) else since
    u = parse_time(until) if isinstance(until, str) else until
    if u is None:
        if newest is None:
            row = con.sql(f"SELECT {con.d.epoch_ms('max(start)')} FROM flows").fetchall()[0]
            newest = int(row[0]) if row and row[0] is not None else None
        u = newest if newest is not None else int(time.time() * 1000)
    if s is None:
        s = int(u - float(days) * DAY_MS)
    if s > u:
        raise ValueError(f"the window starts ({iso(s)}) after it ends ({iso(u)})")
    return int(s), int(u)


def start_stats(st: Store) -> tuple[StartStats, int | None]:
    """Per store file, its row groups' (rows, min start, max start) from the Parquet footers (None
    for a file without those statistics), and the newest start (None when any file lacks them)."""
    out: StartStats = []
    newest: int | None = None
    complete = True
    for p in st.files():
        md = pq.ParquetFile(p).metadata
        j = md.schema.to_arrow_schema().get_field_index("start")
        groups: list[tuple[int, int, int]] | None = []
        for i in range(md.num_row_groups):
            s = md.row_group(i).column(j).statistics if j >= 0 else None
            if s is None or not s.has_min_max or groups is None:
                groups = None
                break
            groups.append((md.row_group(i).num_rows, _ms(s.min), _ms(s.max)))
        if groups is None:
            complete = False
        elif groups:
            top = max(g[2] for g in groups)
            newest = top if newest is None else max(newest, top)
        out.append((p, groups))
    return out, newest if complete else None


def _ms(v: Any) -> int:
    """A start statistic (a datetime, naive meaning UTC, or an integer of ms) as ms."""
    if isinstance(v, dt.datetime):
        v = v if v.tzinfo else v.replace(tzinfo=dt.UTC)
        return (v - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    return int(v)


def window_flows(con: HuntContext, since_ms: int, until_ms: int, stats: StartStats) -> int:
    """The flows that start in the window: from the footers for the row groups wholly inside or
    outside it, counted only in the files that straddle an edge."""
    if con.d.spark:
        # one count over the window's day partitions (Spark reads the footers' statistics itself)
        return int(
            con.sql(f"SELECT count(*) FROM flows WHERE {_window_sql(since_ms, until_ms, con.d)}").fetchall()[0][0]
        )
    n, edge = 0, []
    for p, groups in stats:
        if groups is None or any(lo < since_ms <= hi or lo <= until_ms < hi for _, lo, hi in groups):
            edge.append(p)
        else:
            n += sum(rows for rows, lo, hi in groups if lo >= since_ms and hi <= until_ms)
    if edge:
        files = ", ".join(f"'{sql_str(str(p))}'" for p in edge)
        n += con.sql(
            f"SELECT count(*) FROM read_parquet([{files}], hive_partitioning = false, union_by_name = true) WHERE {_window_sql(since_ms, until_ms)}"
        ).fetchall()[0][0]
    return int(n)


def population(st: Any, since_ms: int, until_ms: int, con: Any = None) -> tuple[int, int]:
    """Distinct hosts and host pairs on the UTC days that overlap the window (the hosts of its two
    edge days count whole), from the store files' cached day sketches (:mod:`flowpivot.store.sketch`):
    the same figures whether the hunt reads through the address index or scans, and on Spark
    (a store on object storage has the same sketches computed by Spark, :mod:`flowpivot.spark.sketch`)."""
    from ..store.sketch import population as sketch_population

    first, last = int(since_ms) // DAY_MS, int(until_ms) // DAY_MS
    if not isinstance(st, Store):
        from ..spark.sketch import population as spark_population

        return spark_population(st, first, last, DAY_MS)
    files = [p for p in st.files() if (d := _file_day(p)) is None or first <= d <= last]
    return sketch_population(st.root, files, first, last, DAY_MS)


def _file_day(path: Path) -> int | None:
    """The UTC day number of a store file's partition (``day=YYYY-MM-DD``), None if unnamed."""
    name = path.parent.name
    if not name.startswith("day="):
        return None
    try:
        d = dt.date.fromisoformat(name[4:])
    except ValueError:
        return None
    return (d - dt.date(1970, 1, 1)).days

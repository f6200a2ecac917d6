"""The flow store: a day-partitioned Parquet dataset (zstd, large row groups) queried by DuckDB.

Layout::

    STORE/flows/day=YYYY-MM-DD/<key>.parquet   one file per (input, day); hive partitioning
    STORE/sources/<key>.json                   what each ingested input was, and what it gave
    STORE/collector/                           the live collector's counters

Writes are atomic: a file is written under a hidden temporary name in its partition, fsynced,
and renamed into place. A reader (DuckDB's glob ``*.parquet``) never sees a partial file.
Every writer holds an exclusive ``flock`` on ``STORE/.writers/<id>.lock`` while its temporary
files (``.tmp-<key>-<id>.parquet.partial``) exist; the next writer removes the temporary files
of any writer whose lock nobody holds (it was killed), at once.
Ingesting the same input twice is a no-op, because the key of an input is the hash of its bytes
and a finished input is recorded in ``sources/``.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from ..schema import STORE_SCHEMA

__all__ = ["Store", "StoreWriter", "parse_duration", "parse_time", "DAY_MS", "PARQUET_OPTIONS", "ROW_GROUP_ROWS"]

DAY_MS = 86_400_000
ROW_GROUP_ROWS = 1 << 20
_TMP_PREFIX = ".tmp-"
_TMP_SUFFIX = ".parquet.partial"
_LOCK_DIR = ".writers"
# Times grow within a row group: delta encoding. Everything else repeats a lot (ports, protocols,
# flags, sampling rates, popular addresses): dictionary, which Parquet drops per column chunk
# when it stops paying. Measured in bench/storage.py: 16.8 -> 13.9 bytes/flow.
_DELTA_COLUMNS = {"start": "DELTA_BINARY_PACKED", "end": "DELTA_BINARY_PACKED"}
_DICTIONARY_COLUMNS = [f.name for f in STORE_SCHEMA if f.name not in _DELTA_COLUMNS]
# how every store file is encoded (pyarrow.parquet writer options)
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": _DICTIONARY_COLUMNS,
    "column_encoding": _DELTA_COLUMNS,
    "write_statistics": True,
}


def parse_duration(text: str) -> int:
    """'90d', '12h', '30m', '45s', '2w' -> milliseconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90d, 12h, 30m)")
    unit = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}[m.group(2)]
    return int(float(m.group(1)) * unit)


def parse_time(text: str) -> int:
    """ISO 8601 date or time (UTC unless it says otherwise), or epoch seconds -> ms since epoch."""
    t = text.strip()
    if re.fullmatch(r"\d{9,11}(\.\d+)?", t):
        return int(float(t) * 1000)
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    try:
        d = dt.datetime.fromisoformat(t)
    except ValueError as e:
        raise ValueError(f"not a time: {text!r} (use ISO 8601, e.g. 2024-05-01T12:00:00Z)") from e
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return int(d.timestamp() * 1000)


def _day_name(day_index: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day_index))).isoformat()


@dataclass
class WriteResult:
    key: str
    rows: int = 0
    files: list[str] = field(default_factory=list)
    skipped: bool = False


class StoreWriter:
    """Streams record batches into per-day temporary Parquet files; ``commit()`` makes them visible.

    Rows are buffered per day and written as row groups of up to ``ROW_GROUP_ROWS`` in arrival
    order. Sorting by ``start`` saved no space and cost 40% of the write time (bench/storage.py);
    exporters send flows roughly in time order already, and day partitions prune time windows.
    """

    def __init__(self, store: Store, key: str, info: dict[str, Any] | None = None):
        self.store = store
        self.key = key
        self.info = dict(info or {})
        self.rows = 0
        self._buf: dict[int, list[pa.RecordBatch]] = {}
        self._buf_rows: dict[int, int] = {}
        self._writers: dict[int, tuple[pq.ParquetWriter, Path, Path]] = {}
        self._closed = False
        self._id = ""
        self._lock_fd: int | None = None

    def _hold_lock(self) -> None:
        """Take this writer's lock before its first temporary file exists (see Store.remove_stale_temps)."""
        if self._lock_fd is not None:
            return
        locks = self.store.root / _LOCK_DIR
        locks.mkdir(parents=True, exist_ok=True)
        while True:
            wid = uuid.uuid4().hex[:12]
            path = locks / f"{wid}.lock"
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # a cleaner may have taken and removed the file between open and flock: start again
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._id, self._lock_fd = wid, fd
                return
            os.close(fd)

    def _release_lock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            (self.store.root / _LOCK_DIR / f"{self._id}.lock").unlink(missing_ok=True)
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        if data.num_rows == 0:
            return
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        for batch in batches:
            if batch.schema != STORE_SCHEMA:
                batch = pa.RecordBatch.from_arrays(
                    [batch.column(f.name).cast(f.type) for f in STORE_SCHEMA], schema=STORE_SCHEMA
                )
            start = batch.column("start").cast(pa.int64()).to_numpy(zero_copy_only=False)
            days = np.floor_divide(start, DAY_MS)
            if len(days) and days.min() == days.max():
                self._add(int(days[0]), batch)
                continue
            order = np.argsort(days, kind="stable")
            sorted_days = days[order]
            bounds = np.flatnonzero(np.diff(sorted_days)) + 1
            for idx in np.split(order, bounds):
                self._add(int(days[idx[0]]), batch.take(pa.array(idx)))

    def _add(self, day: int, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        self._buf.setdefault(day, []).append(batch)
        self._buf_rows[day] = self._buf_rows.get(day, 0) + batch.num_rows
        if self._buf_rows[day] >= ROW_GROUP_ROWS:
            self._flush(day)

    def _flush(self, day: int) -> None:
        batches = self._buf.pop(day, [])
        self._buf_rows.pop(day, None)
        if not batches:
            return
        table = pa.Table.from_batches(batches, schema=STORE_SCHEMA)
        w = self._writers.get(day)
        if w is None:
            part = self.store.flows_dir / f"day={_day_name(day)}"
            part.mkdir(parents=True, exist_ok=True)
            final = part / f"{self.key}.parquet"
            self._hold_lock()
            tmp = part / f"{_TMP_PREFIX}{self.key}-{self._id}{_TMP_SUFFIX}"
            writer = pq.ParquetWriter(tmp, STORE_SCHEMA, **PARQUET_OPTIONS)
            w = (writer, tmp, final)
            self._writers[day] = w
        w[0].write_table(table, row_group_size=ROW_GROUP_ROWS)

    def commit(self) -> WriteResult:
        """Finish every day file, fsync, rename into place, then record the source."""
        if self._closed:
            raise StoreError("writer already closed")
        for day in list(self._buf):
            self._flush(day)
        result = WriteResult(self.key, self.rows)
        for _day, (writer, tmp, final) in sorted(self._writers.items()):
            writer.close()
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            result.files.append(str(final))
        for d in {Path(f).parent for f in result.files}:
            _fsync_dir(d)
        self._closed = True
        self._release_lock()
        self.store._record_source(self.key, {**self.info, "rows": self.rows, "files": result.files})
        return result

    def abort(self) -> None:
        """Drop everything written so far; nothing becomes visible."""
        try:
            for writer, tmp, _final in self._writers.values():
                try:
                    writer.close()
                finally:
                    tmp.unlink(missing_ok=True)
        finally:
            self._writers.clear()
            self._buf.clear()
            self._closed = True
            self._release_lock()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Store:
    """A flow store rooted at a directory. Creating the object touches nothing on disk."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.flows_dir = self.root / "flows"
        self.sources_dir = self.root / "sources"

    # ---- writing -----------------------------------------------------------------------------

    def has_source(self, key: str) -> bool:
        return (self.sources_dir / f"{key}.json").exists()

    def source_info(self, key: str) -> dict[str, Any] | None:
        p = self.sources_dir / f"{key}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def _record_source(self, key: str, info: dict[str, Any]) -> None:
        self.sources_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.sources_dir / f"{_TMP_PREFIX}{key}.json"
        tmp.write_text(json.dumps({**info, "key": key, "committed": time.time()}, default=str))
        os.replace(tmp, self.sources_dir / f"{key}.json")

    def writer(self, key: str, info: dict[str, Any] | None = None) -> StoreWriter:
        """A writer for one input. ``key`` must be unique per input (e.g. a content hash)."""
        if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,200}", key) or key.startswith("."):
            raise StoreError(f"invalid store key {key!r}")
        self.remove_stale_temps()
        return StoreWriter(self, key, info)

    def remove_stale_temps(self, older_than_s: float | None = None) -> int:
        """Delete the temporary files of writers that are gone (killed); never visible to readers.

        A writer holds a ``flock`` on ``.writers/<id>.lock`` for as long as its temporary files
        exist, so a temporary file whose writer's lock can be taken (or has no lock file: it was
        left by a version before the locks) belongs to no live writer and is removed at once.
        ``older_than_s`` (optional) spares such files younger than that. Returns how many went.
        """
        cutoff = None if older_than_s is None else time.time() - older_than_s
        n = 0
        dead: dict[str, bool] = {}
        held: list[int] = []
        try:
            temps = list(self.flows_dir.glob(f"day=*/{_TMP_PREFIX}*")) if self.flows_dir.exists() else []
            for p in temps:
                wid = p.name[: -len(_TMP_SUFFIX)].rsplit("-", 1)[-1] if p.name.endswith(_TMP_SUFFIX) else ""
                if wid not in dead:
                    dead[wid] = self._writer_gone(wid, held)
                try:
                    if dead[wid] and (cutoff is None or p.stat().st_mtime < cutoff):
                        p.unlink()
                        n += 1
                except FileNotFoundError:
                    pass
            # lock files of writers killed before they made a temporary file
            locks = self.root / _LOCK_DIR
            for lk in locks.glob("*.lock") if locks.exists() else []:
                if lk.stem not in dead:
                    dead[lk.stem] = self._writer_gone(lk.stem, held)
        finally:
            for fd in held:  # the dead writers' lock files go last, while we hold them
                os.close(fd)
        return n

    def _writer_gone(self, wid: str, held: list[int]) -> bool:
        """True when no live writer holds the lock of writer ``wid`` (its lock file is then removed;
        the descriptor that holds it is appended to ``held`` for the caller to close)."""
        if not wid:
            return True
        path = self.root / _LOCK_DIR / f"{wid}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        path.unlink(missing_ok=True)
        held.append(fd)
        return True

    def write(
        self, batches: Iterable[pa.RecordBatch] | pa.Table, key: str, info: dict[str, Any] | None = None
    ) -> WriteResult:
        """Write one input's flows atomically, unless that input is already in the store."""
        if self.has_source(key):
            return WriteResult(key, skipped=True)
        w = self.writer(key, info)
        try:
            if isinstance(batches, pa.Table):
                w.write(batches)
            else:
                for b in batches:
                    w.write(b)
        except BaseException:
            w.abort()
            raise
        return w.commit()

    # ---- reading -----------------------------------------------------------------------------

    def files(self) -> list[Path]:
        if not self.flows_dir.exists():
            return []
        return sorted(p for p in self.flows_dir.glob("day=*/*.parquet") if not p.name.startswith("."))

    @property
    def glob(self) -> str:
        return str(self.flows_dir / "day=*" / "*.parquet")

    def relation_sql(self) -> str:
        """A DuckDB table expression over the store (an empty one when the store is empty)."""
        if not self.files():
            cols = ", ".join(f'NULL::{_duck_type(f.type)} AS "{f.name}"' for f in STORE_SCHEMA)
            return f"(SELECT {cols} LIMIT 0)"
        return f"read_parquet('{_sql_str(self.glob)}', hive_partitioning = false, union_by_name = true)"

    def connect(
        self, con: duckdb.DuckDBPyConnection | None = None, threads: int | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a ``flows`` view over the store."""
        con = con or duckdb.connect()
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"CREATE OR REPLACE VIEW flows AS SELECT * FROM {self.relation_sql()}")
        return con

    def time_range(self) -> tuple[int, int] | None:
        """(min start, max end) in ms, or None for an empty store."""
        if not self.files():
            return None
        con = self.connect()
        row = con.execute('SELECT epoch_ms(min(start)), epoch_ms(max("end")) FROM flows').fetchone()
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    def query(
        self,
        since: int | None = None,
        until: int | None = None,
        ip: str | None = None,
        port: int | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Flows in store form, filtered; ordered by start."""
        where = filter_sql(since=since, until=until, ip=ip, port=port)
        con = self.connect()
        sql = f"SELECT * FROM flows WHERE {where} ORDER BY start"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return con.sql(sql).to_arrow_table().cast(STORE_SCHEMA)

    def iter_query(self, batch_rows: int = 1 << 18, **filters: Any) -> Iterator[pa.RecordBatch]:
        where = filter_sql(**filters)
        con = self.connect()
        reader = con.sql(f"SELECT * FROM flows WHERE {where} ORDER BY start").to_arrow_reader(batch_rows)
        for b in reader:
            yield pa.RecordBatch.from_arrays(
                [b.column(i).cast(f.type) for i, f in enumerate(STORE_SCHEMA)], schema=STORE_SCHEMA
            )

    def stats(self) -> dict[str, Any]:
        """Flows per day, per exporter and per sampling rate, and bytes on disk."""
        files = self.files()
        out: dict[str, Any] = {
            "store": str(self.root),
            "files": len(files),
            "disk_bytes": sum(p.stat().st_size for p in files),
            "flows": 0,
            "days": [],
            "exporters": [],
            "sampling_rates": [],
        }
        if not files:
            return out
        con = self.connect()
        out["flows"] = con.execute("SELECT count(*) FROM flows").fetchone()[0]  # type: ignore[index]
        out["days"] = [
            {"day": _day_name(d), "flows": n, "files": f}
            for d, n, f in con.execute(
                f"SELECT epoch_ms(start) // {DAY_MS} AS d, count(*), count(DISTINCT filename)"
                " FROM read_parquet(?, filename = true) GROUP BY d ORDER BY d",
                [self.glob],
            ).fetchall()
        ]
        return tally_stats(con, "flows", out)

    # ---- retention ---------------------------------------------------------------------------

    def expire(self, older_than_ms: int, now_ms: int | None = None) -> list[str]:
        """Remove day partitions that end before ``now - older_than``. Returns the days removed."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        cutoff = now_ms - older_than_ms
        removed: list[str] = []
        if not self.flows_dir.exists():
            return removed
        for part in sorted(self.flows_dir.glob("day=*")):
            try:
                day = dt.date.fromisoformat(part.name[4:])
            except ValueError:
                continue
            day_end = (day - dt.date(1970, 1, 1)).days * DAY_MS + DAY_MS
            if day_end <= cutoff:
                trash = self.flows_dir / f"{_TMP_PREFIX}expire-{part.name}-{uuid.uuid4().hex[:6]}"
                os.replace(part, trash)  # one atomic step hides the whole day
                shutil.rmtree(trash, ignore_errors=True)
                # and the day's cached host sketches (flowpivot.store.sketch)
                shutil.rmtree(self.root / "sketches" / part.name, ignore_errors=True)
                # and its sampled record fingerprints (flowpivot.ingest.dedup)
                shutil.rmtree(self.root / "fingerprints" / part.name, ignore_errors=True)
                removed.append(part.name[4:])
        return removed


def tally_sql(relation: str) -> tuple[str, str]:
    """The exporter and sampling-rate tallies of :meth:`Store.stats` as SQL that DuckDB and Spark
    both run; ties in a stable order (exporter, domain), so that the engines give the same list."""
    return (
        f"SELECT exporter, observation_domain, count(*) FROM {relation} GROUP BY exporter, observation_domain"
        " ORDER BY 3 DESC, 1 ASC NULLS LAST, 2 ASC NULLS LAST",
        f"SELECT sampling_rate, count(*) FROM {relation} GROUP BY sampling_rate ORDER BY 1 ASC NULLS LAST",
    )


def tally_stats(con: duckdb.DuckDBPyConnection, relation: str, out: dict[str, Any]) -> dict[str, Any]:
    """The exporter and sampling-rate tallies of :meth:`Store.stats` over ``relation`` (a view or
    table with the store's ``exporter``, ``observation_domain`` and ``sampling_rate``), and the
    bytes per flow; ``out`` holds ``flows`` and ``disk_bytes`` already."""
    exporters, rates = tally_sql(relation)
    out["exporters"] = [
        {"exporter": e, "observation_domain": o, "flows": n} for e, o, n in con.execute(exporters).fetchall()
    ]
    out["sampling_rates"] = [{"sampling_rate": r, "flows": n} for r, n in con.execute(rates).fetchall()]
    if out["flows"]:
        out["bytes_per_flow"] = round(out["disk_bytes"] / out["flows"], 2)
    return out


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_fixed_size_binary(t) or pa.types.is_binary(t):
        return "BLOB"
    if pa.types.is_string(t):
        return "VARCHAR"
    return {
        "uint8": "UTINYINT",
        "uint16": "USMALLINT",
        "uint32": "UINTEGER",
        "uint64": "UBIGINT",
        "int64": "BIGINT",
        "int32": "INTEGER",
    }[str(t)]


def ip_filter_sql(cidr: str, columns: tuple[str, ...] = ("src_addr", "dst_addr")) -> str:
    """SQL that is true when any of the address columns lies in ``cidr`` (an address or a CIDR)."""
    import ipaddress

    net = ipaddress.ip_network(cidr.strip(), strict=False)
    parts = []
    for c in columns:
        if net.version == 4:
            lo, hi = int(net.network_address), int(net.broadcast_address)
            parts.append(f"{c}_v4 = {lo}" if lo == hi else f"{c}_v4 BETWEEN {lo} AND {hi}")
        else:
            lo_b, hi_b = net.network_address.packed.hex(), net.broadcast_address.packed.hex()
            parts.append(f"{c}_v6 BETWEEN from_hex('{lo_b}') AND from_hex('{hi_b}')")
    return "(" + " OR ".join(parts) + ")"


def filter_sql(
    since: int | None = None, until: int | None = None, ip: str | None = None, port: int | None = None
) -> str:
    conds = ["TRUE"]
    if since is not None:
        conds.append(f'"end" >= make_timestamptz({int(since)} * 1000)')
    if until is not None:
        conds.append(f"start < make_timestamptz({int(until)} * 1000)")
    if ip:
        conds.append(ip_filter_sql(ip))
    if port is not None:
        conds.append(f"(src_port = {int(port)} OR dst_port = {int(port)})")
    return " AND ".join(conds)

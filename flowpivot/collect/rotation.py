"""The write stage: rotation windows streamed into the store by write threads, and the commit orders
that close a window on every write thread before its counters are written.

A write thread never gives up. When writing or committing a window fails (a full disk, a record
the store cannot file), that window's rows on this thread are dropped, counted
(``write_failures``, ``flows_write_failed``) and reported as a problem with the reason, and the
next rows open a new window file: later windows are stored as before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import queue
import threading
import time
import uuid
from typing import Any, Protocol

import pyarrow as pa

from ..errors import Problem
from ..store import Store, StoreWriter, WriteResult

__all__ = ["CommitOrder", "WindowWriter", "iso_ms", "STOP"]

log = logging.getLogger("flowpivot.collect")

STOP = object()


def iso_ms(ms: int) -> str:
    d = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclasses.dataclass
class CommitOrder:
    """A window to commit, sent to every write thread; the last one to finish writes the counters."""

    window_start: int
    now_ms: int
    final: bool
    exporters: dict[str, dict[str, Any]]
    remaining: int
    results: list[WriteResult | None] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def done(self, result: WriteResult | None) -> bool:
        with self.lock:
            self.results.append(result)
            self.remaining -= 1
            return self.remaining == 0


class Owner(Protocol):
    """What a write thread needs from its collector."""

    store: Store
    rotate_ms: int
    timing: dict[str, float | int]
    lock: threading.Lock

    def window_info(self, window_start: int) -> dict[str, Any]: ...
    def window_written(self, order: CommitOrder) -> None: ...
    def write_failed(self, window_start: int, rows: int, error: BaseException) -> None: ...
    def report(self, problem: Problem) -> None: ...


def window_key(window_start: int) -> str:
    stamp = dt.datetime.fromtimestamp(window_start / 1000, tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"collect-{stamp}-{uuid.uuid4().hex[:12]}"


class WindowWriter:
    """One write thread: ``("rows", window_start, batch)`` items are written into the open window's
    :class:`StoreWriter`; a ``("commit", order)`` item commits it."""

    def __init__(self, owner: Owner, q: queue.Queue[Any]):
        self.owner = owner
        self.q = q
        self.writer: StoreWriter | None = None
        self.window_start = 0

    def run(self) -> None:
        while (item := self.q.get()) is not STOP:
            if item[0] == "rows":
                self._write(item[1], item[2])
            else:
                self._commit(item[1])
        if self.writer is not None:  # never left open: nothing half-written stays behind
            self.writer.abort()

    def _write(self, window_start: int, batch: pa.RecordBatch | pa.Table) -> None:
        owner = self.owner
        if self.writer is None:
            try:
                self.writer = owner.store.writer(window_key(window_start), owner.window_info(window_start))
            except Exception as e:
                owner.write_failed(window_start, batch.num_rows, e)
                return
            self.window_start = window_start
        t0, c0 = time.perf_counter(), time.thread_time()
        before = self.writer.rows
        try:
            self.writer.write(batch)
        except Exception as e:
            self._fail(e, before + batch.num_rows)
            return
        with owner.lock:
            owner.timing["write_s"] += time.perf_counter() - t0
            owner.timing["write_cpu_s"] += time.thread_time() - c0

    def _commit(self, order: CommitOrder) -> None:
        owner = self.owner
        committed = None
        if self.writer is not None:
            t0 = time.perf_counter()
            self.writer.info["window_end"] = iso_ms(min(order.now_ms, order.window_start + owner.rotate_ms))
            try:
                committed = self.writer.commit()
            except Exception as e:
                self._fail(e, self.writer.rows)
            else:
                self.writer = None
                with owner.lock:
                    owner.timing["commit_s"] += time.perf_counter() - t0
                log.debug("committed %s: %d flows", committed.key, committed.rows)
        if order.done(committed):  # the last write thread to commit this window
            try:
                owner.window_written(order)
            except Exception as e:  # the window is stored; only its counters could not be written
                log.exception("writing the counters failed")
                owner.report(
                    Problem("collector", f"window {iso_ms(order.window_start)}", f"writing stats.json failed: {e}")
                )

    def _fail(self, error: Exception, rows: int) -> None:
        """Drop the open window file of this thread (nothing of it becomes visible), count its rows."""
        writer, self.writer = self.writer, None
        assert writer is not None
        try:
            writer.abort()
        except Exception:
            log.exception("aborting a failed window")
        self.owner.write_failed(self.window_start, rows, error)


def write_problem(listen: str, window_start: int, rows: int, error: BaseException) -> Problem:
    return Problem(
        listen,
        f"window {iso_ms(window_start)}",
        f"writing the window failed, {rows:,} flows not stored: {type(error).__name__}: {error}",
    )

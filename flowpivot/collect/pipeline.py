"""The collector's pipeline: receive threads (one per socket) -> one decode thread -> write threads.

The decode thread decodes each list of datagrams at once (``decode_many``), checks the flow times
against the plausible range (:func:`flowpivot.timerange.check_times`, bounds from the collector's
clock at decode), gathers the flows into batches and hands them to the write threads; at each
window boundary it sends every write thread a commit order (see :mod:`.rotation`).
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from ..errors import FlowpivotError, Problem
from ..store import Store
from .config import CollectorConfig
from .receive import DATAGRAM_OVERHEAD, Listener, _MmsgReader, _reader, _receive, _receive_process, open_socket
from .rotation import STOP, CommitOrder, WindowWriter, iso_ms, write_problem
from .stats import StatsFiles, loss_summary, merge_exporters, totals_of
from .timecheck import TIME_COUNTERS, check_batch_times

__all__ = ["Collector"]

log = logging.getLogger("flowpivot.collect")

RECENT_PROBLEMS_KEPT = 50


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _default_decoder() -> Any:
    from ..decode import FlowDecoder

    return FlowDecoder()


class Collector:
    """A UDP NetFlow/IPFIX/sFlow collector writing rotated windows into a :class:`Store`.

    The constructor only records its configuration: a :class:`CollectorConfig` (``config=``), or
    its fields as keyword arguments (``rotate_ms=60_000``), or both (the keywords win). ``listen``
    is one ``(host, port)`` or a list of them. ``start()`` binds the sockets and starts the
    threads, ``stop()`` drains and commits, ``run()`` does both around a wait.

    ``decoder`` is anything with ``decode_many(list[(bytes, exporter, received_ms)])``,
    ``expire(now_ms)`` (both returning an object with ``batch`` and ``problems``) and a ``stats``
    dict of per-exporter counters; by default a new :class:`flowpivot.decode.FlowDecoder`. A
    decoder with ``ACCEPTS_SOURCE_PORT`` true is given ``(bytes, exporter, received_ms, port)``.
    ``clock_ms`` is the clock of the arrival stamps (in a receive thread), of rotation and of the
    time check (tests freeze it).
    """

    def __init__(
        self,
        store: Store,
        listen: tuple[str, int] | Sequence[tuple[str, int]] | None = None,
        *,
        config: CollectorConfig | None = None,
        decoder: Any | None = None,
        clock_ms: Callable[[], int] = _now_ms,
        **settings: Any,
    ):
        cfg = config or CollectorConfig()
        if listen is not None:
            settings["listen"] = listen
        if settings:
            cfg = cfg.replace(**settings)
        self.config = cfg
        self.store = store
        self.decoder = decoder
        self.clock_ms = clock_ms
        self.listen = cfg.listen[0]
        self.rotate_ms = cfg.rotate_ms
        self.rcvbuf_requested = cfg.rcvbuf
        self.max_backlog_bytes = cfg.max_backlog_bytes
        self.stats_dir = store.root / "collector"
        self._listeners = [Listener(a) for a in cfg.listen]

        self.started_ms: int | None = None
        self.datagrams_received = 0
        self.bytes_received = 0
        self.flows_decoded = 0
        self.flows_stored = 0  # committed to the store
        self.windows_committed = 0
        self.problems_total = 0
        self.counts = dict.fromkeys(
            (
                "out_of_time_range",
                "end_before_start_repaired",
                "write_failures",
                "flows_write_failed",
                "decode_failures",
                "datagrams_decode_failed",
            ),
            0,
        )
        self.recent_problems: collections.deque[Problem] = collections.deque(maxlen=RECENT_PROBLEMS_KEPT)
        self.timing: dict[str, float | int] = {
            "receive_cpu_s": 0.0,
            "decode_s": 0.0,
            "decode_cpu_s": 0.0,
            "write_s": 0.0,
            "write_cpu_s": 0.0,
            "commit_s": 0.0,
            "wait_writer_s": 0.0,
            "max_queue_chunks": 0,
            "backlog_waits": 0,
            "max_backlog_bytes_seen": 0,
        }
        self.error: BaseException | None = None
        self.lock = threading.Lock()  # counters shared between threads

        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._decode_thread: threading.Thread | None = None
        self._write_threads: list[threading.Thread] = []
        self._write_queues: list[queue.Queue[Any]] = [
            queue.Queue(maxsize=cfg.write_queue_batches) for _ in range(cfg.writers)
        ]
        self._next_writer = 0
        self._backlog = 0  # bytes (with overhead) of datagrams received and not yet decoded
        self._backlog_cond = threading.Condition()
        self._decode_done = threading.Event()
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._window_start = 0
        self._last_expire_ms = 0
        self._recv_cpu: dict[int, float] = {}
        self._exporter_counts: dict[str, dict[str, int]] = {}
        self._stats_files = StatsFiles(self.stats_dir)
        self._stats_lock = threading.Lock()

    # ---- the first socket, as before there could be several -------------------------------------

    @property
    def address(self) -> tuple[str, int] | None:
        return self._listeners[0].address

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [x.address for x in self._listeners if x.address is not None]

    @property
    def rcvbuf_effective(self) -> int | None:
        return self._listeners[0].rcvbuf_effective

    @property
    def receive_call(self) -> str:
        return self._listeners[0].receive_call

    @property
    def _sock(self) -> socket.socket | None:
        return self._listeners[0].sock

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped on all the sockets (None where it cannot tell)."""
        drops = [x.drops() for x in self._listeners]
        known = [d for d in drops if d is not None]
        return sum(known) if known else None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Bind the sockets and start receiving. Returns the first bound (host, port)."""
        if self._listeners[0].sock is not None:
            raise FlowpivotError("collector already started")
        cfg = self.config
        if self.decoder is None:
            self.decoder = _default_decoder()
        with_port = bool(getattr(self.decoder, "ACCEPTS_SOURCE_PORT", False))
        if hasattr(self.decoder, "time_range"):  # a decoder that checks flow times itself uses the same range
            self.decoder.time_range = cfg.time_range
        if cfg.switch_interval_s:
            sys.setswitchinterval(cfg.switch_interval_s)
        try:
            for lst in self._listeners:
                lst.sock, lst.rcvbuf_effective = open_socket(*lst.want, cfg.rcvbuf)
                lst.address = lst.sock.getsockname()[:2]
        except BaseException:
            for lst in self._listeners:
                if lst.sock is not None:
                    lst.sock.close()
                    lst.sock = None
            raise
        self.started_ms = self.clock_ms()
        self._open_window(self.started_ms)
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        for i, lst in enumerate(self._listeners):
            if cfg.receive_process:
                ctx = multiprocessing.get_context("spawn")
                lst.conn, child_end = ctx.Pipe(duplex=False)
                lst.child_stop = ctx.Event()
                lst.child = ctx.Process(
                    target=_receive_process,
                    args=(
                        lst.sock,
                        child_end,
                        lst.child_stop,
                        cfg.chunk_datagrams,
                        cfg.chunk_ms,
                        cfg.drain_timeout_s,
                        cfg.use_recvmmsg,
                        cfg.max_backlog_bytes,
                        with_port,
                    ),
                    name=f"flowpivot-receive-{i}",
                    daemon=True,
                )
                lst.child.start()
                child_end.close()
            lst.thread = threading.Thread(
                target=self._recv_loop, args=(lst, with_port), name=f"flowpivot-recv-{i}", daemon=True
            )
        self._decode_thread = threading.Thread(target=self._decode_loop, name="flowpivot-decode", daemon=True)
        self._write_threads = [
            threading.Thread(target=WindowWriter(self, q).run, name=f"flowpivot-write-{i}", daemon=True)
            for i, q in enumerate(self._write_queues)
        ]
        for t in self._write_threads:
            t.start()
        self._decode_thread.start()
        for lst in self._listeners:
            assert lst.thread is not None
            lst.thread.start()
            log.debug("listening on %s", lst.text())
        assert self.address is not None
        return self.address

    def stop(self) -> None:
        """Stop receiving, drain the sockets, decode and commit everything, write the counters."""
        if self._listeners[0].sock is None or self._stopped.is_set():
            return
        self._stopping.set()
        for lst in self._listeners:
            if lst.child_stop is not None:
                lst.child_stop.set()
        for lst in self._listeners:
            if lst.thread:
                lst.thread.join()
            if lst.child is not None:
                lst.child.join(timeout=30)
                if lst.child.is_alive():
                    lst.child.kill()
                    lst.child.join()
                lst.conn.close()
        if self._decode_thread:
            self._decode_thread.join()
        for t in self._write_threads:
            t.join()
        for lst in self._listeners:
            lst.drops()
            assert lst.sock is not None
            lst.sock.close()
        self._stopped.set()
        if self.error is not None:
            raise FlowpivotError(f"collector failed: {self.error}") from self.error

    def run(self, stop: threading.Event, tick: Callable[[Collector], None] | None = None, tick_s: float = 1.0) -> None:
        """Start, call ``tick`` about every ``tick_s`` until ``stop`` is set (or a thread fails), then stop."""
        self.start()
        try:
            while not stop.wait(tick_s):
                if tick:
                    tick(self)
                if not self.alive():
                    break
        finally:
            self.stop()
            if tick:
                tick(self)

    def alive(self) -> bool:
        """True while every thread (and receive process, if any) runs."""
        threads = [lst.thread for lst in self._listeners] + [self._decode_thread, *self._write_threads]
        ok = all(t is not None and t.is_alive() for t in threads)
        return ok and all(lst.child is None or lst.child.is_alive() for lst in self._listeners)

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- receive threads ---------------------------------------------------------------------

    def _recv_loop(self, lst: Listener, with_port: bool) -> None:
        """A receive thread: read its socket here, or the pipe from its receive process."""
        sock = lst.sock
        assert sock is not None
        cfg = self.config
        try:
            if lst.child is not None:
                self._pipe_loop(lst)
            else:
                read = _reader(sock, cfg.use_recvmmsg)
                lst.receive_call = "recvmmsg" if isinstance(read, _MmsgReader) else "recvfrom"
                _receive(
                    sock,
                    read,
                    self._hand_to_decoder,
                    self._stopping.is_set,
                    cfg.chunk_datagrams,
                    cfg.chunk_ms,
                    cfg.drain_timeout_s,
                    with_port,
                    None if self.clock_ms is _now_ms else self.clock_ms,
                )
        except BaseException as e:  # pragma: no cover - reported by stop()
            self.error = e
            log.exception("receive thread failed")
        finally:
            self._queue.put(STOP)

    def _pipe_loop(self, lst: Listener) -> None:
        conn = lst.conn
        assert conn is not None
        while True:
            try:
                item = conn.recv()
            except EOFError:
                lst.child.join(timeout=10)
                if lst.child.exitcode != 0:
                    raise FlowpivotError(f"receive process ended with exit code {lst.child.exitcode}") from None
                return
            if item is None:
                return
            if item[0] == "ready":
                lst.receive_call = f"{item[1]} in a receive process"
                continue
            if item[0] == "error":
                raise FlowpivotError(f"receive process failed: {item[1]}")
            self._hand_to_decoder(item[1], item[2])

    def _hand_to_decoder(self, datagrams: list[tuple[Any, ...]], nbytes: int, wait: bool = True) -> None:
        """Queue a list for the decoder; while the backlog is over its bound, stop reading the socket
        (the kernel buffer fills, and what it drops is counted in kernel_drops) rather than grow without limit."""
        cost = nbytes + DATAGRAM_OVERHEAD * len(datagrams)
        self._queue.put((datagrams, cost))
        with self.lock:
            self._recv_cpu[threading.get_ident()] = time.thread_time()  # this thread's CPU time so far
            self.timing["receive_cpu_s"] = sum(self._recv_cpu.values())
            self.datagrams_received += len(datagrams)
            self.bytes_received += nbytes
        with self._backlog_cond:
            self._backlog += cost
            if self._backlog > self.timing["max_backlog_bytes_seen"]:
                self.timing["max_backlog_bytes_seen"] = self._backlog
            while wait and self._backlog > self.max_backlog_bytes and not self._decode_done.is_set():
                self.timing["backlog_waits"] += 1
                self._backlog_cond.wait(0.1)

    # ---- decode thread -----------------------------------------------------------------------

    def _decode_loop(self) -> None:
        get = self._queue.get
        decoder = self.decoder
        assert decoder is not None
        cfg = self.config
        receivers = len(self._listeners)
        try:
            while True:
                try:
                    item = get(timeout=0.25)
                except queue.Empty:
                    item = None
                if item is STOP:
                    receivers -= 1
                    if receivers == 0:
                        break
                    continue
                if item:
                    datagrams, cost = item
                    q = self._queue.qsize()
                    if q > self.timing["max_queue_chunks"]:
                        self.timing["max_queue_chunks"] = q
                    self._decode(datagrams)
                    with self._backlog_cond:
                        self._backlog -= cost
                        self._backlog_cond.notify_all()
                now = self.clock_ms()
                if now - self._last_expire_ms >= cfg.expire_every_ms:
                    self._last_expire_ms = now
                    self._take(decoder.expire(now), now)
                if now >= self._window_start + self.rotate_ms:
                    self._rotate(now)
        except BaseException as e:
            self.error = e
            log.exception("decode thread failed")
            self._stopping.set()  # the receive threads drain and end; nothing reads their queue any more
        finally:
            self._decode_done.set()
            with self._backlog_cond:
                self._backlog_cond.notify_all()
            try:
                if self.error is None:
                    # data still waiting for a template can never be decoded now: count it as lost
                    now = self.clock_ms()
                    self._take(decoder.expire(now + (1 << 40)), now)
            except Exception:
                log.exception("expiring held data at exit failed")
            try:  # what was decoded is committed even when the decoder failed
                self._rotate(self.clock_ms(), final=True)
            finally:
                for wq in self._write_queues:
                    wq.put(STOP)

    def _decode(self, datagrams: list[tuple[Any, ...]]) -> None:
        """Decode one list; a decoder that raises loses this list only (counted), never the collector."""
        t0, c0 = time.perf_counter(), time.thread_time()
        assert self.decoder is not None
        try:
            result = self.decoder.decode_many(datagrams)
        except Exception as e:
            log.exception("decoder failed on %d datagrams", len(datagrams))
            sources = sorted({d[1] for d in datagrams})
            problem = Problem(
                ", ".join(sources[:5]) + (" ..." if len(sources) > 5 else ""),
                f"{len(datagrams)} datagrams received {iso_ms(datagrams[0][2])} .. {iso_ms(datagrams[-1][2])}",
                f"the decoder failed, the datagrams are lost: {type(e).__name__}: {e}",
            )
            with self.lock:
                self.counts["decode_failures"] += 1
                self.counts["datagrams_decode_failed"] += len(datagrams)
                self.problems_total += 1
                self.recent_problems.append(problem)
            return
        finally:
            self.timing["decode_s"] += time.perf_counter() - t0
            self.timing["decode_cpu_s"] += time.thread_time() - c0
        self._take(result, self.clock_ms())

    def _check_times(self, batch: pa.RecordBatch, now_ms: int) -> pa.RecordBatch:
        """Leave out (count, report) records dated outside the plausible range; repair end < start."""
        kept, found = check_batch_times(batch, self.config.time_range, now_ms, RECENT_PROBLEMS_KEPT)
        if found.rejected or found.repaired:
            with self.lock:
                self.counts["out_of_time_range"] += found.rejected
                self.counts["end_before_start_repaired"] += found.repaired
                self.problems_total += found.rejected
                self.recent_problems.extend(found.problems)
                for name, c in found.per_exporter.items():
                    mine = self._exporter_counts.setdefault(name, dict.fromkeys(TIME_COUNTERS, 0))
                    for k, v in c.items():
                        mine[k] += v
            if found.rejected:
                log.warning("%d flow records not stored: %s", found.rejected, found.problems[0])
        return kept

    def _take(self, result: Any, now_ms: int) -> None:
        problems = result.problems
        if problems:
            with self.lock:
                self.problems_total += len(problems)
                self.recent_problems.extend(problems[-RECENT_PROBLEMS_KEPT:])
            for p in problems[:3]:
                log.debug("bad datagram: %s", p)
        batch: pa.RecordBatch | None = result.batch
        if batch is None or batch.num_rows == 0:
            return
        batch = self._check_times(batch, now_ms)
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.flows_decoded += batch.num_rows
        if self._pending_rows >= self.config.write_rows:
            self._hand_over()

    def _hand_over(self) -> None:
        """Give the decoded rows to the next write thread (as a table of the batches: no copy)."""
        if not self._pending:
            return
        batch = self._pending[0] if len(self._pending) == 1 else pa.Table.from_batches(self._pending)
        self._pending, self._pending_rows = [], 0
        t0 = time.perf_counter()
        q = self._write_queues[self._next_writer]
        self._next_writer = (self._next_writer + 1) % len(self._write_queues)
        q.put(("rows", self._window_start, batch))
        self.timing["wait_writer_s"] += time.perf_counter() - t0

    def _open_window(self, now_ms: int) -> None:
        self._window_start = now_ms - now_ms % self.rotate_ms

    def _rotate(self, now_ms: int, final: bool = False) -> None:
        self._hand_over()
        order = CommitOrder(self._window_start, now_ms, final, self.exporters(), remaining=len(self._write_queues))
        for q in self._write_queues:
            q.put(("commit", order))
        self._open_window(now_ms)

    # ---- called by the write threads (rotation.Owner) -----------------------------------------

    def window_info(self, window_start: int) -> dict[str, Any]:
        return {"format": "collector", "listen": self._listen_text(), "window_start": iso_ms(window_start)}

    def window_written(self, order: CommitOrder) -> None:
        results = [r for r in order.results if r is not None]
        with self._stats_lock:
            with self.lock:
                self.flows_stored += sum(r.rows for r in results)
                if results:
                    self.windows_committed += 1
            self._stats_files.write(
                self.snapshot(), order.window_start, order.now_ms, results, order.final, order.exporters
            )

    def report(self, problem: Problem) -> None:
        with self.lock:
            self.problems_total += 1
            self.recent_problems.append(problem)

    def write_failed(self, window_start: int, rows: int, error: BaseException) -> None:
        problem = write_problem(self._listen_text(), window_start, rows, error)
        log.error("%s", problem)
        with self.lock:
            self.counts["write_failures"] += 1
            self.counts["flows_write_failed"] += rows
            self.problems_total += 1
            self.recent_problems.append(problem)

    # ---- counters ----------------------------------------------------------------------------

    def _listen_text(self) -> str:
        return ", ".join(lst.text() for lst in self._listeners)

    def exporters(self) -> dict[str, dict[str, Any]]:
        """Per-exporter counters: the decoder's (datagrams, flows, malformed, lost_seq, ...) and the
        time check's (out_of_time_range, end_before_start_repaired), see :func:`.stats.merge_exporters`."""
        with self.lock:
            extra = {k: dict(v) for k, v in self._exporter_counts.items()}
        return merge_exporters(getattr(self.decoder, "stats", None) or {}, extra)

    def snapshot(self) -> dict[str, Any]:
        """Everything the live display and stats.json show."""
        now = self.clock_ms()
        exporters = self.exporters()
        totals = totals_of(exporters)
        drops = self.kernel_drops()
        with self.lock:
            recent = [p.as_dict() for p in list(self.recent_problems)[-10:]]
            counts = dict(self.counts)
        return {
            "listen": self._listen_text(),
            "sockets": [
                {
                    "listen": lst.text(),
                    "rcvbuf_effective": lst.rcvbuf_effective,
                    "kernel_drops": lst.last_drops,
                    "receive_call": lst.receive_call,
                }
                for lst in self._listeners
            ],
            "started": iso_ms(self.started_ms) if self.started_ms else None,
            "updated": iso_ms(now),
            "uptime_s": round((now - self.started_ms) / 1000, 3) if self.started_ms else 0,
            "rotate_s": self.rotate_ms / 1000,
            "rcvbuf_requested": self.rcvbuf_requested,
            "rcvbuf_effective": self.rcvbuf_effective,
            "receive_call": self.receive_call,
            "kernel_drops": drops,
            "datagrams_received": self.datagrams_received,
            "bytes_received": self.bytes_received,
            "flows_decoded": self.flows_decoded,
            "flows_stored": self.flows_stored,
            "windows_committed": self.windows_committed,
            "problems": self.problems_total,
            **counts,
            "out_of_time_range": totals.get("out_of_time_range", 0),
            "end_before_start_repaired": totals.get("end_before_start_repaired", 0),
            "loss": loss_summary(drops, totals, counts),
            "totals": totals,
            "exporters": exporters,
            "timing": {k: round(v, 3) if isinstance(v, float) else v for k, v in self.timing.items()},
            "recent_problems": recent,
        }

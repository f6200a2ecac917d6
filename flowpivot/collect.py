"""The live collector, flowpivot's only socket: NetFlow v5/v9 and IPFIX (RFC 3954, RFC 7011) over UDP.

Three threads form a pipeline. The receive thread does nothing but read the socket (a large
receive buffer; ``recvmmsg`` for 64 datagrams per system call where Linux has it), stamping each
datagram with its arrival time and handing lists of them to the decode thread (optionally it is
a separate process). The decode thread decodes a whole list at once (``decode_many``) and
gathers the flows into batches of a row group (a million rows). The write thread (or several)
streams those into the open rotation window of the store; Parquet encoding runs there, outside
the GIL, while the next datagrams are decoded. Every ``rotate_ms`` (5 minutes by default, aligned to the clock
like nfcapd's files) the window is committed to the store under unique keys, and the counters
are written to ``STORE/collector/stats.json`` and appended to ``STORE/collector/stats.jsonl``.

``stop()`` stops receiving, drains what the kernel had already buffered, decodes and commits
it, and writes the counters: a SIGTERM loses nothing that reached the socket.

    collector = Collector(Store("flows"), listen=("127.0.0.1", 2055))
    collector.start()
    ...
    collector.stop()
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import datetime as dt
import errno
import json
import logging
import multiprocessing
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import FlowpivotError, Problem
from .store import ROW_GROUP_ROWS, Store, StoreWriter

__all__ = [
    "Collector",
    "parse_listen",
    "kernel_drops",
    "udp_queue",
    "stats_path",
    "DEFAULT_LISTEN",
    "DEFAULT_ROTATE_MS",
    "DEFAULT_RCVBUF",
]

log = logging.getLogger("flowpivot.collect")

DEFAULT_LISTEN = ("127.0.0.1", 2055)
DEFAULT_ROTATE_MS = 300_000
DEFAULT_RCVBUF = 64 << 20
MAX_DATAGRAM = 65_535
# SO_RCVBUFFORCE (Linux) lets a process with CAP_NET_ADMIN go past net.core.rmem_max.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_STOP = object()
RECENT_PROBLEMS_KEPT = 50
DRAIN_QUIET_S = 0.2  # at stop, the socket counts as drained after this long without a datagram
# Decoder counters that are levels, not running totals: stats.jsonl shows their value, not a difference.
GAUGES = frozenset({"pending"})


def parse_listen(text: str, default_port: int = DEFAULT_LISTEN[1]) -> tuple[str, int]:
    """'127.0.0.1:2055', '[::1]:2055', '::1', '0.0.0.0', ':9995' -> (host, port)."""
    t = text.strip()
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif t.count(":") == 1:
        host, port = t.split(":")
    else:  # a bare IPv4 address, a name, or a bare IPv6 address
        host, port = t, ""
    host = host or DEFAULT_LISTEN[0]
    try:
        p = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"not a listen address: {text!r} (use HOST:PORT, e.g. 127.0.0.1:2055 or [::1]:2055)") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host, p


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int) -> str:
    d = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _stats_dict(s: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(s) and not isinstance(s, type):
        return dataclasses.asdict(s)
    if isinstance(s, dict):
        return dict(s)
    return {k: v for k, v in vars(s).items() if not k.startswith("_")}


def _udp_socket_rows() -> Iterator[list[str]]:
    """The rows of /proc/net/udp and /proc/net/udp6, split into columns (Linux)."""
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name) as fh:
                next(fh)
                rows = [line.split() for line in fh]
        except (OSError, StopIteration):
            continue
        yield from rows


def kernel_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for this socket (receive buffer full), from /proc/net/udp{,6}."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
    except OSError:
        return None
    for parts in _udp_socket_rows():
        if len(parts) >= 13 and parts[9] == str(inode):
            try:
                return int(parts[12])
            except ValueError:
                return None
    return None


def udp_queue(port: int) -> int | None:
    """Bytes waiting in the receive queue of the UDP socket bound to ``port``; None when none is bound."""
    for parts in _udp_socket_rows():
        if len(parts) >= 5 and parts[1].endswith(f":{port:04X}"):
            return int(parts[4].split(":")[1], 16)
    return None


def _default_decoder() -> Any:
    from .decode import FlowDecoder

    return FlowDecoder()


def _exporter_name(host: str) -> str:
    return host[7:] if host.startswith("::ffff:") else host


def _reader(sock: socket.socket, use_recvmmsg: bool = True) -> Callable[[], tuple[list[bytes], str | list[str]]]:
    """A function returning the next datagrams waiting on a non-blocking socket and their exporters
    (one name for all of them, or one per datagram); it raises BlockingIOError when there are none."""
    if use_recvmmsg:
        try:
            return _MmsgReader(sock)
        except (OSError, AttributeError):
            pass
    recvfrom = sock.recvfrom

    def read_one() -> tuple[list[bytes], str]:
        data, addr = recvfrom(MAX_DATAGRAM)
        return [data], _exporter_name(addr[0])

    return read_one


class _iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _msghdr), ("msg_len", ctypes.c_uint)]


class _MmsgReader:
    """Linux recvmmsg(2) through ctypes: up to ``vlen`` datagrams per system call.

    Python's socket module reads one datagram per call, and each call gives up and takes back
    the GIL, which the decode thread is holding much of the time; one call per 64 datagrams
    leaves the receive thread far fewer waits for the GIL.
    """

    SLOT = 1 << 16  # the largest UDP payload fits
    NAME = 128  # sizeof(struct sockaddr_storage)

    def __init__(self, sock: socket.socket, vlen: int = 64):
        if not sys.platform.startswith("linux"):
            raise OSError("recvmmsg is Linux only")
        libc = ctypes.CDLL(None, use_errno=True)
        self._recvmmsg = libc.recvmmsg
        self._recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_mmsghdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
        self._recvmmsg.restype = ctypes.c_int
        self.fd = sock.fileno()
        self.vlen = vlen
        self.buf = ctypes.create_string_buffer(self.SLOT * vlen)
        self.names = ctypes.create_string_buffer(self.NAME * vlen)
        self.iov = (_iovec * vlen)()
        self.msgs = (_mmsghdr * vlen)()
        base, nbase = ctypes.addressof(self.buf), ctypes.addressof(self.names)
        for i in range(vlen):
            self.iov[i].iov_base = base + i * self.SLOT
            self.iov[i].iov_len = self.SLOT
            h = self.msgs[i].msg_hdr
            h.msg_iov = ctypes.pointer(self.iov[i])
            h.msg_iovlen = 1
            h.msg_name = nbase + i * self.NAME
        self.view = memoryview(self.buf).cast("B")
        self.name_view = memoryview(self.names).cast("B")
        self.name_rows = np.frombuffer(self.names, dtype=np.uint8).reshape(vlen, self.NAME)  # type: ignore[call-overload]  # ctypes arrays export the buffer protocol
        # struct mmsghdr as 16 uint32 words: msg_namelen is word 2, msg_len word 14
        assert ctypes.sizeof(_mmsghdr) == 64 and _mmsghdr.msg_len.offset == 56 and _msghdr.msg_namelen.offset == 8
        self.u32 = np.frombuffer(self.msgs, dtype=np.uint32).reshape(vlen, 16)  # type: ignore[call-overload]
        self.u32[:, 2] = self.NAME
        self.last_n = 0
        self.offsets = range(0, self.SLOT * vlen, self.SLOT)
        self.hosts: dict[bytes, str] = {}
        self.flags = getattr(socket, "MSG_DONTWAIT", 0x40)

    def __call__(self) -> tuple[list[bytes], str | list[str]]:
        u32 = self.u32
        if self.last_n:  # the kernel set the name lengths of the slots it filled
            u32[: self.last_n, 2] = self.NAME
        n = self._recvmmsg(self.fd, self.msgs, self.vlen, self.flags, None)
        if n < 0:
            self.last_n = 0
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise BlockingIOError(err, os.strerror(err))
            if err == errno.EINTR:
                raise InterruptedError(err, os.strerror(err))
            raise OSError(err, os.strerror(err))
        self.last_n = n
        view = self.view
        datas = [bytes(view[o : o + m]) for o, m in zip(self.offsets[:n], u32[:n, 14].tolist(), strict=True)]
        names = self.name_rows
        # usually every datagram of a call comes from one exporter: compare the address bytes
        # (family, port, address) of all slots with the first one's at once
        width = 8 if int.from_bytes(names[0, :2].tobytes(), sys.byteorder) == socket.AF_INET else 24
        if n == 1 or bool((names[1:n, :width] == names[0, :width]).all()):
            return datas, self._host(0)
        return datas, [self._host(i) for i in range(n)]

    def _host(self, i: int) -> str:
        names = self.name_view
        off = i * self.NAME
        family = int.from_bytes(names[off : off + 2], sys.byteorder)
        key = bytes(names[off + 4 : off + 8]) if family == socket.AF_INET else bytes(names[off + 8 : off + 24])
        host = self.hosts.get(key)
        if host is None:
            fam = socket.AF_INET if family == socket.AF_INET else socket.AF_INET6
            host = _exporter_name(socket.inet_ntop(fam, key))
            if len(self.hosts) < 100_000:
                self.hosts[key] = host
        return host


def _receive(
    sock: socket.socket,
    read: Callable[[], tuple[list[bytes], str | list[str]]],
    emit: Callable[[list[tuple[bytes, str, int]], int], None],
    stopping: Callable[[], bool],
    chunk_n: int,
    chunk_ms: int,
    drain_timeout_s: float,
) -> None:
    """Read datagrams until ``stopping()`` and the socket is empty; hand them on in lists via ``emit``."""
    now_ns = time.time_ns
    chunk_ns = chunk_ms * 1_000_000
    pending: list[tuple[bytes, str, int]] = []
    first_ns = 0
    nbytes = 0
    drain_deadline: float | None = None
    try:
        while True:
            try:
                got = read()
            except BlockingIOError:
                if pending:
                    emit(pending, nbytes)
                    pending, nbytes = [], 0
                if stopping():
                    # Empty now. A datagram sent just before the stop can still be on its way
                    # through the kernel (loopback delivery runs in a softirq, deferred under
                    # load), so it is drained only after a quiet moment.
                    if select.select([sock], [], [], DRAIN_QUIET_S)[0]:
                        continue
                    break
                select.select([sock], [], [], 0.1)
                continue
            except InterruptedError:
                continue
            except OSError as e:  # e.g. ICMP errors reported on the socket; never fatal
                log.debug("receive: %s", e)
                continue
            t = now_ns()
            ms = t // 1_000_000
            if not pending:
                first_ns = t
            datas, hosts = got
            if isinstance(hosts, str):
                pending.extend([(d, hosts, ms) for d in datas])
            else:
                pending.extend([(d, h, ms) for d, h in zip(datas, hosts, strict=True)])
            nbytes += sum(map(len, datas))
            if len(pending) >= chunk_n or t - first_ns >= chunk_ns:
                emit(pending, nbytes)
                pending, nbytes = [], 0
                if stopping():
                    if drain_deadline is None:
                        drain_deadline = time.monotonic() + drain_timeout_s
                    elif time.monotonic() > drain_deadline:
                        log.warning("still receiving %.0f s after stop: giving up draining", drain_timeout_s)
                        break
    finally:
        if pending:
            emit(pending, nbytes)


def _receive_process(
    sock: socket.socket,
    conn: Any,
    stop: Any,
    chunk_n: int,
    chunk_ms: int,
    drain_timeout_s: float,
    use_recvmmsg: bool,
    max_backlog_bytes: int,
) -> None:
    """The receive process: read the socket, send lists of (data, exporter, received_ms) down the pipe.

    It has its own GIL, so the decoder never keeps it from the socket. A second thread writes
    to the pipe, so that reading goes on while the collector is slow to take the lists (up to
    ``max_backlog_bytes`` held here). It ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole
    process group): the collector tells it when to stop, and it stops by itself if the collector
    goes away.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    out: queue.SimpleQueue[Any] = queue.SimpleQueue()
    held = [0]
    cond = threading.Condition()
    gone = threading.Event()

    def pipe_writer() -> None:
        try:
            while (item := out.get()) is not None:
                conn.send(item)
                with cond:
                    held[0] -= item[2]
                    cond.notify()
            conn.send(None)
        except (BrokenPipeError, EOFError, OSError):
            gone.set()  # the collector is gone
            with cond:
                cond.notify_all()

    def emit(datagrams: list[tuple[bytes, str, int]], nbytes: int) -> None:
        out.put(("data", datagrams, nbytes))
        with cond:
            held[0] += nbytes
            while held[0] > max_backlog_bytes and not gone.is_set():
                cond.wait(0.1)

    def stopping() -> bool:
        return bool(stop.is_set()) or gone.is_set() or os.getppid() != parent

    writer = threading.Thread(target=pipe_writer, name="flowpivot-pipe", daemon=True)
    writer.start()
    try:
        sock.setblocking(False)
        read = _reader(sock, use_recvmmsg)
        out.put(("ready", "recvmmsg" if isinstance(read, _MmsgReader) else "recvfrom", 0))
        _receive(sock, read, emit, stopping, chunk_n, chunk_ms, drain_timeout_s)
    except BaseException as e:
        out.put(("error", f"{type(e).__name__}: {e}", 0))
        raise
    finally:
        out.put(None)
        writer.join()


@dataclasses.dataclass
class _CommitOrder:
    """A window to commit, sent to every write thread; the last one to finish writes the counters."""

    window_start: int
    now_ms: int
    final: bool
    exporters: dict[str, dict[str, Any]]
    remaining: int
    results: list[Any] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def done(self, result: Any) -> bool:
        with self.lock:
            self.results.append(result)
            self.remaining -= 1
            return self.remaining == 0


class Collector:
    """A UDP NetFlow/IPFIX collector writing rotated windows into a :class:`Store`.

    The constructor only wires the configuration; ``start()`` binds the socket and starts the
    threads, ``stop()`` drains and commits, ``run()`` does both around a wait.

    ``decoder`` is anything with ``decode_many(list[(bytes, exporter, received_ms)])``,
    ``expire(now_ms)`` (both returning an object with ``batch`` and ``problems``) and a ``stats``
    dict of per-exporter counters; by default a new :class:`flowpivot.decode.FlowDecoder`.
    """

    def __init__(
        self,
        store: Store,
        listen: tuple[str, int] = DEFAULT_LISTEN,
        *,
        rotate_ms: int = DEFAULT_ROTATE_MS,
        rcvbuf: int = DEFAULT_RCVBUF,
        decoder: Any | None = None,
        chunk_datagrams: int = 2048,
        chunk_ms: int = 200,
        expire_every_ms: int = 5_000,
        drain_timeout_s: float = 30.0,
        write_rows: int = ROW_GROUP_ROWS,
        write_queue_batches: int = 2,
        writers: int = 1,
        max_backlog_bytes: int = 1 << 30,
        use_recvmmsg: bool = True,
        switch_interval_s: float | None = None,
        receive_process: bool = False,
        clock_ms: Callable[[], int] = _now_ms,
    ):
        if rotate_ms <= 0:
            raise ValueError("rotate interval must be positive")
        if writers < 1:
            raise ValueError("writers must be at least 1")
        self.store = store
        self.listen = listen
        self.rotate_ms = int(rotate_ms)
        self.rcvbuf_requested = int(rcvbuf)
        self.decoder = decoder
        self.chunk_datagrams = chunk_datagrams
        self.chunk_ms = chunk_ms
        self.expire_every_ms = expire_every_ms
        self.drain_timeout_s = drain_timeout_s
        self.write_rows = write_rows
        self.max_backlog_bytes = max_backlog_bytes
        self.use_recvmmsg = use_recvmmsg
        self.switch_interval_s = switch_interval_s
        self.receive_process = receive_process
        self._child: Any = None
        self._conn: Any = None
        self._child_stop: Any = None
        self.receive_call = ""
        self.clock_ms = clock_ms
        self.stats_dir = store.root / "collector"

        self.address: tuple[str, int] | None = None
        self.rcvbuf_effective: int | None = None
        self.started_ms: int | None = None
        self.datagrams_received = 0
        self.bytes_received = 0
        self.flows_stored = 0  # committed to the store
        self.flows_decoded = 0
        self.windows_committed = 0
        self.problems_total = 0
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
        }
        self.error: BaseException | None = None

        self._sock: socket.socket | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._recv_thread: threading.Thread | None = None
        self._decode_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._write_threads: list[threading.Thread] = []
        self._write_queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=write_queue_batches) for _ in range(writers)]
        self._next_writer = 0
        self._backlog = 0  # bytes of datagrams received and not yet decoded
        self._backlog_cond = threading.Condition()
        self._decode_done = threading.Event()
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._window_start = 0
        self._exporters_at_window_start: dict[str, dict[str, Any]] = {}
        self._last_expire_ms = 0

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Bind the socket and start receiving. Returns the bound (host, port)."""
        if self._sock is not None:
            raise FlowpivotError("collector already started")
        if self.decoder is None:
            self.decoder = _default_decoder()
        if self.switch_interval_s:
            sys.setswitchinterval(self.switch_interval_s)
        host, port = self.listen
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as e:
            raise FlowpivotError(f"cannot resolve listen address {host!r}: {e}") from None
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.rcvbuf_effective = self._grow_rcvbuf(sock, self.rcvbuf_requested)
            sock.bind(sockaddr)
        except OSError as e:
            sock.close()
            raise FlowpivotError(f"cannot listen on {host}:{port}: {e}") from None
        sock.setblocking(False)
        self._sock = sock
        self.address = sock.getsockname()[:2]
        self.started_ms = self.clock_ms()
        self._open_window(self.started_ms)
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        if self.receive_process:
            ctx = multiprocessing.get_context("spawn")
            self._conn, child_end = ctx.Pipe(duplex=False)
            self._child_stop = ctx.Event()
            self._child = ctx.Process(
                target=_receive_process,
                args=(
                    sock,
                    child_end,
                    self._child_stop,
                    self.chunk_datagrams,
                    self.chunk_ms,
                    self.drain_timeout_s,
                    self.use_recvmmsg,
                    self.max_backlog_bytes,
                ),
                name="flowpivot-receive",
                daemon=True,
            )
            self._child.start()
            child_end.close()
        self._recv_thread = threading.Thread(target=self._recv_loop, name="flowpivot-recv", daemon=True)
        self._decode_thread = threading.Thread(target=self._decode_loop, name="flowpivot-decode", daemon=True)
        self._write_threads = [
            threading.Thread(target=self._write_loop, args=(q,), name=f"flowpivot-write-{i}", daemon=True)
            for i, q in enumerate(self._write_queues)
        ]
        for t in self._write_threads:
            t.start()
        self._decode_thread.start()
        self._recv_thread.start()
        log.debug("listening on %s:%s", *self.address)
        return self.address

    def stop(self) -> None:
        """Stop receiving, drain the socket, decode and commit everything, write the counters."""
        if self._sock is None or self._stopped.is_set():
            return
        self._stopping.set()
        if self._child_stop is not None:
            self._child_stop.set()
        if self._recv_thread:
            self._recv_thread.join()
        if self._child is not None:
            self._child.join(timeout=30)
            if self._child.is_alive():
                self._child.kill()
                self._child.join()
            self._conn.close()
        if self._decode_thread:
            self._decode_thread.join()
        for t in self._write_threads:
            t.join()
        self._sock.close()
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
        """True while all three threads (and the receive process, if any) run."""
        threads = (self._recv_thread, self._decode_thread, *self._write_threads)
        ok = all(t is not None and t.is_alive() for t in threads)
        return ok and (self._child is None or self._child.is_alive())

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @staticmethod
    def _grow_rcvbuf(sock: socket.socket, want: int) -> int:
        # Linux doubles the value asked (bookkeeping overhead) and reports the doubled size.
        for opt in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, want)
                break
            except OSError:
                continue
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    # ---- receive thread ----------------------------------------------------------------------

    def _recv_loop(self) -> None:
        """Receive thread: read the socket here, or the pipe from the receive process."""
        sock = self._sock
        assert sock is not None
        try:
            if self._child is not None:
                self._pipe_loop()
            else:
                read = _reader(sock, self.use_recvmmsg)
                self.receive_call = "recvmmsg" if isinstance(read, _MmsgReader) else "recvfrom"
                _receive(
                    sock,
                    read,
                    self._hand_to_decoder,
                    self._stopping.is_set,
                    self.chunk_datagrams,
                    self.chunk_ms,
                    self.drain_timeout_s,
                )
        except BaseException as e:  # pragma: no cover - reported by stop()
            self.error = e
            log.exception("receive thread failed")
        finally:
            self._queue.put(_STOP)

    def _pipe_loop(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            try:
                item = conn.recv()
            except EOFError:
                self._child.join(timeout=10)
                if self._child.exitcode != 0:
                    raise FlowpivotError(f"receive process ended with exit code {self._child.exitcode}") from None
                return
            if item is None:
                return
            if item[0] == "ready":
                self.receive_call = f"{item[1]} in a receive process"
                continue
            if item[0] == "error":
                raise FlowpivotError(f"receive process failed: {item[1]}")
            self._hand_to_decoder(item[1], item[2])

    def _hand_to_decoder(self, datagrams: list[tuple[bytes, str, int]], nbytes: int, wait: bool = True) -> None:
        """Queue a list for the decoder; while the backlog is over its bound, stop reading the socket
        (the kernel buffer fills, and what it drops is counted in kernel_drops) rather than grow without limit."""
        self._queue.put((datagrams, nbytes))
        self.timing["receive_cpu_s"] = time.thread_time()  # this thread's CPU time so far
        self.datagrams_received += len(datagrams)
        self.bytes_received += nbytes
        with self._backlog_cond:
            self._backlog += nbytes
            while wait and self._backlog > self.max_backlog_bytes and not self._decode_done.is_set():
                self.timing["backlog_waits"] += 1
                self._backlog_cond.wait(0.1)

    # ---- decode thread -----------------------------------------------------------------------

    def _decode_loop(self) -> None:
        get = self._queue.get
        decoder = self.decoder
        assert decoder is not None
        try:
            while True:
                try:
                    item = get(timeout=0.25)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if item:
                    datagrams, nbytes = item
                    q = self._queue.qsize()
                    if q > self.timing["max_queue_chunks"]:
                        self.timing["max_queue_chunks"] = q
                    t0, c0 = time.perf_counter(), time.thread_time()
                    result = decoder.decode_many(datagrams)
                    self.timing["decode_s"] += time.perf_counter() - t0
                    self.timing["decode_cpu_s"] += time.thread_time() - c0
                    self._take(result)
                    with self._backlog_cond:
                        self._backlog -= nbytes
                        self._backlog_cond.notify()
                now = self.clock_ms()
                if now - self._last_expire_ms >= self.expire_every_ms:
                    self._last_expire_ms = now
                    self._take(decoder.expire(now))
                if now >= self._window_start + self.rotate_ms:
                    self._rotate(now)
        except BaseException as e:
            self.error = e
            log.exception("decode thread failed")
            self._stopping.set()  # the receive thread drains and ends; nothing reads its queue any more
        finally:
            self._decode_done.set()
            with self._backlog_cond:
                self._backlog_cond.notify_all()
            try:
                if self.error is None:
                    # data still waiting for a template can never be decoded now: count it as lost
                    self._take(decoder.expire(self.clock_ms() + (1 << 40)))
            except Exception:
                log.exception("expiring held data at exit failed")
            try:  # what was decoded is committed even when the decoder failed
                self._rotate(self.clock_ms(), final=True)
            finally:
                for wq in self._write_queues:
                    wq.put(_STOP)

    def _take(self, result: Any) -> None:
        problems = result.problems
        if problems:
            with self._lock:
                self.problems_total += len(problems)
                self.recent_problems.extend(problems[-RECENT_PROBLEMS_KEPT:])
            for p in problems[:3]:
                log.debug("bad datagram: %s", p)
        batch: pa.RecordBatch | None = result.batch
        if batch is None or batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.flows_decoded += batch.num_rows
        if self._pending_rows >= self.write_rows:
            self._hand_over()

    def _hand_over(self) -> None:
        """Give the decoded rows to the write thread as one batch (one chunk: the store sorts it fastest)."""
        if not self._pending:
            return
        batch = self._pending[0] if len(self._pending) == 1 else pa.concat_batches(self._pending)
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
        order = _CommitOrder(self._window_start, now_ms, final, self.exporters(), remaining=len(self._write_queues))
        for q in self._write_queues:
            q.put(("commit", order))
        self._open_window(now_ms)

    # ---- write thread ------------------------------------------------------------------------

    def _write_loop(self, q: queue.Queue[Any]) -> None:
        writer: StoreWriter | None = None
        failed = False
        while True:
            item = q.get()
            if item is _STOP:
                break
            try:
                if item[0] == "rows":
                    if failed:
                        continue  # keep emptying the queue so the decode thread never blocks
                    _, window_start, batch = item
                    if writer is None:
                        writer = self.store.writer(self._window_key(window_start), self._window_info(window_start))
                    t0, c0 = time.perf_counter(), time.thread_time()
                    writer.write(batch)
                    with self._lock:
                        self.timing["write_s"] += time.perf_counter() - t0
                        self.timing["write_cpu_s"] += time.thread_time() - c0
                else:
                    order: _CommitOrder = item[1]
                    committed = None
                    if writer is not None and not failed:
                        t0 = time.perf_counter()
                        writer.info["window_end"] = _iso(min(order.now_ms, order.window_start + self.rotate_ms))
                        committed = writer.commit()
                        writer = None
                        with self._lock:
                            self.timing["commit_s"] += time.perf_counter() - t0
                        log.debug("committed %s: %d flows", committed.key, committed.rows)
                    if order.done(committed):  # the last write thread to commit this window
                        results = [r for r in order.results if r is not None]
                        self.flows_stored += sum(r.rows for r in results)
                        if results:
                            self.windows_committed += 1
                        self._write_stats(order.window_start, order.now_ms, results, order.final, order.exporters)
            except BaseException as e:
                failed = True
                self.error = e
                log.exception("write thread failed")
                self._stopping.set()
                if writer is not None:
                    writer.abort()
                    writer = None
                if item[0] == "commit" and item[1].done(None):
                    self._write_stats(item[1].window_start, item[1].now_ms, [], item[1].final, item[1].exporters)

    def _window_key(self, window_start: int) -> str:
        stamp = dt.datetime.fromtimestamp(window_start / 1000, tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"collect-{stamp}-{uuid.uuid4().hex[:12]}"

    def _window_info(self, window_start: int) -> dict[str, Any]:
        host, port = self.address or self.listen
        return {"format": "collector", "listen": f"{host}:{port}", "window_start": _iso(window_start)}

    # ---- counters ----------------------------------------------------------------------------

    def exporters(self) -> dict[str, dict[str, Any]]:
        """Per-exporter counters from the decoder (datagrams, flows, malformed, lost_seq, ...)."""
        stats = getattr(self.decoder, "stats", None) or {}
        try:
            items = list(stats.items())
        except RuntimeError:  # changed size while the decode thread updated it; try once more
            items = list(stats.items())
        return {str(k): _stats_dict(v) for k, v in sorted(items)}

    def snapshot(self) -> dict[str, Any]:
        """Everything the live display and stats.json show."""
        now = self.clock_ms()
        host, port = self.address or self.listen
        exporters = self.exporters()
        totals: dict[str, int] = {}
        for e in exporters.values():
            for k, v in e.items():
                if isinstance(v, int) and not isinstance(v, bool):
                    totals[k] = totals.get(k, 0) + v
        with self._lock:
            recent = [p.as_dict() for p in list(self.recent_problems)[-10:]]
        return {
            "listen": f"{host}:{port}",
            "started": _iso(self.started_ms) if self.started_ms else None,
            "updated": _iso(now),
            "uptime_s": round((now - self.started_ms) / 1000, 3) if self.started_ms else 0,
            "rotate_s": self.rotate_ms / 1000,
            "rcvbuf_requested": self.rcvbuf_requested,
            "rcvbuf_effective": self.rcvbuf_effective,
            "receive_call": self.receive_call,
            "kernel_drops": kernel_drops(self._sock) if self._sock and not self._stopped.is_set() else self._last_drops,
            "datagrams_received": self.datagrams_received,
            "bytes_received": self.bytes_received,
            "flows_decoded": self.flows_decoded,
            "flows_stored": self.flows_stored,
            "windows_committed": self.windows_committed,
            "problems": self.problems_total,
            "totals": totals,
            "exporters": exporters,
            "timing": {k: round(v, 3) if isinstance(v, float) else v for k, v in self.timing.items()},
            "recent_problems": recent,
        }

    _last_drops: int | None = None

    def _write_stats(
        self, window_start: int, now_ms: int, committed: list[Any], final: bool, exporters: dict[str, dict[str, Any]]
    ) -> None:
        if self._sock is not None:
            self._last_drops = kernel_drops(self._sock)
        snap = self.snapshot()
        snap["final"] = final
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.stats_dir / f".tmp-stats-{uuid.uuid4().hex[:8]}.json"
        tmp.write_text(json.dumps(snap, indent=2, default=str) + "\n")
        os.replace(tmp, self.stats_dir / "stats.json")
        delta = {}
        for name, cur in exporters.items():
            before = self._exporters_at_window_start.get(name, {})
            d = {
                k: v if k in GAUGES else v - before.get(k, 0)
                for k, v in cur.items()
                if isinstance(v, int) and not isinstance(v, bool)
            }
            if any(d.values()):
                delta[name] = d
        self._exporters_at_window_start = exporters
        line = {
            "window_start": _iso(window_start),
            "window_end": _iso(now_ms),
            "keys": [c.key for c in committed],
            "flows_stored": sum(c.rows for c in committed),
            "final": final,
            "kernel_drops": snap["kernel_drops"],
            "exporters": delta,
        }
        with open(self.stats_dir / "stats.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")


def stats_path(store_root: str | os.PathLike[str]) -> Path:
    """Where a collector writing into ``store_root`` keeps its counters."""
    return Path(store_root) / "collector" / "stats.json"

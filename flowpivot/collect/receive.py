"""The receive stage: the UDP socket, the kernel's drop counters, a ctypes ``recvmmsg`` binding, and
the loop that reads datagrams and hands them on in lists of ``(data, exporter, received_ms[, port])``.

Nothing here decodes: the receive thread (or process) only reads, stamps each datagram with its
arrival time and names its sender, so that it is back at the socket as soon as possible.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import FlowpivotError
from .config import listen_text

__all__ = ["kernel_drops", "udp_queue", "open_socket", "Reader", "Listener"]

log = logging.getLogger("flowpivot.collect")

MAX_DATAGRAM = 65_535
# SO_RCVBUFFORCE (Linux) lets a process with CAP_NET_ADMIN go past net.core.rmem_max.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
DRAIN_QUIET_S = 0.2  # at stop, the socket counts as drained after this long without a datagram
# What a received datagram costs in memory beyond its bytes: the bytes object's header, the tuple
# and the list slot holding it (measured with sys.getsizeof on CPython 3.12: 33 + 72..80 + 8, and
# an int per arrival time). The backlog bound counts it, so that small datagrams are bounded too.
DATAGRAM_OVERHEAD = 160

# (datagrams, exporter name for all or one per datagram, source port for all or one per datagram)
ReadResult = tuple[list[bytes], str | list[str], int | list[int]]
Reader = Callable[[], ReadResult]


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


def _grow_rcvbuf(sock: socket.socket, want: int) -> int:
    # Linux doubles the value asked (bookkeeping overhead) and reports the doubled size.
    for opt in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, want)
            break
        except OSError:
            continue
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def open_socket(host: str, port: int, rcvbuf: int) -> tuple[socket.socket, int]:
    """A non-blocking UDP socket bound to (host, port) with the receive buffer asked for; returns
    it and the buffer size the kernel reports."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise FlowpivotError(f"cannot resolve listen address {host!r}: {e}") from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        effective = _grow_rcvbuf(sock, rcvbuf)
        sock.bind(sockaddr)
    except OSError as e:
        sock.close()
        raise FlowpivotError(f"cannot listen on {host}:{port}: {e}") from None
    sock.setblocking(False)
    return sock, effective


def _exporter_name(host: str) -> str:
    return host[7:] if host.startswith("::ffff:") else host


def _reader(sock: socket.socket, use_recvmmsg: bool = True) -> Reader:
    """A function returning the next datagrams waiting on a non-blocking socket, their exporters and
    source ports (one for all of them, or one per datagram); it raises BlockingIOError when there
    are none."""
    if use_recvmmsg:
        try:
            return _MmsgReader(sock)
        except (OSError, AttributeError):
            pass
    recvfrom = sock.recvfrom

    def read_one() -> ReadResult:
        data, addr = recvfrom(MAX_DATAGRAM)
        return [data], _exporter_name(addr[0]), addr[1]

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

    def __call__(self) -> ReadResult:
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
            return datas, self._host(0), self._port(0)
        return datas, [self._host(i) for i in range(n)], [self._port(i) for i in range(n)]

    def _port(self, i: int) -> int:
        """The sender's port: bytes 2-3 of sockaddr_in and sockaddr_in6 alike, in network order."""
        row = self.name_rows[i]
        return (int(row[2]) << 8) | int(row[3])

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
    read: Reader,
    emit: Callable[[list[tuple[Any, ...]], int], None],
    stopping: Callable[[], bool],
    chunk_n: int,
    chunk_ms: int,
    drain_timeout_s: float,
    with_port: bool = False,
    clock_ms: Callable[[], int] | None = None,
) -> None:
    """Read datagrams until ``stopping()`` and the socket is empty; hand them on in lists via ``emit``
    as ``(data, exporter, received_ms)`` or, ``with_port``, ``(data, exporter, received_ms, port)``.
    ``received_ms`` is ``clock_ms()`` (by default the system clock) when the read returned."""
    now_ns = time.time_ns
    chunk_ns = chunk_ms * 1_000_000
    pending: list[tuple[Any, ...]] = []
    first_ns = 0
    nbytes = 0
    drain_deadline: float | None = None
    try:
        while True:
            try:
                datas, hosts, ports = read()
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
            ms = clock_ms() if clock_ms is not None else t // 1_000_000
            if not pending:
                first_ns = t
            if isinstance(hosts, str):
                if with_port:
                    pending.extend([(d, hosts, ms, ports) for d in datas])
                else:
                    pending.extend([(d, hosts, ms) for d in datas])
            elif with_port:
                assert isinstance(ports, list)
                pending.extend([(d, h, ms, p) for d, h, p in zip(datas, hosts, ports, strict=True)])
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
    with_port: bool = False,
) -> None:
    """The receive process: read the socket, send lists of (data, exporter, received_ms[, port]) down the pipe.

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
                    held[0] -= item[2] + DATAGRAM_OVERHEAD * len(item[1]) if item[0] == "data" else 0
                    cond.notify()
            conn.send(None)
        except (BrokenPipeError, EOFError, OSError):
            gone.set()  # the collector is gone
            with cond:
                cond.notify_all()

    def emit(datagrams: list[tuple[Any, ...]], nbytes: int) -> None:
        out.put(("data", datagrams, nbytes))
        with cond:
            held[0] += nbytes + DATAGRAM_OVERHEAD * len(datagrams)
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
        _receive(sock, read, emit, stopping, chunk_n, chunk_ms, drain_timeout_s, with_port)
    except BaseException as e:
        out.put(("error", f"{type(e).__name__}: {e}", 0))
        raise
    finally:
        out.put(None)
        writer.join()


class Listener:
    """One bound socket, and the thread (and, with ``receive_process``, the process) reading it."""

    def __init__(self, want: tuple[str, int]):
        self.want = want
        self.sock: socket.socket | None = None
        self.address: tuple[str, int] | None = None
        self.rcvbuf_effective: int | None = None
        self.receive_call = ""
        self.thread: threading.Thread | None = None
        self.child: Any = None
        self.conn: Any = None
        self.child_stop: Any = None
        self.last_drops: int | None = None

    def drops(self) -> int | None:
        if self.sock is not None and self.sock.fileno() >= 0:
            d = kernel_drops(self.sock)
            if d is not None:
                self.last_drops = d
        return self.last_drops

    def text(self) -> str:
        return listen_text(self.address or self.want)

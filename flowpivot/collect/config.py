"""The collector's configuration: listen addresses and the one settings object."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..store import ROW_GROUP_ROWS
from ..timerange import TimeRange

__all__ = [
    "CollectorConfig",
    "parse_listen",
    "listen_text",
    "DEFAULT_LISTEN",
    "DEFAULT_ROTATE_MS",
    "DEFAULT_RCVBUF",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_WRITE_ROWS",
]

DEFAULT_LISTEN = ("127.0.0.1", 2055)
DEFAULT_ROTATE_MS = 300_000
DEFAULT_RCVBUF = 64 << 20
# The memory bound docs/collector.md states (RSS, bench/collect_overload.py measures it) is the sum of:
# the datagrams received and not yet decoded, counted with their Python overhead (DATAGRAM_OVERHEAD
# bytes each), up to DEFAULT_MAX_BACKLOG; the decoded rows in flight (about 150 bytes a row): up
# to DEFAULT_WRITE_ROWS gathered by the decoder, write_queue_batches of them queued per write
# thread and one being written, and a row group (ROW_GROUP_ROWS) buffered and encoded by each
# write thread's StoreWriter; and the interpreter with its libraries (about 100 MB).
DEFAULT_MAX_BACKLOG = 256 << 20
DEFAULT_WRITE_ROWS = ROW_GROUP_ROWS // 4


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


def listen_text(addr: tuple[str, int]) -> str:
    """(host, port) as HOST:PORT (the form stats.json has always used)."""
    return f"{addr[0]}:{addr[1]}"


def _listen_tuple(listen: Any) -> tuple[tuple[str, int], ...]:
    """One (host, port) or a sequence of them, as a tuple of (host, port)."""
    if len(listen) == 2 and isinstance(listen[0], str):
        return ((str(listen[0]), int(listen[1])),)
    out = tuple((str(a[0]), int(a[1])) for a in listen)
    if not out:
        raise ValueError("no listen address")
    return out


@dataclasses.dataclass(frozen=True)
class CollectorConfig:
    """Everything a :class:`~flowpivot.collect.Collector` is told, in one place.

    ``listen``: the UDP addresses to bind, one socket each (e.g. 2055 for NetFlow/IPFIX and 6343
    for sFlow; the decoder tells the protocols apart by content).
    ``time_range``: which flow times are stored (1970 .. the collector's clock at decode plus a
    day by default); a record outside is counted and reported, never stored.
    ``max_backlog_bytes``: the datagrams received and not yet decoded (with their Python
    overhead); past it the receive threads pause and the kernel buffer takes the excess.
    ``write_rows``: decoded rows handed to a write thread at once; ``write_queue_batches`` of
    them wait per write thread.
    """

    listen: tuple[tuple[str, int], ...] = (DEFAULT_LISTEN,)
    rotate_ms: int = DEFAULT_ROTATE_MS
    rcvbuf: int = DEFAULT_RCVBUF
    time_range: TimeRange = TimeRange()
    chunk_datagrams: int = 2048
    chunk_ms: int = 200
    expire_every_ms: int = 5_000
    drain_timeout_s: float = 30.0
    write_rows: int = DEFAULT_WRITE_ROWS
    write_queue_batches: int = 1
    writers: int = 1
    max_backlog_bytes: int = DEFAULT_MAX_BACKLOG
    use_recvmmsg: bool = True
    switch_interval_s: float | None = None
    receive_process: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "listen", _listen_tuple(self.listen))
        if self.rotate_ms <= 0:
            raise ValueError("rotate interval must be positive")
        if self.writers < 1:
            raise ValueError("writers must be at least 1")
        if self.write_queue_batches < 1:
            raise ValueError("write_queue_batches must be at least 1")

    def replace(self, **changes: Any) -> CollectorConfig:
        """A copy with some settings changed (unknown names raise TypeError)."""
        if "listen" in changes:
            changes["listen"] = _listen_tuple(changes["listen"])
        return dataclasses.replace(self, **changes)

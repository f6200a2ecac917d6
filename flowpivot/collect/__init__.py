"""The live collector, flowpivot's only socket: NetFlow v5/v9, IPFIX (RFC 3954, RFC 7011) and sFlow
over UDP, on one or several sockets.

A pipeline by stage:

* :mod:`.receive`: one receive thread per socket does nothing but read it (a large receive
  buffer; ``recvmmsg`` for 64 datagrams per system call where Linux has it), stamping each
  datagram with its arrival time and sender, and handing lists of them to the decode thread
  (optionally from a separate process);
* :mod:`.pipeline`: the decode thread decodes a whole list at once (``decode_many``), leaves out
  records dated outside the plausible time range (counted, reported), and gathers the flows
  into batches for the write threads;
* :mod:`.rotation`: the write threads stream those into the open rotation window of the store;
  Parquet encoding runs there, outside the GIL, while the next datagrams are decoded. Every
  ``rotate_ms`` (5 minutes by default, aligned to the clock like nfcapd's files) the window is
  committed under unique keys; a window that fails to write is counted and the next one stored;
* :mod:`.stats`: the counters go to ``STORE/collector/stats.json`` and ``stats.jsonl``.

``stop()`` stops receiving, drains what the kernel had already buffered, decodes and commits
it, and writes the counters: a SIGTERM loses nothing that reached the socket.

    collector = Collector(Store("flows"), listen=[("127.0.0.1", 2055), ("127.0.0.1", 6343)])
    collector.start()
    ...
    collector.stop()
"""

from __future__ import annotations

from .config import (
    DEFAULT_LISTEN,
    DEFAULT_MAX_BACKLOG,
    DEFAULT_RCVBUF,
    DEFAULT_ROTATE_MS,
    CollectorConfig,
    parse_listen,
)
from .pipeline import Collector
from .receive import _MmsgReader, _reader, kernel_drops, udp_queue
from .stats import stats_path

__all__ = [
    "Collector",
    "CollectorConfig",
    "parse_listen",
    "kernel_drops",
    "udp_queue",
    "stats_path",
    "DEFAULT_LISTEN",
    "DEFAULT_ROTATE_MS",
    "DEFAULT_RCVBUF",
    "DEFAULT_MAX_BACKLOG",
    "_MmsgReader",
    "_reader",
]

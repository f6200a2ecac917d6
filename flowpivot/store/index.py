"""The address index: the store's flows once ordered by source address and once by destination.

Layout::

    STORE/index/CURRENT            the name of the generation in use (replaced atomically)
    STORE/index/<gen>/src.arrow    every indexed flow, ordered by source address (Arrow IPC file)
    STORE/index/<gen>/src.keys.npy the first and last address key of each of its record batches
    STORE/index/<gen>/dst.arrow    the same flows, ordered by destination address
    STORE/index/<gen>/dst.keys.npy
    STORE/index/<gen>/hosts.parquet  per busy host, UTC day and side: flows and distinct peers
    STORE/index/<gen>/peers.parquet  per host with many flows on a side, per peer: packets, connections
    STORE/index/<gen>/manifest.json  the store files it holds (path, size, mtime) and its figures

Why: a seed pivot over the arrival-ordered store decodes nearly every page of its columns, because
a thousand seeds' flows are spread over almost every 2,048-row vector (docs/performance.md,
``bench.hunt_floor``). In an address-ordered copy each address's flows are contiguous. The
copies are Arrow IPC files of small record batches (1,024 flows, each column buffer compressed on
its own): a lookup finds the batches that can hold an address from the keys file (a binary
search), memory-maps the file and decompresses only those batches and only the columns it needs.
A Parquet copy read by DuckDB cannot do that: it decodes whole row groups, and row groups this
small cost more in metadata than they save (docs/performance.md, "Address index").

The index is optional and never the only copy. A hunt uses it when every file it holds that
falls in the hunt's window is still in the store unchanged; store files written after it was
built (new days, new inputs) are scanned from the store in the same query. When a file it holds
changed or went away inside the window, the hunt scans the store and logs that the index is
stale. ``flowpivot index`` rebuilds it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from ..schema import STORE_SCHEMA
from . import DAY_MS, Store, _sql_str
from .hosttables import HOST_PEERS_SCHEMA
from .hosttables import host_days as _host_days
from .hosttables import host_peers as _host_peers
from .hosttables import merge_sides as _merge_sides
from .sketch import file_sketch

__all__ = [
    "INDEX_COLUMNS",
    "INDEX_FORMAT",
    "INDEX_BATCH_ROWS",
    "IndexPlan",
    "build_index",
    "index_plan",
    "index_status",
]

log = logging.getLogger(__name__)

INDEX_FORMAT = "flowpivot-index/2"
# The columns the hunt reads: what the index holds of each flow.
INDEX_COLUMNS = (
    "start",
    "end",
    "src_addr_v4",
    "src_addr_v6",
    "dst_addr_v4",
    "dst_addr_v6",
    "src_port",
    "dst_port",
    "protocol",
    "tcp_flags",
    "packets",
    "bytes",
    "sampling_rate",
    "rev_packets",
    "rev_bytes",
    "rev_tcp_flags",
    "conn_state",
    "history",
)
INDEX_SCHEMA = pa.schema([STORE_SCHEMA.field(c) for c in INDEX_COLUMNS])
# Flows per record batch. A lookup reads every batch whose key range holds a wanted address, so
# with k addresses about k batches per copy are read whatever the store's size: smaller batches
# read less, larger ones compress better (docs/performance.md, "Address index").
INDEX_BATCH_ROWS = 1024
# How each column buffer is compressed: zstd keeps the two copies about as small as the Parquet
# store per flow; lz4 reads about twice as fast for about 1.7 times the space.
INDEX_COMPRESSION = "zstd"
# The host-day table holds a (host, UTC day, side) when the host has at least this many flows on
# that side that day: the hosts whose flows are dear to read. Below it a host-day spans at most
# two batches.
HOST_DAY_MIN_FLOWS = 1024
_SIDES = ("src", "dst")


@dataclass
class IndexPlan:
    """How a query over a time window reads flows through the index.

    ``src``/``dst``: the two ordered copies; ``rest``: the store files in the window that the
    index does not hold (written since it was built), to scan as they are.
    """

    src: Path
    dst: Path
    rest: list[Path]
    generation: str
    batch_rows: int = INDEX_BATCH_ROWS
    # columns with no value in any indexed flow (e.g. the biflow and Zeek columns of a NetFlow
    # store, IPv6 in an IPv4 one): not stored, read as nulls
    null_columns: tuple[str, ...] = ()
    # a shared lock on STORE/index/LOCK while the plan is in use: a rebuild does not delete the
    # generation it reads (closing the file, or dropping the plan, releases it)
    lock: IO[bytes] | None = field(default=None, repr=False, compare=False)
    # the host-day table (None in an index built without it)
    hosts: Path | None = None
    _open: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    # the per host and peer table of the hosts with at least ``peers_min_flows`` flows on a side
    # (None in an index built without it)
    peers: Path | None = None
    peers_min_flows: int = HOST_DAY_MIN_FLOWS

    def release(self) -> None:
        self._open.clear()
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def _keys(self, side: str) -> np.ndarray:
        """(batches, 2): the first and last order key of each record batch of a copy."""
        if ("keys", side) not in self._open:
            path = self.src if side == "src" else self.dst
            self._open[("keys", side)] = np.load(path.with_suffix(".keys.npy"))
        return self._open[("keys", side)]  # type: ignore[no-any-return]

    def _reader(self, side: str, columns: tuple[str, ...]) -> Any:
        """A reader of a copy that decodes only ``columns`` (stored ones), memory-mapped."""
        if (side, columns) not in self._open:
            path = self.src if side == "src" else self.dst
            # the copy stores every index column that is not all null, in INDEX_COLUMNS order
            stored = [c for c in INDEX_COLUMNS if c not in self.null_columns]
            opts = pa.ipc.IpcReadOptions(
                # one batch is a few kB per column: decompressing them on other threads costs more
                use_threads=False,
                included_fields=[stored.index(c) for c in columns],
            )
            self._open[(side, columns)] = pa.ipc.open_file(pa.memory_map(str(path)), options=opts)
        return self._open[(side, columns)]

    def _spans(self, side: str, v4: np.ndarray, v6: Sequence[bytes]) -> np.ndarray:
        """The record batches of a copy that can hold flows of these addresses."""
        want = np.unique(np.concatenate([np.asarray(v4, np.uint64), _v6_keys(v6)]))
        keys = self._keys(side)
        return _ranges(np.searchsorted(keys[:, 1], want, side="left"), np.searchsorted(keys[:, 0], want, side="right"))

    def span_rows(self, v4: np.ndarray, v6: Sequence[bytes]) -> int:
        """The flows a lookup of these addresses reads on both sides (whole batches): known from
        the keys files alone, before reading anything, and at least the addresses' own flows."""
        return sum(len(self._spans(side, v4, v6)) for side in _SIDES) * self.batch_rows

    def lookup(
        self,
        side: str,
        v4: np.ndarray,
        v6: Sequence[bytes],
        columns: Sequence[str],
        since_ms: int,
        until_ms: int,
        drop_src: tuple[np.ndarray, Sequence[bytes]] | None = None,
    ) -> pa.Table:
        """The indexed flows in the window whose ``side`` address is one of ``v4`` (uint32) or
        ``v6`` (16 bytes each), with ``columns`` (of ``INDEX_COLUMNS``, in that order).

        Only the record batches whose key range can hold one of the addresses are read, and of
        them only the columns needed. ``drop_src``: addresses whose flows (as source) are left
        out, so that a lookup on the destination side does not repeat what the source side found.
        """
        take = self._spans(side, v4, v6)
        need = set(columns) | {"start", f"{side}_addr_v4", f"{side}_addr_v6"}
        if drop_src is not None:
            need |= {"src_addr_v4", "src_addr_v6"}
        stored = tuple(c for c in INDEX_COLUMNS if c in need and c not in self.null_columns)
        schema = pa.schema([INDEX_SCHEMA.field(c) for c in stored])
        if len(take):
            reader = self._reader(side, stored)
            t = pa.Table.from_batches([reader.get_batch(int(i)) for i in take], schema)
        else:
            t = schema.empty_table()
        mask = _window_mask(t, since_ms, until_ms)
        mask = pc.and_(mask, _member(t, side, v4, v6))
        if drop_src is not None:
            mask = pc.and_(mask, pc.invert(_member(t, "src", *drop_src)))
        # one chunk: a chunk per batch read would cost the query engine per chunk
        t = t.filter(mask).combine_chunks()
        n = t.num_rows
        return pa.table(
            [t.column(c) if c in stored else pa.nulls(n, INDEX_SCHEMA.field(c).type) for c in columns],
            schema=pa.schema([INDEX_SCHEMA.field(c) for c in columns]),
        )

    def rest_relation(self) -> str | None:
        """The unindexed store files in the window as a table expression, or None."""
        if not self.rest:
            return None
        files = ", ".join(f"'{_sql_str(str(p))}'" for p in self.rest)
        return f"read_parquet([{files}], hive_partitioning = false, union_by_name = true)"


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The distinct integers of the half-open ranges [lo, hi), in order."""
    n = hi - lo
    ok = n > 0
    lo, n = lo[ok], n[ok]
    if not len(n):
        return np.zeros(0, np.int64)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    return np.unique(starts + np.arange(int(n.sum())))


def _batch_bounds(key: np.ndarray, rows: int) -> np.ndarray:
    """(batches, 2): the first and last order key of each ``rows``-flow batch of a sorted range."""
    firsts = np.arange(0, len(key), rows)
    return np.stack([key[firsts], key[np.minimum(firsts + rows, len(key)) - 1]], 1)


def _v6_keys(v6: Sequence[bytes]) -> np.ndarray:
    """The order keys (``_order_key``) of 16-byte IPv6 addresses."""
    if not len(v6):
        return np.zeros(0, np.uint64)
    w0 = np.frombuffer(b"".join(v6), dtype=">u8").reshape(-1, 2)[:, 0].astype(np.uint64)
    return (np.uint64(1) << np.uint64(63)) | (w0 >> np.uint64(1))


def _window_mask(t: pa.Table, since_ms: int, until_ms: int) -> pa.ChunkedArray:
    start = t.column("start")
    lo = pa.scalar(int(since_ms), pa.timestamp("ms", tz="UTC"))
    hi = pa.scalar(int(until_ms), pa.timestamp("ms", tz="UTC"))
    return pc.and_(pc.greater_equal(start, lo), pc.less_equal(start, hi))


def _member(t: pa.Table, side: str, v4: np.ndarray, v6: Sequence[bytes]) -> pa.ChunkedArray:
    """Whether each flow's ``side`` address is one of ``v4`` or ``v6`` (false where null)."""
    out = None
    if f"{side}_addr_v4" in t.column_names and len(v4):
        out = pc.fill_null(pc.is_in(t.column(f"{side}_addr_v4"), pa.array(np.asarray(v4, np.uint32))), False)
    if f"{side}_addr_v6" in t.column_names and len(v6):
        m6 = pc.fill_null(pc.is_in(t.column(f"{side}_addr_v6"), pa.array(list(v6), pa.binary(16))), False)
        out = m6 if out is None else pc.or_(out, m6)
    return out if out is not None else pa.chunked_array([np.zeros(t.num_rows, bool)], pa.bool_())


def _root(store: Store) -> Path:
    return store.root / "index"


def _shared_lock(store: Store) -> IO[bytes]:
    """The index's lock file, held shared by a reader (a build only ever tries it exclusively,
    without waiting, so this never waits long)."""
    f = open(_root(store) / "LOCK", "ab")  # noqa: SIM115 (held for as long as the plan lives)
    fcntl.flock(f, fcntl.LOCK_SH)
    return f


def _exclusive_lock(store: Store) -> IO[bytes] | None:
    """The index's lock file held exclusively, or None when a reader holds it."""
    f = open(_root(store) / "LOCK", "ab")  # noqa: SIM115
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _file_day_ms(path: Path) -> int | None:
    """The first ms of the day partition a store file is in (``day=YYYY-MM-DD``)."""
    import datetime as dt

    try:
        d = dt.date.fromisoformat(path.parent.name[4:])
    except ValueError:
        return None
    return (d - dt.date(1970, 1, 1)).days * DAY_MS


def _in_window(path: Path, since_ms: int | None, until_ms: int | None) -> bool:
    day = _file_day_ms(path)
    if day is None:
        return True
    return (since_ms is None or day + DAY_MS > since_ms) and (until_ms is None or day <= until_ms)


def _fingerprint(path: Path) -> list[int]:
    s = path.stat()
    return [s.st_size, s.st_mtime_ns]


def _unchanged(path: Path, fingerprint: list[int]) -> bool:
    """Whether a file the index holds is still in the store as it was when indexed."""
    try:
        return _fingerprint(path) == fingerprint
    except FileNotFoundError:
        return False


def _current(store: Store) -> tuple[str, dict[str, Any]] | None:
    root = _root(store)
    try:
        gen = (root / "CURRENT").read_text().strip()
        manifest = json.loads((root / gen / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    if manifest.get("format") != INDEX_FORMAT:
        log.warning(
            "the address index is of another format (%s): not used; run `flowpivot index` to rebuild it",
            manifest.get("format"),
        )
        return None
    return gen, manifest


def index_status(store: Store) -> dict[str, Any] | None:
    """The current index's manifest (without its file list) and how it stands against the store:
    ``stale`` (files it holds that changed or went away) and ``unindexed`` (store files it does
    not hold). None when there is no index."""
    cur = _current(store)
    if cur is None:
        return None
    gen, m = cur
    held = m["files"]
    stale = sum(not _unchanged(store.root / rel, fp) for rel, fp in held.items())
    rels = {str(p.relative_to(store.root)) for p in store.files()}
    return {
        **{k: v for k, v in m.items() if k != "files"},
        "generation": gen,
        "files": len(held),
        "stale_files": stale,
        "unindexed_files": len(rels - set(held)),
    }


def index_plan(store: Store, since_ms: int, until_ms: int) -> IndexPlan | None:
    """How to read the window through the index, or None to scan the store (no index, or a file
    it holds in the window changed or went away)."""
    if not (_root(store) / "CURRENT").exists():
        return None
    lock = _shared_lock(store)
    cur = _current(store)
    if cur is None:
        lock.close()
        return None
    gen, m = cur
    held: dict[str, list[int]] = m["files"]
    # the files outside the window do not matter: their rows fall outside it, and every query
    # filters on start
    in_window = {rel: fp for rel, fp in held.items() if _in_window(store.root / rel, since_ms, until_ms)}
    if not in_window:
        lock.close()
        return None  # it holds nothing of the window
    for rel, fp in in_window.items():
        if not _unchanged(store.root / rel, fp):
            log.warning(
                "the address index is stale (%s changed since it was built): scanning the store; "
                "run `flowpivot index` to rebuild it",
                rel,
            )
            lock.close()
            return None
    rest = [
        p for p in store.files() if _in_window(p, since_ms, until_ms) and str(p.relative_to(store.root)) not in held
    ]
    if rest:
        log.info("address index: %d store file(s) in the window are not indexed and are scanned", len(rest))
    d = _root(store) / gen
    return IndexPlan(
        d / "src.arrow",
        d / "dst.arrow",
        rest,
        gen,
        int(m.get("batch_rows") or INDEX_BATCH_ROWS),
        tuple(c for c in m.get("null_columns", ()) if c in INDEX_COLUMNS),
        lock,
        d / "hosts.parquet" if (d / "hosts.parquet").exists() else None,
        peers=d / "peers.parquet" if (d / "peers.parquet").exists() else None,
        peers_min_flows=int(m.get("host_day_min_flows") or HOST_DAY_MIN_FLOWS),
    )


# Flows sorted at a time while building (one address range): under 1 GiB of rows in memory.
_SORT_ROWS = 8_000_000
_SAMPLE_EVERY = 64


def _v6_words(v6: pa.Array) -> np.ndarray:
    """The 16-byte addresses as (n, 2) big-endian uint64 words (garbage where null)."""
    raw = np.frombuffer(v6.buffers()[1], dtype=">u8", count=2 * (v6.offset + len(v6)))[2 * v6.offset :]
    return raw.reshape(-1, 2).astype(np.uint64)


def _order_key(batch: pa.RecordBatch | pa.Table, side: str) -> np.ndarray:
    """A uint64 per flow that never decreases in the index's order (IPv4 address, then IPv6
    by its first 63 bits, then flows with neither): ranges of it split the sort."""
    names = batch.schema.names
    v4 = batch.column(f"{side}_addr_v4") if f"{side}_addr_v4" in names else pa.nulls(batch.num_rows, pa.uint32())
    v6 = batch.column(f"{side}_addr_v6") if f"{side}_addr_v6" in names else pa.nulls(batch.num_rows, pa.binary(16))
    v4, v6 = (a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in (v4, v6))
    n = len(v4)
    key = np.full(n, np.iinfo(np.uint64).max, dtype=np.uint64)
    has4 = v4.is_valid().to_numpy(zero_copy_only=False)
    key[has4] = v4.to_numpy(zero_copy_only=False)[has4].astype(np.uint64)
    has6 = v6.is_valid().to_numpy(zero_copy_only=False) & ~has4
    if has6.any():
        key[has6] = (np.uint64(1) << np.uint64(63)) | (_v6_words(v6)[has6, 0] >> np.uint64(1))
    return key


def _batches(files: list[Path]) -> Any:
    for p in files:
        for b in pq.ParquetFile(p).iter_batches(batch_size=1 << 17, columns=list(INDEX_COLUMNS)):
            yield pa.RecordBatch.from_arrays(
                [b.column(i).cast(f.type) for i, f in enumerate(INDEX_SCHEMA)], schema=INDEX_SCHEMA
            )


def _sorted_order(t: pa.Table, side: str) -> np.ndarray:
    """The permutation that orders a range's flows by the side's address (IPv4, then IPv6, then
    none); flows of one address keep the store's order (stable sort)."""
    key = _order_key(t, side)
    v6 = t.column(f"{side}_addr_v6").combine_chunks()
    if v6.null_count == len(v6):
        return np.argsort(key, kind="stable")
    # IPv6: the key holds 63 bits of the address; the rest decides among equal keys
    words = np.where(v6.is_valid().to_numpy(zero_copy_only=False)[:, None], _v6_words(v6), 0)
    return np.lexsort((words[:, 1], words[:, 0], key))


def build_index(
    store: Store,
    since_ms: int | None = None,
    until_ms: int | None = None,
    batch_rows: int = INDEX_BATCH_ROWS,
    progress: Callable[[str, int, int], None] | None = None,
    compression: str | None = INDEX_COMPRESSION,
    host_day_min_flows: int = HOST_DAY_MIN_FLOWS,
) -> dict[str, Any]:
    """Build the address index over the store's files (those whose day is in ``since``..``until``,
    by default all) and make it current. Returns its manifest without the file list.

    The store is read once and split into address ranges of about ``_SORT_ROWS`` flows (cut at
    quantiles of a sample), kept in temporary Arrow files; each range is then sorted in memory and
    appended, so memory stays bounded whatever the store's size. Columns no flow has a value in
    are not stored. ``compression``: ``zstd``, ``lz4`` or None for each column buffer.
    ``progress(step, done, total)`` is called as flows are split (``split``) and written
    (``src``, ``dst``).
    """
    if compression not in ("zstd", "lz4", None):
        raise StoreError(f"unknown index compression {compression!r}: zstd, lz4 or none")
    files = [p for p in store.files() if _in_window(p, since_ms, until_ms)]
    if not files:
        raise StoreError(f"no flows to index in {store.root}")
    root = _root(store)
    root.mkdir(parents=True, exist_ok=True)
    gen = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    tmp = root / f".tmp-{gen}"
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        fingerprints = {str(p.relative_to(store.root)): _fingerprint(p) for p in files}
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
        parts = max(1, -(-total // _SORT_ROWS))
        # 1. cut points: quantiles of the order key over a sample (two address columns read)
        cuts = {}
        for side in _SIDES:
            sample = [
                _order_key(t, side)[::_SAMPLE_EVERY]
                for p in files
                for t in pq.ParquetFile(p).iter_batches(1 << 20, columns=[f"{side}_addr_v4", f"{side}_addr_v6"])
            ]
            keys = np.concatenate(sample) if sample else np.zeros(0, np.uint64)
            cuts[side] = (
                np.unique(np.quantile(keys, np.arange(1, parts) / parts, method="lower")) if len(keys) else keys
            )
        # 2. one pass over the store: every batch split by range into temporary Arrow files
        opts = pa.ipc.IpcWriteOptions(compression="lz4")
        spill: dict[tuple[str, int], Any] = {}
        done = 0
        filled: set[str] = set()
        try:
            for batch in _batches(files):
                filled.update(c for c in INDEX_COLUMNS if batch.column(c).null_count < batch.num_rows)
                for side in _SIDES:
                    bucket = np.searchsorted(cuts[side], _order_key(batch, side), side="right")
                    order = np.argsort(bucket, kind="stable")
                    split = batch.take(pa.array(order))
                    counts = np.bincount(bucket, minlength=len(cuts[side]) + 1)
                    at = 0
                    for i, c in enumerate(counts):
                        if c:
                            w = spill.get((side, i))
                            if w is None:
                                w = spill[(side, i)] = pa.ipc.new_file(
                                    tmp / f"{side}-{i}.arrow", INDEX_SCHEMA, options=opts
                                )
                            w.write_batch(split.slice(at, int(c)))
                            at += int(c)
                done += batch.num_rows
                if progress:
                    progress("split", done, total)
        finally:
            for w in spill.values():
                w.close()
        # 3. each range sorted in memory, appended in order, in record batches of batch_rows
        # flows; the keys file holds each batch's first and last order key
        null_columns = [c for c in INDEX_COLUMNS if c not in filled]
        stored = pa.schema([INDEX_SCHEMA.field(c) for c in INDEX_COLUMNS if c in filled])
        wopts = pa.ipc.IpcWriteOptions(compression=compression)
        sizes = {}
        host_days = []
        peers_w = pq.ParquetWriter(tmp / "peers-sides.parquet", HOST_PEERS_SCHEMA, compression="zstd")
        for side in _SIDES:
            path = tmp / f"{side}.arrow"
            written = 0
            bounds = []
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, stored, options=wopts) as w:
                for i in range(len(cuts[side]) + 1):
                    part = tmp / f"{side}-{i}.arrow"
                    if not part.exists():
                        continue
                    with pa.memory_map(str(part)) as src:
                        t = pa.ipc.open_file(src).read_all()
                    t = t.take(pa.array(_sorted_order(t, side)))
                    key = _order_key(t, side)
                    host_days.append(_host_days(t, side, host_day_min_flows))
                    peers_w.write_table(_host_peers(t, side, host_day_min_flows), row_group_size=1 << 16)
                    t = t.select(stored.names)
                    bounds.append(_batch_bounds(key, batch_rows))
                    # one chunk, so the batches start at multiples of batch_rows as the keys say
                    w.write_table(t.combine_chunks(), max_chunksize=batch_rows)
                    written += t.num_rows
                    del t
                    part.unlink()
                    if progress:
                        progress(side, written, total)
            if written != total:
                raise StoreError(f"index build: {written} of {total} flows written for {side}")
            np.save(tmp / f"{side}.keys.npy", np.concatenate(bounds) if bounds else np.zeros((0, 2), np.uint64))
            sizes[side] = path.stat().st_size + (tmp / f"{side}.keys.npy").stat().st_size
        peers_w.close()
        peer_rows = _merge_sides(str(tmp / "peers-sides.parquet"), str(tmp / "peers.parquet"))
        (tmp / "peers-sides.parquet").unlink()
        sizes["peers"] = (tmp / "peers.parquet").stat().st_size
        hosts = pa.concat_tables(host_days) if host_days else _host_days(INDEX_SCHEMA.empty_table(), "src", 1)
        pq.write_table(hosts, tmp / "hosts.parquet", compression="zstd")
        sizes["hosts"] = (tmp / "hosts.parquet").stat().st_size
        # the day sketches of hosts and host pairs the hunt's population comes from
        for p in files:
            file_sketch(store.root, p, DAY_MS)
        manifest = {
            "format": INDEX_FORMAT,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": int(total),
            "batch_rows": int(batch_rows),
            "compression": compression,
            "disk_bytes": sum(sizes.values()),
            "bytes_per_flow": round(sum(sizes.values()) / total, 2) if total else None,
            "seconds": round(time.perf_counter() - t0, 1),
            "null_columns": null_columns,
            "host_day_min_flows": int(host_day_min_flows),
            "host_days": sum(h.num_rows for h in host_days),
            "host_peers": peer_rows,
            "files": fingerprints,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, root / gen)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # switch: CURRENT names the new generation (one atomic rename), then older ones go
    cur = root / f".tmp-CURRENT-{gen}"
    cur.write_text(gen + "\n")
    os.replace(cur, root / "CURRENT")
    # older generations go, unless a hunt still reads one (it holds the lock shared): then the
    # next build removes them
    excl = _exclusive_lock(store)
    if excl is None:
        log.info("a hunt is reading the previous index; the next build removes it")
    else:
        for old in root.iterdir():
            if old.is_dir() and old.name != gen and not old.name.startswith(".tmp-"):
                shutil.rmtree(old, ignore_errors=True)
        excl.close()
    return {k: v for k, v in manifest.items() if k != "files"} | {"generation": gen, "files": len(fingerprints)}

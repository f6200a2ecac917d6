"""Records already in the store: sampled record fingerprints per day partition.

An input whose bytes are new may still hold flows the store has: the store's own
``flowpivot flows --output csv`` export ingested back, the same nfdump file exported to CSV, a log
copied under another name and edited. Such an input is found by its records, not its bytes.

Method. The fingerprint of a record is a 64-bit hash (splitmix64, chained) of ``start``, ``end``,
source and destination address, ports, protocol, ``packets`` and ``bytes`` as stored. A record is
*sampled* when its fingerprint is 0 modulo :data:`SAMPLE` (16): the sample is deterministic, so
the same record is sampled in every input that holds it, and about 1 record in 16 is. When a
store file is written, its sampled fingerprints go to ``STORE/fingerprints/day=D/<key>.npy``;
for a store file without one (written before, or by the collector) they are computed from the
file the first time they are needed and kept there. Before an input is committed, its sampled
fingerprints of each day are looked up among those of the same day in the store; when more than
:data:`REFUSE_SHARE` of them are there, the input is refused (``--allow-duplicates`` stores it
anyway).

Limits. A small input has few sampled records (a 100-flow file has about 6; under about 16 it
may have none, and then it cannot be recognised). Identical records do happen in real traffic
only when every field above is equal, to the millisecond: rare, and a few of them stay far below
the threshold. An export that changed the records (nfdump's CSV has whole seconds; a re-sampled
or aggregated export; ``-a`` style aggregation) has other fingerprints and is not recognised.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..schema import STORE_SCHEMA
from ..store import DAY_MS, Store

__all__ = ["SAMPLE", "REFUSE_SHARE", "FP_COLUMNS", "fingerprints", "DaySample", "store_sample", "write_sample"]

#: One record in SAMPLE is sampled (by its fingerprint, so the same ones in every input).
SAMPLE = 16
#: An input whose sampled records are in the store for more than this share is refused.
REFUSE_SHARE = 0.5
FP_COLUMNS = (
    "start", "end", "src_addr_v4", "src_addr_v6", "dst_addr_v4", "dst_addr_v6",
    "src_port", "dst_port", "protocol", "packets", "bytes",
)  # fmt: skip
_DIR = "fingerprints"
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _u64(col: pa.Array | pa.ChunkedArray) -> list[np.ndarray]:
    """A column as uint64 words (nulls as 0, plus a word that says null; v6: two words)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.uint64)
    if pa.types.is_fixed_size_binary(arr.type):
        filled = pc.fill_null(arr, pa.scalar(b"\0" * arr.type.byte_width, arr.type))
        raw = np.frombuffer(filled.buffers()[1], dtype=np.uint8)
        w = arr.type.byte_width
        raw = raw[filled.offset * w : (filled.offset + len(filled)) * w].reshape(-1, w)
        words = raw.copy().view(np.uint64)
        return [words[:, i] for i in range(words.shape[1])] + [valid]
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.int64())
    vals = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False).astype(np.int64 if arr.type == pa.int64() else np.uint64)
    return [vals.view(np.uint64) if vals.dtype == np.int64 else vals, valid]


def fingerprints(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """The 64-bit fingerprint of every record (store schema), as uint64."""
    n = batch.num_rows
    h = np.full(n, _GOLD, dtype=np.uint64)
    for name in FP_COLUMNS:
        i = batch.schema.get_field_index(name)
        col = batch.column(i) if i >= 0 else pa.nulls(n, STORE_SCHEMA.field(name).type)
        for word in _u64(col):
            with np.errstate(over="ignore"):
                h = _mix(h ^ (word + _GOLD))
    return h


class DaySample:
    """Sampled fingerprints of one input, per day (ms // DAY_MS of the record's start)."""

    def __init__(self) -> None:
        self.days: dict[int, list[np.ndarray]] = {}
        self.records = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        fp = fingerprints(batch)
        keep = fp % np.uint64(SAMPLE) == 0
        if not keep.any():
            return
        start = batch.column(batch.schema.get_field_index("start")).cast(pa.int64()).to_numpy(zero_copy_only=False)
        day = np.floor_divide(start[keep], DAY_MS)
        fp = fp[keep]
        for d in np.unique(day).tolist():
            self.days.setdefault(int(d), []).append(fp[day == d])

    def day(self, d: int) -> np.ndarray:
        parts = self.days.get(d, [])
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)

    @property
    def sampled(self) -> int:
        return sum(len(self.day(d)) for d in self.days)


def _day_name(d: int) -> str:
    import datetime as dt

    return (dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat()


def _sample_path(store: Store, day: str, stem: str) -> Path:
    return store.root / _DIR / f"day={day}" / f"{stem}.npy"


def _save(path: Path, fps: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, np.unique(fps.astype(np.uint64)))
    os.replace(tmp, path)


def write_sample(store: Store, key: str, sample: DaySample) -> None:
    """Keep the sampled fingerprints of a committed input beside its store files."""
    for d in sample.days:
        _save(_sample_path(store, _day_name(d), key), sample.day(d))


def store_sample(store: Store, d: int, exclude: str = "") -> np.ndarray:
    """The sampled fingerprints of every store file of day ``d`` (computed and kept when missing)."""
    day = _day_name(d)
    part = store.flows_dir / f"day={day}"
    out: list[np.ndarray] = []
    for f in sorted(part.glob("*.parquet")) if part.exists() else []:
        if f.name.startswith(".") or f.stem == exclude:
            continue
        side = _sample_path(store, day, f.stem)
        try:
            out.append(np.load(side))
            continue
        except (OSError, ValueError):
            pass
        try:
            t = pq.read_table(f, columns=list(FP_COLUMNS))
        except (OSError, pa.ArrowException):
            continue  # expired or being replaced meanwhile
        fp = fingerprints(t)
        fp = fp[fp % np.uint64(SAMPLE) == 0]
        try:
            _save(side, fp)
        except OSError:
            pass
        out.append(fp)
    return np.unique(np.concatenate(out)) if out else np.zeros(0, dtype=np.uint64)


def already_stored(store: Store, sample: DaySample) -> tuple[int, int, list[str]]:
    """(sampled records of the input found in the store, sampled records, the days they are on)."""
    found = total = 0
    days: list[str] = []
    for d in sorted(sample.days):
        mine = sample.day(d)
        total += len(mine)
        hit = int(np.isin(mine, store_sample(store, d)).sum())
        if hit:
            found += hit
            days.append(_day_name(d))
    return found, total, days


def drop_day(store: Store, day: str) -> None:
    """Forget the fingerprints of an expired day."""
    shutil.rmtree(store.root / _DIR / f"day={day}", ignore_errors=True)

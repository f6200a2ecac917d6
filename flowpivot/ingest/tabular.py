"""Canonical CSV and Parquet flow files in.

A canonical file uses the column names of :data:`flowpivot.schema.OUTPUT_SCHEMA` (what
``flowpivot flows --output csv|parquet`` writes): any subset of them, as long as ``start``,
``end``, ``src_addr`` and ``dst_addr`` are there (``sampling_rate`` defaults to 1). Addresses are
strings; times are ISO 8601 (UTC unless they carry an offset), epoch milliseconds or epoch
seconds. A Parquet file in the store's own layout (``src_addr_v4``/``src_addr_v6``) is read too.

Text is read in chunks of whole lines (:mod:`.textio`) and every value is checked with the
vectorised parsers of :mod:`.columns`; a row with a bad value is dropped and reported with its
line number (Parquet: its row group and row).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InputError
from ..schema import FIELDS, IP6, STORE_SCHEMA, conform
from .base import ReadReport
from .columns import (  # noqa: F401  (the names other modules and tests import from here)
    OUT_OF_RANGE,
    RowChecker,
    _np_bool,
    nullify,
    parse_addresses,
    parse_decimal_usec,
    parse_times_checked,
    parse_times_ms,
    parse_uint,
)
from .textio import csv_chunk, explain_empty, line_chunks, open_text  # noqa: F401

__all__ = [
    "read_csv",
    "read_parquet",
    "REQUIRED_COLUMNS",
    "RowChecker",
    "parse_addresses",
    "parse_uint",
    "parse_decimal_usec",
    "parse_times_ms",
    "open_text",
    "line_chunks",
    "csv_chunk",
]

#: Columns a canonical CSV/Parquet file must have.
REQUIRED_COLUMNS = ("start", "end", "src_addr", "dst_addr")

BATCH_ROWS = 1 << 18


# ----- canonical records ---------------------------------------------------------------------------


def canonical_batch(table: pa.Table, where: np.ndarray, report: ReadReport, where_word: str = "line") -> pa.RecordBatch:
    """Canonical columns (strings or typed, any subset) -> a store batch; bad rows reported, dropped."""
    names = set(table.column_names)
    n = table.num_rows
    check = RowChecker(n, where, where_word)
    cols: dict[str, pa.Array] = {}
    for f in FIELDS:
        if f.kind == "ip":
            v4n, v6n = f"{f.name}_v4", f"{f.name}_v6"
            if v4n in names or v6n in names:  # the store's own layout
                cols[v4n], cols[v6n] = pa.nulls(n, pa.uint32()), pa.nulls(n, IP6)
                if v4n in names:
                    raw4 = _col(table, v4n)
                    cols[v4n], bad = parse_uint(raw4, pa.uint32())
                    check.flag(bad, v4n, raw4, "not an IPv4 address as an integer")
                if v6n in names:
                    cols[v6n], bad = _ip6_bytes(_col(table, v6n))
                    check.flag(bad, v6n, None, "not 16 bytes of IPv6 address")
            elif f.name in names:
                raw = _col(table, f.name)
                cols[v4n], cols[v6n], bad = parse_addresses(raw)
                check.flag(bad, f.name, raw, "not an IP address")
            if f.required:
                has = pc.or_(
                    pc.is_valid(cols.get(v4n, pa.nulls(n, pa.uint32()))), pc.is_valid(cols.get(v6n, pa.nulls(n, IP6)))
                )
                check.flag(~_np_bool(has), f.name, None, "no address")
            continue
        if f.name not in names:
            continue
        raw = _col(table, f.name)
        if f.kind == "time":
            ms, bad, out = parse_times_checked(raw)
            check.flag(bad, f.name, raw, "not a time (ISO 8601, epoch ms or epoch seconds)")
            check.flag(out, f.name, raw, OUT_OF_RANGE)
            cols[f.name] = ms
        elif f.kind == "int":
            vals, bad = parse_uint(raw, f.arrow)  # type: ignore[arg-type]
            check.flag(bad, f.name, raw, f"not an integer in the range of {f.arrow}")
            cols[f.name] = vals
        else:
            cols[f.name] = (
                nullify(raw)
                if pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type)
                else raw.cast(pa.string())
            )
        if f.required:
            check.flag(~_np_bool(pc.is_valid(cols[f.name])), f.name, None, "missing value")
    if "sampling_rate" not in cols:
        cols["sampling_rate"] = pa.array(np.ones(n, dtype=np.uint32))
    else:
        zero = _np_bool(pc.equal(cols["sampling_rate"], 0))
        check.flag(zero, "sampling_rate", None, "0 is not a sampling rate (1 means unsampled)")
    # a record that ends before it starts is kept: the ingest pipeline repairs it (end := start) and
    # counts it (flowpivot.timerange, `end_before_start_repaired`)
    keep = check.report_to(report)
    batch = conform(cols, n)
    if not keep.all():
        batch = batch.filter(pa.array(keep))
    return batch


def _drop_bad_text(table: pa.Table, where: np.ndarray, report: ReadReport, word: str) -> tuple[pa.Table, np.ndarray]:
    """Rows whose string values are not UTF-8 (Parquet does not check it) are reported and dropped."""
    bad = np.zeros(table.num_rows, dtype=bool)
    for name in table.column_names:
        col = _col(table, name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        try:
            col.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        for i, v in enumerate(col.cast(pa.binary() if pa.types.is_string(col.type) else pa.large_binary()).to_pylist()):
            if v is None or bad[i]:
                continue
            try:
                v.decode("utf-8")
            except UnicodeDecodeError as e:
                bad[i] = True
                report.problem(f"{word} {int(where[i])}", f"{name}: not UTF-8 text ({e.reason} at byte {e.start})")
    if not bad.any():
        return table, where
    return table.filter(pa.array(~bad)), where[~bad]


def _ip6_bytes(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A binary column of IPv6 addresses -> binary(16); a value of another length is flagged."""
    if col.type == IP6:
        return col, np.zeros(len(col), dtype=bool)
    try:
        b = col.cast(pa.binary())
        ok = pc.equal(pc.binary_length(b), 16)
        bad = ~_np_bool(ok) & _np_bool(pc.is_valid(b))
        kept = pc.if_else(pa.array(bad), pa.scalar(None, pa.binary()), b)
        return pa.array(kept.to_pylist(), IP6), bad
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(col), IP6), _np_bool(pc.is_valid(col))


def _col(table: pa.Table, name: str) -> pa.Array:
    c = table.column(name)
    return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c


def _check_columns(columns: list[str], source: str) -> None:
    have = set(columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in have and not ({f"{c}_v4", f"{c}_v6"} & have)]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(missing)}; a flow file needs at least "
            f"{', '.join(REQUIRED_COLUMNS)} (see docs/ingest.md)"
        )


def read_csv(path: Path, report: ReadReport) -> Iterator[pa.RecordBatch]:
    """A canonical CSV file (header line with canonical column names) -> store batches.

    A UTF-8 byte-order mark before the header (as Excel and PowerShell write it) is skipped.
    """
    data_lines = 0
    with open_text(Path(path), report) as fh:
        header = fh.readline()
        if header.startswith(b"\xef\xbb\xbf"):
            header = header[3:]
            report.count("byte-order mark skipped")
        try:
            names = next(csv.reader([header.decode("utf-8").strip("\r\n")]))
        except (UnicodeDecodeError, StopIteration, csv.Error) as e:
            raise InputError(f"{path}: line 1: no CSV header line ({e})") from e
        names = [n.strip() for n in names]
        _check_columns(names, str(path))
        known = {f.name for f in FIELDS} | {f"{n}_{s}" for n in ("src_addr", "dst_addr") for s in ("v4", "v6")}
        extra = [n for n in names if n not in known]
        if extra:
            report.count("ignored columns", len(extra))
        for data, first in line_chunks(fh, first_line=2):
            bad_before = report.bad
            table, lines = csv_chunk(data, first, names, report, include=[n for n in names if n in known])
            data_lines += table.num_rows + report.bad - bad_before
            if table.num_rows:
                batch = canonical_batch(table, lines, report)
                report.records += batch.num_rows
                yield batch
    explain_empty(report, data_lines)


def read_parquet(path: Path, report: ReadReport) -> Iterator[pa.RecordBatch]:
    """A canonical Parquet file (or one in the store's layout) -> store batches.

    Bad values are reported as ``row group G row R`` (R counted from 0 within the group, as
    ``pyarrow.parquet`` and ``parquet-tools`` number them). A row group that cannot be decoded is
    one problem; the row groups after it are still read.
    """
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as e:  # a damaged footer
        raise InputError(f"{path}: not a readable Parquet file: {e}") from e
    names = pf.schema_arrow.names
    _check_columns(names, str(path))
    size = Path(path).stat().st_size
    total = max(pf.metadata.num_rows, 1)
    known = {f.name for f in FIELDS} | {f.name for f in STORE_SCHEMA}
    wanted = [n for n in names if n in known]
    for g in range(pf.metadata.num_row_groups):
        rows = pf.metadata.row_group(g).num_rows
        row = 0
        try:
            for b in pf.iter_batches(batch_size=BATCH_ROWS, columns=wanted, row_groups=[g]):
                t = pa.Table.from_batches([b])
                where = np.arange(row, row + b.num_rows, dtype=np.int64)
                row += b.num_rows
                t, where = _drop_bad_text(t, where, report, f"row group {g} row")
                batch = canonical_batch(t, where, report, f"row group {g} row")
                report.records += batch.num_rows
                report.advance(int(size * b.num_rows / total))
                yield batch
        except (pa.ArrowException, OSError, UnicodeDecodeError) as e:  # a damaged page or row group
            report.problem(
                f"row group {g} row {row}",
                f"Parquet data cannot be read from here to the end of the row group ({rows - row:,} rows): {e}",
            )
    explain_empty(report, pf.metadata.num_rows, "data row")

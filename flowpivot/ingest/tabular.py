"""Canonical CSV and Parquet flow files in, and the column parsers every text reader shares.

A canonical file uses the column names of :data:`flowpivot.schema.OUTPUT_SCHEMA` (what
``flowpivot flows --output csv|parquet`` writes): any subset of them, as long as ``start``,
``end``, ``src_addr`` and ``dst_addr`` are there (``sampling_rate`` defaults to 1). Addresses are
strings; times are ISO 8601 (UTC unless they carry an offset), epoch milliseconds or epoch
seconds. A Parquet file in the store's own layout (``src_addr_v4``/``src_addr_v6``) is read too.

Text is parsed in chunks of whole lines by ``pyarrow.csv``; every value is checked with
vectorised Arrow kernels, and a row with a bad value is dropped and reported with its line
number. Only a chunk that ``pyarrow.csv`` cannot split at all is re-read line by line.
"""

from __future__ import annotations

import csv
import gzip
import io
import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import InputError
from ..schema import FIELDS, IP6, STORE_SCHEMA, conform
from .base import ReadReport

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

CHUNK_BYTES = 8 << 20
BATCH_ROWS = 1 << 18
TS_MS = pa.timestamp("ms", tz="UTC")
TS_NS = pa.timestamp("ns", tz="UTC")
_INT_MAX = {
    pa.uint8(): 0xFF,
    pa.uint16(): 0xFFFF,
    pa.uint32(): 0xFFFF_FFFF,
    pa.uint64(): 0xFFFF_FFFF_FFFF_FFFF,
}


# ----- opening text, with gzip, and reading it in chunks of whole lines ---------------------------


class _CountingReader(io.RawIOBase):
    """Wraps a binary file and reports how many raw (compressed) bytes were read."""

    def __init__(self, fh: IO[bytes], report: ReadReport):
        self.fh = fh
        self.report = report

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.fh.read(len(b))
        n = len(data)
        b[:n] = data
        self.report.advance(n)
        return n

    def close(self) -> None:
        self.fh.close()
        super().close()


def open_text(path: Path, report: ReadReport) -> io.BufferedReader:  # type: ignore[type-arg]
    """The file's bytes, gunzipped when it starts with the gzip magic; progress counts raw bytes."""
    raw = open(path, "rb")
    gz = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    counted = io.BufferedReader(_CountingReader(raw, report), buffer_size=1 << 20)
    if gz:
        return io.BufferedReader(gzip.GzipFile(fileobj=counted, mode="rb"), buffer_size=1 << 20)  # type: ignore[arg-type]
    return counted  # type: ignore[return-value]


def line_chunks(fh: IO[bytes], first_line: int = 1, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[bytes, int]]:
    """Yield (bytes of whole lines, number of the first of them), about ``chunk_bytes`` at a time."""
    rest = b""
    line = first_line
    while True:
        block = fh.read(chunk_bytes)
        if not block:
            break
        data = rest + block
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        chunk, rest = data[: cut + 1], data[cut + 1 :]
        yield chunk, line
        line += chunk.count(b"\n")
    if rest:
        yield rest + b"\n", line


def csv_chunk(
    data: bytes,
    first_line: int,
    names: list[str],
    report: ReadReport,
    delimiter: str = ",",
    quoting: bool = True,
    skip_line: Callable[[str], bool] | None = None,
    include: list[str] | None = None,
) -> tuple[pa.Table, np.ndarray]:
    """Parse whole lines into a table of strings; returns it and the line number of each row.

    Only the ``include`` columns are kept (all when None). A line with the wrong number of fields
    is reported (unless ``skip_line`` says it is a comment) and dropped; blank lines are skipped.
    A chunk pyarrow cannot split (a stray quote) is re-read line by line.
    """
    keep = list(include) if include is not None else list(names)
    # physical line number of each non-blank line (pyarrow numbers rows without the blank ones)
    if b"\n\n" in data or data.startswith(b"\n") or b"\n\r\n" in data:
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        starts = np.concatenate(([0], ends[:-1] + 1))
        length = ends - starts
        cr = np.frombuffer(data, dtype=np.uint8)[np.minimum(starts, len(data) - 1)] == 13
        blank = (length == 0) | ((length == 1) & cr)
        nonblank = np.flatnonzero(~blank).astype(np.int64) + first_line
    else:
        nonblank = np.arange(first_line, first_line + data.count(b"\n"), dtype=np.int64)
    invalid: list[int] = []
    reasons: list[tuple[int, str]] = []

    def on_invalid(row: Any) -> str:
        text = row.text or ""
        k = (row.number or 1) - 1
        invalid.append(k)
        if text.strip() and not (skip_line and skip_line(text)):
            line = int(nonblank[k]) if 0 <= k < len(nonblank) else first_line + k
            reasons.append(
                (line, f"{row.actual_columns} fields where {row.expected_columns} were expected: {text[:80]!r}")
            )
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=names, use_threads=False, block_size=max(1 << 20, len(data) + 1)
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"' if quoting else False,
                double_quote=quoting,
                ignore_empty_lines=True,
                newlines_in_values=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in keep},
                include_columns=keep,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        table = None
    if table is None or table.num_rows + len(invalid) != len(nonblank):
        # a quote swallowed line ends (or the bytes are not text): re-read line by line
        t, lines = _csv_lines(data, first_line, names, report, delimiter, quoting, skip_line)
        return t.select(keep), lines
    for line, why in reasons:
        report.problem(f"line {line}", why)
    if invalid:
        mask = np.ones(len(nonblank), dtype=bool)
        mask[np.asarray(invalid, dtype=np.int64)] = False
        nonblank = nonblank[mask]
    return table, nonblank


def _csv_lines(
    data: bytes,
    first_line: int,
    names: list[str],
    report: ReadReport,
    delimiter: str,
    quoting: bool,
    skip_line: Callable[[str], bool] | None,
) -> tuple[pa.Table, np.ndarray]:
    cols: list[list[str]] = [[] for _ in names]
    lines: list[int] = []
    for i, raw in enumerate(data.split(b"\n")[:-1]):
        line = first_line + i
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            report.problem(f"line {line}", f"not UTF-8 text ({e.reason} at byte {e.start})")
            continue
        if not text.strip() or (skip_line and skip_line(text)):
            continue
        if quoting:
            try:
                fields = next(csv.reader([text], delimiter=delimiter, strict=True))
            except csv.Error as e:
                report.problem(f"line {line}", f"cannot split into fields: {e}")
                continue
        else:
            fields = text.rstrip("\r").split(delimiter)
        if len(fields) != len(names):
            report.problem(f"line {line}", f"{len(fields)} fields where {len(names)} were expected: {text[:80]!r}")
            continue
        for c, v in zip(cols, fields, strict=True):
            c.append(v)
        lines.append(line)
    table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, cols, strict=True)})
    return table, np.asarray(lines, dtype=np.int64)


# ----- value parsers: vectorised, each returns a "bad" mask instead of raising ---------------------


class RowChecker:
    """Collects, per row, the first reason it is bad; reports them in line order at the end."""

    def __init__(self, n: int, where: np.ndarray, where_word: str = "line"):
        self.bad = np.zeros(n, dtype=bool)
        self.where = where
        self.word = where_word
        self.reasons: dict[int, str] = {}

    def flag(self, bad: np.ndarray, column: str, values: pa.Array | None = None, why: str = "bad value") -> None:
        new = np.flatnonzero(bad & ~self.bad)
        if not len(new):
            return
        self.bad |= bad
        for i in new[:1000].tolist():
            shown = ""
            if values is not None:
                v = values[i].as_py()
                shown = f" {str(v)[:60]!r}"
            self.reasons[i] = f"{column}: {why}{shown}"
        for i in new[1000:].tolist():
            self.reasons[i] = f"{column}: {why}"

    def report_to(self, report: ReadReport) -> np.ndarray:
        """Record the problems; returns the mask of rows to keep."""
        for i in sorted(self.reasons):
            report.problem(f"{self.word} {int(self.where[i])}", self.reasons[i])
        return ~self.bad


def _np_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _strings(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_string(col.type):
        col = col.cast(pa.string())
    return col


def nullify(col: pa.Array, unset: tuple[str, ...] = ("",)) -> pa.Array:
    """Trimmed strings, with the given 'no value' spellings turned into nulls."""
    s = pc.utf8_trim_whitespace(_strings(col))
    if unset:
        s = pc.if_else(pc.is_in(s, value_set=pa.array(list(unset), pa.string())), pa.scalar(None, pa.string()), s)
    return s


def parse_uint(col: pa.Array, typ: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Unsigned integers (decimal, or 0x hex) from strings or numbers; (values, bad mask)."""
    limit = _INT_MAX[typ]
    if pa.types.is_integer(col.type):
        if col.type == pa.uint64():
            v, bad = col, np.zeros(len(col), bool)
            if limit < _INT_MAX[pa.uint64()]:
                bad = _np_bool(pc.greater(v, pa.scalar(limit, pa.uint64())))
        else:
            v = col.cast(pa.int64())
            over = pc.greater(v, limit) if limit < 2**63 else pc.less(v, 0)
            bad = _np_bool(pc.or_(pc.less(v, 0), over))
        good = pc.if_else(pa.array(bad), pa.scalar(None, v.type), v)
        return good.cast(typ), bad
    if pa.types.is_floating(col.type):
        whole = pc.equal(pc.floor(col), col)
        ok = pc.and_(pc.and_(whole, pc.greater_equal(col, 0)), pc.less_equal(col, float(limit)))
        bad = ~_np_bool(ok) & _np_bool(pc.is_valid(col))
        vals = pc.if_else(pa.array(bad), pa.scalar(None, pa.float64()), col.cast(pa.float64()))
        return vals.cast(pa.uint64()).cast(typ), bad
    s = nullify(col)
    try:  # fast path: every value a plain decimal number
        v = s.cast(pa.uint64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        bad = np.zeros(len(s), dtype=bool)
        if limit < _INT_MAX[pa.uint64()]:
            bad = _np_bool(pc.greater(v, pa.scalar(limit, pa.uint64())))
            if bad.any():
                v = pc.if_else(pa.array(bad), pa.scalar(None, pa.uint64()), v)
        return v.cast(typ), bad
    dec = pc.match_substring_regex(s, r"^\d{1,20}$")
    hexa = pc.match_substring_regex(s, r"^0[xX][0-9a-fA-F]{1,16}$")
    valid = _np_bool(pc.is_valid(s))
    isdec = _np_bool(dec)
    ishex = _np_bool(hexa)
    bad = valid & ~isdec & ~ishex
    out = np.zeros(len(s), dtype=np.uint64)
    if isdec.any():
        d = pc.if_else(pa.array(isdec), s, pa.scalar("0"))
        # 20 digits can exceed uint64; parse as decimal first to catch that instead of wrapping
        too_long = _np_bool(pc.greater(pc.utf8_length(d), 19))
        if too_long.any():
            big = [int(x) > limit for x in d.filter(pa.array(too_long)).to_pylist()]
            idx = np.flatnonzero(too_long)
            bad[idx[np.asarray(big, dtype=bool)]] = True
            d = pc.if_else(pa.array(bad), pa.scalar("0"), d)
        out = np.where(isdec & ~bad, d.cast(pa.uint64()).to_numpy(zero_copy_only=False), out)
    if ishex.any():
        hx = s.filter(pa.array(ishex)).to_pylist()
        out[np.flatnonzero(ishex)] = np.asarray([int(x, 16) for x in hx], dtype=np.uint64)
    if limit < 0xFFFF_FFFF_FFFF_FFFF:
        bad |= (out > limit) & valid
    keep = valid & ~bad
    arr = pa.array(out, pa.uint64(), mask=~keep)
    return arr.cast(typ), bad


def parse_decimal_usec(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Decimal seconds ("1677024003.714845") -> int64 microseconds, exactly (no float rounding)."""
    if pa.types.is_floating(col.type):
        us = pc.round(pc.multiply(col.cast(pa.float64()), 1e6))
        return us.cast(pa.int64()), np.zeros(len(col), dtype=bool)
    if pa.types.is_integer(col.type):
        return pc.multiply(col.cast(pa.int64()), 1_000_000), np.zeros(len(col), dtype=bool)
    s = nullify(col)
    if not _np_bool(pc.match_substring(s, "-")).any():
        try:  # fast path: at most 6 decimals, as Zeek writes them
            us = pc.multiply(s.cast(pa.decimal128(24, 6)), pa.scalar(1_000_000, pa.decimal128(7, 0)))
            return us.cast(pa.int64()), np.zeros(len(s), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    parts = pc.extract_regex(s, r"^(?P<i>\d{1,12})(?:\.(?P<f>\d*))?$")
    valid = _np_bool(pc.is_valid(s))
    ok = _np_bool(pc.is_valid(parts))
    bad = valid & ~ok
    ip = pc.struct_field(parts, "i")
    fp = pc.struct_field(parts, "f")
    fp = pc.utf8_slice_codeunits(pc.utf8_rpad(pc.if_else(pc.is_null(fp), "", fp), 6, "0"), 0, 6)
    whole = pc.if_else(ok, ip, "0").cast(pa.int64())
    frac = pc.if_else(ok, fp, "0").cast(pa.int64())
    us = pc.add(pc.multiply(whole, 1_000_000), frac)
    return pc.if_else(pa.array(ok), us, pa.scalar(None, pa.int64())), bad


def parse_times_ms(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Times -> int64 ms since epoch: timestamps, ISO 8601 strings, epoch ms or epoch seconds.

    A number of 12 digits or more is milliseconds, a smaller one is seconds (as ``--since`` reads
    them). ISO 8601 without an offset is UTC.
    """
    n = len(col)
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            col = pc.assume_timezone(col, "UTC")
        return col.cast(TS_MS).cast(pa.int64()), np.zeros(n, dtype=bool)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        v = col.cast(pa.float64())
        ms = pc.if_else(pc.greater_equal(pc.abs(v), 1e11), v, pc.multiply(v, 1000.0))
        return pc.floor(ms).cast(pa.int64()), np.zeros(n, dtype=bool)
    s = nullify(col)
    valid = _np_bool(pc.is_valid(s))
    if valid.any() and _np_bool(pc.match_substring(s, "-")).any():
        # fast paths: all ISO 8601 with a zone (as flowpivot writes), or all without one (UTC)
        sample = str(s.filter(pa.array(valid))[0])
        zoned = sample.endswith("Z") or sample[-6:-5] in ("+", "-")
        for typ in (TS_NS, pa.timestamp("ns")) if zoned else (pa.timestamp("ns"), TS_NS):
            try:
                return _ns_to_ms(s.cast(typ)), np.zeros(n, dtype=bool)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
    numeric = _np_bool(pc.match_substring_regex(s, r"^\d{1,17}(\.\d+)?$"))
    out = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    if numeric.any():
        num = pc.if_else(pa.array(numeric), s, "0")
        parts = pc.extract_regex(num, r"^(?P<i>\d+)(?:\.(?P<f>\d*))?$")
        whole = pc.struct_field(parts, "i").cast(pa.int64()).to_numpy(zero_copy_only=False)
        fp = pc.struct_field(parts, "f")
        frac = pc.utf8_slice_codeunits(pc.utf8_rpad(pc.if_else(pc.is_null(fp), "", fp), 3, "0"), 0, 3)
        frac_ms = frac.cast(pa.int64()).to_numpy(zero_copy_only=False)
        is_ms = whole >= 100_000_000_000
        out = np.where(numeric, np.where(is_ms, whole, whole * 1000 + frac_ms), out)
    iso = valid & ~numeric
    if iso.any():
        t = s.filter(pa.array(iso))
        t = pc.replace_substring_regex(t, r"^(\d{4}-\d\d-\d\d)[ T]", r"\1T")
        has_zone = pc.match_substring_regex(t, r"(Z|[+-]\d\d:?\d\d)$")
        t = pc.if_else(has_zone, t, pc.binary_join_element_wise(t, "Z", ""))
        try:
            ms = _ns_to_ms(t.cast(TS_NS)).to_numpy(zero_copy_only=False)
            iso_bad = np.zeros(len(t), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ms = np.zeros(len(t), dtype=np.int64)
            iso_bad = np.zeros(len(t), dtype=bool)
            for j, v in enumerate(t.to_pylist()):
                try:
                    ms[j] = _ns_to_ms(pa.array([v]).cast(TS_NS))[0].as_py()
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    iso_bad[j] = True
        idx = np.flatnonzero(iso)
        out[idx] = ms
        bad[idx] = iso_bad
    keep = valid & ~bad
    return pa.array(out, pa.int64(), mask=~keep), bad


def _ipv4_fast(s: pa.Array, valid: np.ndarray) -> tuple[pa.Array, pa.Array, np.ndarray] | None:
    """All values dotted quads of small numbers: split and cast, no regex. None when that does not hold."""
    if not valid.any() or _np_bool(pc.match_substring(s, ":")).any():
        return None
    filled = s.fill_null("0.0.0.0") if not valid.all() else s
    parts = pc.split_pattern(filled, ".")
    if not _np_bool(pc.equal(pc.list_value_length(parts), 4)).all():
        return None
    try:
        flat = pc.list_flatten(parts).cast(pa.uint16())  # "" or " 1" or "x" fail here
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    o = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.uint32).reshape(-1, 4)
    if (o > 255).any():
        return None
    v4 = (o[:, 0] << 24) | (o[:, 1] << 16) | (o[:, 2] << 8) | o[:, 3]
    return pa.array(v4, pa.uint32(), mask=~valid), pa.nulls(len(s), IP6), np.zeros(len(s), dtype=bool)


def _ns_to_ms(ts: pa.Array) -> pa.Array:
    """Timestamps of any precision -> int64 ms since epoch, rounded down (as a flow's start is)."""
    ns = ts.cast(pa.int64())
    return (
        pc.floor(pc.divide(ns.cast(pa.float64()), 1e6)).cast(pa.int64())
        if _np_bool(pc.less(ns, 0)).any()
        else pc.divide(ns, 1_000_000)
    )


_V4_RE = r"^(?P<a>\d{1,3})\.(?P<b>\d{1,3})\.(?P<c>\d{1,3})\.(?P<d>\d{1,3})$"


def parse_addresses(col: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """Address strings -> (v4 uint32, v6 binary(16), bad mask). IPv4 is parsed without a Python loop."""
    s = nullify(col)
    n = len(s)
    valid = _np_bool(pc.is_valid(s))
    fast = _ipv4_fast(s, valid)
    if fast is not None:
        return fast
    parts = pc.extract_regex(s, _V4_RE)
    is4 = _np_bool(pc.is_valid(parts))
    v4 = np.zeros(n, dtype=np.uint64)
    bad = np.zeros(n, dtype=bool)
    if is4.any():
        octets = [
            pc.if_else(pa.array(is4), pc.struct_field(parts, k), "0").cast(pa.uint64()).to_numpy(zero_copy_only=False)
            for k in "abcd"
        ]
        over = np.zeros(n, dtype=bool)
        for o in octets:
            over |= o > 255
        v4 = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
        bad |= is4 & over
    rest = valid & ~is4
    v6_list: list[bytes | None] = [None] * n
    if rest.any():
        idx = np.flatnonzero(rest)
        for i, text in zip(idx.tolist(), s.filter(pa.array(rest)).to_pylist(), strict=True):
            try:
                ip = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                bad[i] = True
                continue
            if ip.version == 4:
                v4[i] = int(ip)
                is4[i] = True
            elif ip.ipv4_mapped is not None:  # type: ignore[union-attr]
                v4[i] = int(ip.ipv4_mapped)  # type: ignore[union-attr]
                is4[i] = True
            else:
                v6_list[i] = ip.packed
    a4 = pa.array(v4.astype(np.uint32), pa.uint32(), mask=~(is4 & ~bad))
    a6 = pa.array(v6_list, IP6) if rest.any() else pa.nulls(n, IP6)
    return a4, a6, bad


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
                cols[v4n] = _col(table, v4n).cast(pa.uint32()) if v4n in names else pa.nulls(n, pa.uint32())
                cols[v6n] = _col(table, v6n).cast(IP6) if v6n in names else pa.nulls(n, IP6)
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
            ms, bad = parse_times_ms(raw)
            check.flag(bad, f.name, raw, "not a time (ISO 8601, epoch ms or epoch seconds)")
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
    if "end" in cols and "start" in cols:
        backwards = _np_bool(pc.less(cols["end"], cols["start"]))
        check.flag(backwards, "end", None, "ends before it starts")
    keep = check.report_to(report)
    batch = conform(cols, n)
    if not keep.all():
        batch = batch.filter(pa.array(keep))
    return batch


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
    """A canonical CSV file (header line with canonical column names) -> store batches."""
    with open_text(Path(path), report) as fh:
        header = fh.readline()
        try:
            names = next(csv.reader([header.decode("utf-8").strip("\r\n")]))
        except (UnicodeDecodeError, StopIteration) as e:
            raise InputError(f"{path}: line 1: no CSV header line") from e
        names = [n.strip() for n in names]
        _check_columns(names, str(path))
        known = {f.name for f in FIELDS} | {f"{n}_{s}" for n in ("src_addr", "dst_addr") for s in ("v4", "v6")}
        extra = [n for n in names if n not in known]
        if extra:
            report.count("ignored columns", len(extra))
        for data, first in line_chunks(fh, first_line=2):
            table, lines = csv_chunk(data, first, names, report, include=[n for n in names if n in known])
            if table.num_rows:
                batch = canonical_batch(table, lines, report)
                report.records += batch.num_rows
                yield batch


def read_parquet(path: Path, report: ReadReport) -> Iterator[pa.RecordBatch]:
    """A canonical Parquet file (or one in the store's layout) -> store batches."""
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file: {e}") from e
    names = pf.schema_arrow.names
    _check_columns(names, str(path))
    size = Path(path).stat().st_size
    total = max(pf.metadata.num_rows, 1)
    known = {f.name for f in FIELDS} | {f.name for f in STORE_SCHEMA}
    wanted = [n for n in names if n in known]
    row = 0
    try:
        for b in pf.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
            t = pa.Table.from_batches([b])
            where = np.arange(row, row + b.num_rows, dtype=np.int64)
            row += b.num_rows
            batch = canonical_batch(t, where, report, "row")
            report.records += batch.num_rows
            report.advance(int(size * b.num_rows / total))
            yield batch
    except (pa.ArrowInvalid, OSError) as e:
        report.problem(f"row {row}", f"Parquet data cannot be read from here on: {e}")

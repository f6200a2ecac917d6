"""Column parsers every text and table reader shares: vectorised, each returns a "bad" mask.

No value raises: a value that does not parse (or does not fit the column) is flagged on its row,
and :class:`RowChecker` reports the rows with the reader's own place names (line, record, row).
"""

from __future__ import annotations

import ipaddress
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import IP6
from .base import ReadReport

__all__ = [
    "RowChecker",
    "nullify",
    "parse_addresses",
    "parse_decimal_usec",
    "parse_decimal_usec_checked",
    "parse_times_ms",
    "parse_times_checked",
    "MIN_MS",
    "MAX_MS",
    "OUT_OF_RANGE",
    "parse_uint",
]

TS_MS = pa.timestamp("ms", tz="UTC")
TS_NS = pa.timestamp("ns", tz="UTC")
_INT_MAX = {
    pa.uint8(): 0xFF,
    pa.uint16(): 0xFFFF,
    pa.uint32(): 0xFFFF_FFFF,
    pa.uint64(): 0xFFFF_FFFF_FFFF_FFFF,
}


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
                shown = f" {_shown(values, i)[:60]!r}"
            self.reasons[i] = f"{column}: {why}{shown}"
        for i in new[1000:].tolist():
            self.reasons[i] = f"{column}: {why}"

    def report_to(self, report: ReadReport) -> np.ndarray:
        """Record the problems; returns the mask of rows to keep."""
        for i in sorted(self.reasons):
            report.problem(f"{self.word} {int(self.where[i])}", self.reasons[i])
        return ~self.bad


def _shown(values: pa.Array, i: int) -> str:
    """A value as the reason shows it; a timestamp no calendar holds as its raw count."""
    try:
        return str(values[i].as_py())
    except (OverflowError, ValueError, OSError):
        unit = getattr(values.type, "unit", "")
        return f"{values.cast(pa.int64())[i].as_py()} {unit} since 1970".replace("  ", " ")


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
        # float(2**64 - 1) rounds up to 2**64, which no uint64 holds: compare strictly against limit + 1
        ok = pc.and_(pc.and_(whole, pc.greater_equal(col, 0)), pc.less(col, float(limit + 1)))
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
    us, bad, out = parse_decimal_usec_checked(col)
    return us, bad | out


#: Decimal seconds from 10**12 on (year 33658 and later) are out of range for every reader.
MAX_DECIMAL_S = 10**12


def parse_decimal_usec_checked(col: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """As :func:`parse_decimal_usec`, but returns (us, not a number, 10**12 s or more) apart.

    Never raises; a value of 10**12 seconds or more (or inf, nan as a number) is null and flagged.
    """
    n = len(col)
    none = np.zeros(n, dtype=bool)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
        valid = _np_bool(pc.is_valid(col))
        v = np.asarray(
            col.cast(pa.float64(), safe=False).fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64
        )
        with np.errstate(invalid="ignore", over="ignore"):
            bad = valid & np.isnan(v)
            out = valid & ~np.isnan(v) & (np.abs(v) >= MAX_DECIMAL_S)
            if pa.types.is_integer(col.type):
                whole = np.where(out, 0, np.asarray(col.fill_null(0).cast(pa.int64(), safe=False).to_numpy(), np.int64))
                us = whole * 1_000_000
            else:
                us = np.round(np.where(bad | out, 0.0, v) * 1e6).astype(np.int64)
        return pa.array(us, pa.int64(), mask=~valid | bad | out), bad, out
    s = nullify(col)
    if not _np_bool(pc.match_substring(s, "-")).any():
        try:  # fast path: at most 6 decimals, as Zeek writes them
            us = pc.multiply(s.cast(pa.decimal128(24, 6)), pa.scalar(1_000_000, pa.decimal128(7, 0))).cast(pa.int64())
            if not _np_bool(pc.greater_equal(us, MAX_DECIMAL_S * 1_000_000)).any():
                return us, none, none
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    parts = pc.extract_regex(s, r"^(?P<i>\d{1,12})(?:\.(?P<f>\d*))?$")
    valid = _np_bool(pc.is_valid(s))
    ok = _np_bool(pc.is_valid(parts))
    out = valid & ~ok & _np_bool(pc.match_substring_regex(s, r"^\d{13,}(\.\d*)?$"))
    bad = valid & ~ok & ~out
    ip = pc.struct_field(parts, "i")
    fp = pc.struct_field(parts, "f")
    fp = pc.utf8_slice_codeunits(pc.utf8_rpad(pc.if_else(pc.is_null(fp), "", fp), 6, "0"), 0, 6)
    whole = pc.if_else(ok, ip, "0").cast(pa.int64())
    frac = pc.if_else(ok, fp, "0").cast(pa.int64())
    us = pc.add(pc.multiply(whole, 1_000_000), frac)
    return pc.if_else(pa.array(ok), us, pa.scalar(None, pa.int64())), bad, out


#: The times a calendar date can hold (years 1 to 9999): what the store's day partitions, Python's
#: datetime and every output can show. A time outside them is a problem on its row, never an error.
MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
OUT_OF_RANGE = "outside the years 1 to 9999 that a date can hold"
_PER_MS = {"s": 0.001, "ms": 1, "us": 1_000, "ns": 1_000_000}


def parse_times_ms(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Times -> int64 ms since epoch: timestamps, ISO 8601 strings, epoch ms or epoch seconds.

    A number of 12 digits or more is milliseconds, a smaller one is seconds (as ``--since`` reads
    them). ISO 8601 without an offset is UTC. A time outside :data:`MIN_MS` .. :data:`MAX_MS` is
    bad like a value that is not a time; :func:`parse_times_checked` tells the two apart.
    """
    ms, bad, out = parse_times_checked(col)
    return ms, bad | out


def parse_times_checked(col: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """As :func:`parse_times_ms`, but returns (ms, not a time, outside the years 1..9999) apart.

    Never raises: a number too large for any clock (``9999999999999999`` ms, ``1e300``,
    ``inf``, a Parquet timestamp at int64 max) is flagged in the third mask and its value is null.
    """
    n = len(col)
    none = np.zeros(n, dtype=bool)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_timestamp(col.type):
        raw = np.asarray(col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        per = _PER_MS[col.type.unit]
        valid = _np_bool(pc.is_valid(col))
        if per == 0.001:  # seconds: compare before multiplying, which could wrap
            out = valid & ((raw < MIN_MS // 1000) | (raw > MAX_MS // 1000))
            ms = np.where(out, 0, raw) * 1000
        else:
            ms = np.floor_divide(raw, int(per))
            out = valid & ((ms < MIN_MS) | (ms > MAX_MS))
        return pa.array(ms, pa.int64(), mask=~valid | out), none, out
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        v = np.asarray(
            col.cast(pa.float64(), safe=False).fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64
        )
        valid = _np_bool(pc.is_valid(col))
        with np.errstate(invalid="ignore", over="ignore"):
            msf = np.floor(np.where(np.abs(v) >= 1e11, v, v * 1000.0))
            bad = valid & ~np.isfinite(msf)
            out = valid & np.isfinite(msf) & ((msf < MIN_MS) | (msf > MAX_MS))
            ms = np.where(bad | out, 0, msf).astype(np.int64)
        return pa.array(ms, pa.int64(), mask=~valid | bad | out), bad, out
    s = nullify(col)
    valid = _np_bool(pc.is_valid(s))
    if valid.any() and _np_bool(pc.match_substring(s, "-")).any():
        # fast paths: all ISO 8601 with a zone (as flowpivot writes), or all without one (UTC)
        sample = str(s.filter(pa.array(valid))[0])
        zoned = sample.endswith("Z") or sample[-6:-5] in ("+", "-")
        tz = (TS_US, pa.timestamp("us")) if zoned else (pa.timestamp("us"), TS_US)
        for typ in (*tz, TS_NS, pa.timestamp("ns")):
            try:
                ms = _ts_to_ms(s.cast(typ))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            return ms, none, none
    numeric = _np_bool(pc.match_substring_regex(s, r"^\d{1,17}(\.\d+)?$"))
    out_ms = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    out = np.zeros(n, dtype=bool)
    if numeric.any():
        num = pc.if_else(pa.array(numeric), s, "0")
        parts = pc.extract_regex(num, r"^(?P<i>\d+)(?:\.(?P<f>\d*))?$")
        whole = pc.struct_field(parts, "i").cast(pa.int64()).to_numpy(zero_copy_only=False)
        fp = pc.struct_field(parts, "f")
        frac = pc.utf8_slice_codeunits(pc.utf8_rpad(pc.if_else(pc.is_null(fp), "", fp), 3, "0"), 0, 3)
        frac_ms = frac.cast(pa.int64()).to_numpy(zero_copy_only=False)
        is_ms = whole >= 100_000_000_000
        out_ms = np.where(numeric, np.where(is_ms, whole, whole * 1000 + frac_ms), out_ms)
        out = numeric & (out_ms > MAX_MS)
    iso = valid & ~numeric
    if iso.any():
        t = s.filter(pa.array(iso))
        t = pc.replace_substring_regex(t, r"^(\d{4}-\d\d-\d\d)[ T]", r"\1T")
        has_zone = pc.match_substring_regex(t, r"(Z|[+-]\d\d:?\d\d)$")
        t = pc.if_else(has_zone, t, pc.binary_join_element_wise(t, "Z", ""))
        ms_iso = np.zeros(len(t), dtype=np.int64)
        iso_bad = np.zeros(len(t), dtype=bool)
        iso_out = np.zeros(len(t), dtype=bool)
        for typ in (TS_US, TS_NS):
            try:
                ms_iso = _ts_to_ms(t.cast(typ)).to_numpy(zero_copy_only=False)
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        else:  # one of them is not a time (or too far out for a date): find which, one by one
            for j, v in enumerate(t.to_pylist()):
                got = _one_iso_ms(v)
                if got is not None:
                    ms_iso[j] = got
                elif _BIG_YEAR.match(v) or _BIG_NUMBER.match(v):
                    iso_out[j] = True  # a time, just not one a date holds
                else:
                    iso_bad[j] = True
        idx = np.flatnonzero(iso)
        out_ms[idx] = ms_iso
        bad[idx] = iso_bad
        out[idx] = iso_out
    keep = valid & ~bad & ~out
    return pa.array(out_ms, pa.int64(), mask=~keep), bad, out


TS_US = pa.timestamp("us", tz="UTC")
_BIG_YEAR = re.compile(r"^[+-]?\d{5,}-\d\d-\d\dT")
_BIG_NUMBER = re.compile(r"^\d{18,}(\.\d+)?Z$")  # epoch ms too long for any date (a Z was appended)


def _one_iso_ms(v: str) -> int | None:
    for typ in (TS_US, TS_NS):
        try:
            return int(_ts_to_ms(pa.array([v]).cast(typ))[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


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


def _ts_to_ms(ts: pa.Array) -> pa.Array:
    """Timestamps of any unit -> int64 ms since epoch, rounded down (as a flow's start is)."""
    raw = ts.cast(pa.int64())
    per = _PER_MS[ts.type.unit]
    if per == 1:
        return raw
    if per == 0.001:
        return pc.multiply(raw, 1000)
    vals = np.floor_divide(np.asarray(raw.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64), int(per))
    return pa.array(vals, pa.int64(), mask=~_np_bool(pc.is_valid(raw)))


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

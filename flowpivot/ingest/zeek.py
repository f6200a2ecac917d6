"""Zeek conn.log, as TSV (the ASCII writer's ``#fields``/``#types`` header) or as JSON lines.

One connection is one record, originator to responder: ``src`` is ``id.orig_h``, packets and
bytes are ``orig_pkts``/``orig_ip_bytes``, the responder's go to ``rev_packets``/``rev_bytes``.
Times are exact: ``ts`` and ``duration`` are read as decimal microseconds, and
``end = floor((ts + duration) in ms)``. TCP flags are derived from the history letters (see
docs/ingest.md for the table). Columns other than the ones used (service, labels, ...) are
ignored. Zeek logs are often gzipped: ``conn.log.gz`` is read the same way.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ..errors import InputError
from ..schema import conform
from .base import ReadReport
from .columns import (
    MAX_MS,
    MIN_MS,
    OUT_OF_RANGE,
    RowChecker,
    _np_bool,
    nullify,
    parse_addresses,
    parse_decimal_usec_checked,
    parse_times_checked,
    parse_uint,
)
from .textio import csv_chunk, explain_empty, line_chunks, open_text

__all__ = ["read_zeek", "HISTORY_FLAGS", "history_flags", "ZEEK_EXPORTER"]

#: What the ``exporter`` column says for Zeek connections (a sensor is not named in conn.log).
ZEEK_EXPORTER = "zeek"

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

#: Zeek history letter -> TCP flags it proves were seen. Uppercase: originator; lowercase: responder.
HISTORY_FLAGS = {
    "s": SYN,  # a SYN without ACK
    "h": SYN | ACK,  # a SYN+ACK ("handshake")
    "a": ACK,  # a pure ACK
    "d": PSH | ACK,  # a packet with payload
    "f": FIN,  # a packet with FIN
    "r": RST,  # a packet with RST
}

PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}
USED = (
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "duration", "conn_state", "history",
    "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes",
)  # fmt: skip
REQUIRED = ("ts", "id.orig_h", "id.resp_h")


def history_flags(history: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Zeek history strings -> (originator flags, responder flags), uint16; null history -> null."""
    h = history.cast(pa.string())
    orig = np.zeros(len(h), dtype=np.uint16)
    resp = np.zeros(len(h), dtype=np.uint16)
    for letter, bits in HISTORY_FLAGS.items():
        orig |= np.where(_np_bool(pc.match_substring(h, letter.upper())), bits, 0).astype(np.uint16)
        resp |= np.where(_np_bool(pc.match_substring(h, letter)), bits, 0).astype(np.uint16)
    missing = ~_np_bool(pc.is_valid(h))
    return pa.array(orig, pa.uint16(), mask=missing), pa.array(resp, pa.uint16(), mask=missing)


def _floor_ms(us: pa.Array) -> pa.Array:
    """Microseconds -> milliseconds, rounded down (also before 1970)."""
    if us.null_count == 0:
        return pa.array(np.floor_divide(us.to_numpy(), 1000), pa.int64())
    v = np.asarray(us.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    return pa.array(np.floor_divide(v, 1000), pa.int64(), mask=~_np_bool(pc.is_valid(us)))


def _zeek_batch(
    t: pa.Table,
    where: np.ndarray,
    report: ReadReport,
    where_word: str = "line",
    unset: tuple[str, ...] = ("", "-", "(empty)"),
) -> pa.RecordBatch:
    """Columns named as in conn.log (strings from TSV, typed from JSON) -> a store batch."""
    n = t.num_rows
    check = RowChecker(n, where, where_word)
    names = set(t.column_names)

    def col(name: str) -> pa.Array | None:
        if name not in names:
            return None
        c = t.column(name)
        c = c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c
        if pa.types.is_string(c.type) or pa.types.is_large_string(c.type):
            c = nullify(c, unset)
        return c

    cols: dict[str, pa.Array] = {}
    ts = col("ts")
    assert ts is not None
    if pa.types.is_string(ts.type) and _np_bool(pc.match_substring(ts, "-")).any():
        ms, bad, out = parse_times_checked(ts)  # JSON logs written with ISO 8601 timestamps
        start_us = pc.multiply(ms, 1000)
    else:
        start_us, bad, out = parse_decimal_usec_checked(ts)
    check.flag(out, "ts", ts, OUT_OF_RANGE)
    check.flag(bad | ~_np_bool(pc.is_valid(start_us)), "ts", ts, "not a Zeek time")
    dur = col("duration")
    if dur is not None:
        dur_us, bad, out = parse_decimal_usec_checked(dur)
        check.flag(bad | out, "duration", dur, "not a Zeek interval")
        dur_us = pc.if_else(pc.is_valid(dur_us), dur_us, 0)
    else:
        dur_us = pa.array(np.zeros(n, dtype=np.int64))
    # both parts are below 10**18 us (parse_decimal_usec_checked), so the sum cannot wrap
    start_ms = _floor_ms(start_us)
    end_ms = _floor_ms(pc.add(start_us, dur_us))
    for name, v in (("ts", start_ms), ("duration", end_ms)):
        lo_hi = pc.min_max(v).as_py()
        if lo_hi["min"] is not None and (lo_hi["min"] < MIN_MS or lo_hi["max"] > MAX_MS):
            far = _np_bool(pc.or_(pc.less(v, MIN_MS), pc.greater(v, MAX_MS)))
            why = OUT_OF_RANGE + ("" if name == "ts" else " (ts + duration)")
            check.flag(far, name, ts if name == "ts" else dur, why)
    if check.bad.any():  # no value of a dropped row may reach the store's timestamp columns
        cols["start"] = pc.if_else(pa.array(check.bad), pa.scalar(0, pa.int64()), start_ms)
        cols["end"] = pc.if_else(pa.array(check.bad), pa.scalar(0, pa.int64()), end_ms)
    else:
        cols["start"], cols["end"] = start_ms, end_ms
    for side, key in (("src_addr", "id.orig_h"), ("dst_addr", "id.resp_h")):
        c = col(key)
        assert c is not None
        v4, v6, bad = parse_addresses(c)
        check.flag(bad | ~_np_bool(pc.or_(pc.is_valid(v4), pc.is_valid(v6))), key, c, "not an IP address")
        cols[f"{side}_v4"], cols[f"{side}_v6"] = v4, v6

    def uint(key: str, typ: pa.DataType) -> pa.Array | None:
        c = col(key)
        if c is None:
            return None
        v, bad = parse_uint(c, typ)
        check.flag(bad, key, c, f"not a {typ}")
        return v

    proto = col("proto")
    if proto is not None:
        p = pc.utf8_lower(proto.cast(pa.string()))
        num = pc.take(
            pa.array(list(PROTOCOLS.values()), pa.uint8()), pc.index_in(p, value_set=pa.array(list(PROTOCOLS)))
        )
        v6 = _np_bool(pc.is_valid(cols["src_addr_v6"]))
        cols["protocol"] = pc.if_else(pa.array(v6 & _np_bool(pc.equal(num, 1))), pa.scalar(58, pa.uint8()), num)
        unknown = _np_bool(pc.is_valid(p)) & ~_np_bool(pc.is_valid(num)) & ~_np_bool(pc.equal(p, "unknown_transport"))
        if unknown.any():
            report.count("connections with an unknown proto (kept, protocol null)", int(unknown.sum()))
    else:
        cols["protocol"] = pa.nulls(n, pa.uint8())
    sp, dp = uint("id.orig_p", pa.uint16()), uint("id.resp_p", pa.uint16())
    is_icmp = _np_bool(pc.is_in(cols["protocol"], value_set=pa.array([1, 58], pa.uint8())))
    # ports stay as Zeek logs them (for ICMP: orig_p is the type, resp_p the code); the ICMP
    # columns say it in the same words as for every other source
    if sp is not None:
        cols["src_port"] = sp
    if dp is not None:
        cols["dst_port"] = dp
    if is_icmp.any() and sp is not None and dp is not None:
        mask = pa.array(is_icmp)
        cols["icmp_type"] = pc.if_else(mask, sp.cast(pa.uint8(), safe=False), pa.scalar(None, pa.uint8()))
        cols["icmp_code"] = pc.if_else(mask, dp.cast(pa.uint8(), safe=False), pa.scalar(None, pa.uint8()))
    for name, key in (
        ("packets", "orig_pkts"),
        ("bytes", "orig_ip_bytes"),
        ("rev_packets", "resp_pkts"),
        ("rev_bytes", "resp_ip_bytes"),
    ):
        v = uint(key, pa.uint64())
        if v is not None:
            cols[name] = v
    hist = col("history")
    if hist is not None:
        o, r = history_flags(hist)
        is_tcp = pa.array(_np_bool(pc.equal(cols["protocol"], 6)))
        cols["tcp_flags"] = pc.if_else(is_tcp, o, pa.scalar(0, pa.uint16()))
        cols["rev_tcp_flags"] = pc.if_else(is_tcp, r, pa.scalar(0, pa.uint16()))
        cols["history"] = hist.cast(pa.string())
    for name in ("conn_state", "uid"):
        c = col(name)
        if c is not None:
            cols[name] = c.cast(pa.string())
    cols["sampling_rate"] = pa.array(np.ones(n, dtype=np.uint32))
    cols["exporter"] = pa.array(np.full(n, ZEEK_EXPORTER, dtype=object), pa.string())
    keep = check.report_to(report)
    batch = conform(cols, n)
    return batch if keep.all() else batch.filter(pa.array(keep))


_LEADING_TAB = re.compile(rb"(?m)^\t+")
_NL_TAB = re.compile(rb"\n\t")


def _directive(raw: str, sep: str) -> tuple[str, str]:
    """A '#' header line (stray leading whitespace allowed) -> (key, value)."""
    raw = raw.lstrip(" \t").rstrip("\r\n")
    if raw.startswith("#separator"):
        value = raw[len("#separator") :].strip()
        if not value.startswith("\\x"):
            return "separator", value
        try:
            return "separator", value.encode().decode("unicode_escape")
        except UnicodeDecodeError as e:  # a damaged escape ("\\xZ")
            raise ValueError(f"#separator {value[:20]!r} is not a separator ({e.reason})") from e
    key, _, value = raw[1:].partition(sep)
    return key, value


def _scoped(name: str) -> str:
    """A column name written with another ``scope_sep`` (``id_orig_h``) -> Zeek's default (``id.orig_h``)."""
    if name in USED:
        return name
    for u in _DOTTED:  # all of them "id.<field>": the scope separator is the third character
        if len(name) == len(u) and name[:2] == u[:2] and name[3:] == u[3:] and not name[2].isalnum():
            return u
    return name


_DOTTED = tuple(u for u in USED if "." in u)


@dataclass
class _Layout:
    """What the current header block says: separator and column names (scope_sep undone)."""

    sep: str
    names: list[str]
    used: list[str]
    skip_why: str = ""  # non-empty: the lines under this header are not conn.log lines
    unset: tuple[str, ...] = ("", "-", "(empty)")  # #unset_field, #empty_field: null


def _layout(meta: dict[str, str]) -> _Layout:
    sep = meta["separator"]
    names = [_scoped(n) for n in meta["fields"].split(sep)]
    why = ""
    missing = [c for c in REQUIRED if c not in names]
    if meta.get("path", "conn") != "conn":
        why = f"a Zeek {meta['path']} log, not conn.log"
    elif missing:
        why = f"#fields has no {', '.join(missing)}"
    unset = ("", meta.get("unset_field", "-"), meta.get("empty_field", "(empty)"))
    return _Layout(sep, names, [c for c in names if c in USED], why, unset)


def _header(fh: io.BufferedReader, path: Path) -> tuple[dict[str, str], int]:
    """Read the '#' header lines of a Zeek TSV log; returns its directives and the next line number."""
    meta: dict[str, str] = {"separator": "\t"}
    line = 0
    while True:
        peek = fh.peek(64)[:64].lstrip(b" \t")[:1]
        if peek != b"#":
            break
        try:
            key, value = _directive(fh.readline().decode("utf-8", "replace"), meta["separator"])
        except ValueError as e:
            raise InputError(f"{path}: line {line + 1}: {e}") from e
        line += 1
        meta[key] = value
    if "fields" not in meta:
        raise InputError(f"{path}: line {line + 1}: not a Zeek TSV log (no #fields line in its header)")
    return meta, line + 1


def read_zeek(path: Path, report: ReadReport) -> Iterator[pa.RecordBatch]:
    """A Zeek conn.log (TSV or JSON lines, optionally gzipped) -> store batches.

    TSV logs are read as Zeek and its users write them: any ``scope_sep`` (``id_orig_h``), header
    and data lines with a stray leading TAB, and concatenated logs (``cat a.log b.log``) whose
    later header blocks name the columns in another order (each block's ``#fields`` applies to
    the lines under it; lines under the header of another log path are skipped and counted).
    """
    path = Path(path)
    data_lines = 0
    with open_text(path, report) as fh:
        reader = fh
        first = reader.peek(64)[:64].lstrip(b" \t")[:1]
        if first == b"{":
            yield from _read_json(reader, path, report)
            return
        meta, line = _header(reader, path)
        layout = _layout(meta)
        if layout.skip_why.startswith("#fields"):
            raise InputError(f"{path}: line {line - 1}: {layout.skip_why}; is this a conn.log?")
        if layout.skip_why:
            raise InputError(f"{path}: {layout.skip_why}: it holds no connections to ingest")
        for data, first_line in line_chunks(reader, first_line=line):
            for seg, seg_first, header in _segments(data, first_line):
                if header:
                    for k, raw in enumerate(seg.decode("utf-8", "replace").splitlines()):
                        try:
                            key, value = _directive(raw, meta["separator"])
                        except ValueError as e:  # the separator in force is kept
                            report.problem(f"line {seg_first + k}", str(e))
                            continue
                        meta[key] = value
                        if key == "fields":
                            layout = _layout(meta)
                            if layout.skip_why:
                                report.problem(
                                    f"line {seg_first + k}",
                                    f"a header block of {layout.skip_why}: the lines under it are skipped",
                                )
                            else:
                                report.count("header blocks after the first (concatenated logs)")
                    continue
                if layout.skip_why:
                    report.count("lines skipped under a header that is not conn.log", seg.count(b"\n"))
                    continue
                batch, n_lines = _tsv_segment(seg, seg_first, layout, report)
                data_lines += n_lines
                if batch is not None:
                    report.records += batch.num_rows
                    yield batch
    explain_empty(report, data_lines)


def _segments(data: bytes, first_line: int) -> Iterator[tuple[bytes, int, bool]]:
    """Split whole lines into runs of data lines and runs of '#' lines: (bytes, first line, is header).

    A header line starts with '#' after optional spaces or TABs; a '#' inside a value does not
    count. Only the (rare) '#' characters are looked at, so a chunk without any costs one scan.
    """
    headers: list[tuple[int, int]] = []
    pos = data.find(b"#")
    while pos >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        end = data.find(b"\n", pos) + 1 or len(data)
        if not data[start:pos].strip(b" \t"):
            headers.append((start, end))
        pos = data.find(b"#", end)
    if not headers:
        yield data, first_line, False
        return
    done, line = 0, first_line
    for start, end in headers:
        if start > done:
            seg = data[done:start]
            yield seg, line, False
            line += seg.count(b"\n")
        yield data[start:end], line, True
        line += 1
        done = end
    if done < len(data):
        yield data[done:], line, False


def _tsv_segment(
    data: bytes, first_line: int, layout: _Layout, report: ReadReport
) -> tuple[pa.RecordBatch | None, int]:
    """Data lines under one header -> (a store batch or None, number of non-blank lines)."""
    if layout.sep == "\t" and (data.startswith(b"\t") or _NL_TAB.search(data)):  # re: 5x faster than `in`
        data, k = _LEADING_TAB.subn(b"", data)
        report.count("lines with a stray leading TAB (read without it)", k)
    bad_before = report.bad
    table, lines = csv_chunk(
        data, first_line, layout.names, report, delimiter=layout.sep, quoting=False, include=layout.used
    )
    n_lines = table.num_rows + report.bad - bad_before
    if not table.num_rows:
        return None, n_lines
    return _zeek_batch(table, lines, report, unset=layout.unset), n_lines


def _read_json(fh: io.BufferedReader, path: Path, report: ReadReport) -> Iterator[pa.RecordBatch]:
    data_lines = 0
    for data, first_line in line_chunks(fh):
        bad_before = report.bad
        table, lines = _json_chunk(data, first_line, report)
        data_lines += table.num_rows + report.bad - bad_before
        if table.num_rows == 0:
            continue
        missing = [c for c in REQUIRED if c not in table.column_names]
        if missing:
            # rows without them cannot be flows; report each and carry on
            for ln in lines.tolist():
                report.problem(f"line {ln}", f"no {', '.join(missing)}")
            continue
        used = [c for c in table.column_names if c in USED]
        batch = _zeek_batch(table.select(used), lines, report)
        report.records += batch.num_rows
        yield batch
    explain_empty(report, data_lines)


def _json_chunk(data: bytes, first_line: int, report: ReadReport) -> tuple[pa.Table, np.ndarray]:
    nonblank = (
        [i for i, ln in enumerate(data.split(b"\n")[:-1]) if ln.strip()]
        if b"\n\n" in data or data.startswith(b"\n")
        else None
    )
    try:
        t = pajson.read_json(
            io.BytesIO(data), read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1)
        )
        t = _flatten_id(t)
        t = t.rename_columns([_scoped(c) for c in t.column_names])
        t = t.select(list(dict.fromkeys(c for c in t.column_names if c in USED)))
        if nonblank is None:
            lines = np.arange(t.num_rows, dtype=np.int64) + first_line
        else:
            lines = np.asarray(nonblank, dtype=np.int64) + first_line
        if len(lines) == t.num_rows:
            return t, lines
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    rows: list[dict] = []
    keep: list[int] = []
    for i, raw in enumerate(data.split(b"\n")[:-1]):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            report.problem(f"line {first_line + i}", f"not a JSON object: {str(e)[:80]}")
            continue
        rows.append(
            {_scoped(k): (str(v) if isinstance(v, (dict, list)) else v) for k, v in obj.items() if _scoped(k) in USED}
        )
        keep.append(first_line + i)
    if not rows:
        return pa.table({}), np.zeros(0, dtype=np.int64)
    # every key of every row (from_pylist would look at the first row only), all as strings:
    # numbers written as JSON numbers stay exact decimals this way ("1677024003.714845")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.Table.from_pylist(
        [{k: None if v is None else v if isinstance(v, str) else json.dumps(v) for k, v in r.items()} for r in rows],
        schema=pa.schema([(k, pa.string()) for k in keys]),
    )
    return table, np.asarray(keep, dtype=np.int64)


def _flatten_id(t: pa.Table) -> pa.Table:
    """Zeek JSON keeps "id.orig_h" as a flat key; pyarrow keeps it flat too. Nothing to do unless nested."""
    if "id" in t.column_names and pa.types.is_struct(t.schema.field("id").type):
        id_col = t.column("id").combine_chunks()
        for sub in ("orig_h", "orig_p", "resp_h", "resp_p"):
            t = t.append_column(f"id.{sub}", pc.struct_field(id_col, sub))
    return t

"""nfdump's own CSV output (``nfdump -r FILE -o csv > flows.csv``), saved by a user, in.

nfdump's CSV prints whole seconds and local time; times are read as UTC (run nfdump with
TZ=UTC). The summary block nfdump appends without ``-q`` is skipped. Prefer the nfcapd file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from ..schema import conform
from .base import ReadReport
from .columns import OUT_OF_RANGE, RowChecker, _np_bool, nullify, parse_addresses, parse_times_checked, parse_uint
from .nfdump import NFDUMP_CSV_COLUMNS, NFDUMP_CSV_HEADER, NFDUMP_CSV_ROW, PROTOCOL_NUMBERS, flag_strings
from .textio import csv_chunk, explain_empty, line_chunks, open_text

__all__ = ["read_nfdump_csv"]


def read_nfdump_csv(path: Path, report: ReadReport) -> Iterator[pa.RecordBatch]:
    """The output of ``nfdump -r FILE -o csv`` (nfdump 1.6/1.7) -> store batches.

    nfdump's CSV prints whole seconds and local time; times are read as UTC (run nfdump with
    TZ=UTC). The summary block nfdump appends without ``-q`` is skipped.
    """
    path = Path(path)
    with open_text(path, report) as fh:
        reader = fh
        first_line = 2
        if NFDUMP_CSV_ROW.match(reader.peek(64)[:64]):
            names = list(NFDUMP_CSV_COLUMNS)
            first_line = 1
        else:
            header = reader.readline().decode("utf-8", "replace").strip()
            names = [h.strip() for h in header.split(",")]
            if tuple(names[: len(NFDUMP_CSV_HEADER)]) != NFDUMP_CSV_HEADER:
                raise InputError(
                    f"{path}: line 1: not nfdump CSV (expected a header starting with {','.join(NFDUMP_CSV_HEADER)}, "
                    "or the lines of nfdump -q -o csv)"
                )
        in_summary = False
        data_lines = 0

        def summary_line(text: str) -> bool:
            return text.strip() in ("Summary",) or text.startswith("flows,bytes,packets")

        for data, first in line_chunks(reader, first_line=first_line):
            if in_summary:
                continue
            cut = data.find(b"\nSummary\n")
            if data.startswith(b"Summary\n"):
                cut = -1
                data, in_summary = b"", True
            elif cut >= 0:
                data, in_summary = data[: cut + 1], True
            if not data:
                continue
            bad_before = report.bad
            table, lines = csv_chunk(data, first, names, report, skip_line=summary_line)
            data_lines += table.num_rows + report.bad - bad_before
            if table.num_rows:
                batch = _csv_to_batch(table, lines, report, path.name)
                report.records += batch.num_rows
                yield batch
    explain_empty(report, data_lines)


def _protocols(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    s = pc.utf8_upper(nullify(col))
    numeric = _np_bool(pc.match_substring_regex(s, r"^\d+$"))
    keys = pa.array(list(PROTOCOL_NUMBERS), pa.string())
    values = pa.array(list(PROTOCOL_NUMBERS.values()), pa.uint8())
    idx = pc.index_in(s, value_set=keys)
    named = pc.take(values, idx)
    nums, nbad = parse_uint(pc.if_else(pa.array(numeric), s, pa.scalar(None, pa.string())), pa.uint8())
    out = pc.coalesce(named, nums)
    bad = _np_bool(pc.is_valid(s)) & ~_np_bool(pc.is_valid(out))
    return out, bad | nbad


def _csv_to_batch(t: pa.Table, lines: np.ndarray, report: ReadReport, fallback_exporter: str) -> pa.RecordBatch:
    n = t.num_rows
    check = RowChecker(n, lines)
    cols: dict[str, pa.Array] = {}
    names = set(t.column_names)
    for name, key in (("start", "ts"), ("end", "te")):
        c = t.column(key).combine_chunks()
        ms, bad, out = parse_times_checked(c)
        check.flag(out, name, c, OUT_OF_RANGE)
        check.flag(bad | ~_np_bool(pc.is_valid(ms)), name, c, "not a time")
        cols[name] = ms
    for side, key in (("src_addr", "sa"), ("dst_addr", "da")):
        c = t.column(key).combine_chunks()
        v4, v6, bad = parse_addresses(c)
        check.flag(bad | ~_np_bool(pc.or_(pc.is_valid(v4), pc.is_valid(v6))), side, c, "not an IP address")
        cols[f"{side}_v4"], cols[f"{side}_v6"] = v4, v6
    proto_raw = t.column("pr").combine_chunks()
    cols["protocol"], bad = _protocols(proto_raw)
    check.flag(bad, "protocol", proto_raw, "unknown protocol")
    is_icmp = _np_bool(pc.is_in(cols["protocol"], value_set=pa.array([1, 58], pa.uint8())))

    def uint(key: str, typ: pa.DataType, rows: np.ndarray | None = None) -> pa.Array | None:
        if key not in names:
            return None
        c = t.column(key).combine_chunks()
        v, bad = parse_uint(c, typ)
        check.flag(bad if rows is None else bad & rows, key, c, f"not a {typ}")
        return v

    cols["src_port"] = uint("sp", pa.uint16(), ~is_icmp)
    dp_raw = t.column("dp").combine_chunks()
    dp, _ = parse_uint(dp_raw, pa.uint16())
    check.flag(_np_bool(pc.is_null(dp)) & ~is_icmp & _np_bool(pc.is_valid(nullify(dp_raw))), "dp", dp_raw, "not a port")
    if is_icmp.any():
        # nfdump prints an ICMP flow's destination port as "type.code"
        tc = pc.extract_regex(nullify(dp_raw), r"^(?P<t>\d{1,3})\.(?P<c>\d{1,3})$")
        ty = pc.struct_field(tc, "t").cast(pa.uint16())
        co = pc.struct_field(tc, "c").cast(pa.uint16())
        packed = pc.coalesce(pc.add(pc.multiply(ty, 256), co), dp)
        mask = pa.array(is_icmp)
        cols["dst_port"] = pc.if_else(mask, packed, dp).cast(pa.uint16())
        cols["src_port"] = pc.if_else(mask, pa.scalar(0, pa.uint16()), cols["src_port"])
        cols["icmp_type"] = pc.if_else(
            mask, pc.shift_right(cols["dst_port"], 8).cast(pa.uint8()), pa.scalar(None, pa.uint8())
        )
        cols["icmp_code"] = pc.if_else(
            mask, pc.bit_wise_and(cols["dst_port"], 0xFF).cast(pa.uint8()), pa.scalar(None, pa.uint8())
        )
    else:
        cols["dst_port"] = dp
    flg = t.column("flg").combine_chunks()
    fv, bad = flag_strings(flg)
    check.flag(bad, "flg", flg, "not nfdump TCP flags")
    cols["tcp_flags"] = pc.if_else(pa.array(is_icmp), pa.scalar(None, pa.uint16()), fv)
    for name, key, typ in (("packets", "ipkt", pa.uint64()), ("bytes", "ibyt", pa.uint64()), ("in_if", "in", pa.uint32()),
                           ("out_if", "out", pa.uint32()), ("src_as", "sas", pa.uint32()), ("dst_as", "das", pa.uint32()),
                           ("direction", "dir", pa.uint8())):  # fmt: skip
        v = uint(key, typ)
        if v is not None:
            cols[name] = v
    for name, key in (("rev_packets", "opkt"), ("rev_bytes", "obyt")):
        v = uint(key, pa.uint64())
        if v is not None:
            cols[name] = pc.if_else(pc.equal(v, 0), pa.scalar(None, pa.uint64()), v)
    cols["sampling_rate"] = pa.array(np.ones(n, dtype=np.uint32))
    if "ra" in names:
        cols["exporter"] = pc.coalesce(
            nullify(t.column("ra").combine_chunks(), ("", "0.0.0.0", "::")), pa.scalar(fallback_exporter)
        )
    else:
        cols["exporter"] = pa.array([fallback_exporter] * n, pa.string())
    keep = check.report_to(report)
    batch = conform(cols, n)
    return batch if keep.all() else batch.filter(pa.array(keep))

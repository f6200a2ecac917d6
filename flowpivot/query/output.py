"""Text output of ``flows``: nfdump's line format with TCP flag letters, and the top-N tables.

``-o line`` prints what ``nfdump -o long`` prints without the ToS column: first seen, duration,
protocol, ``src:port -> dst:port``, the flags in nfdump 1.7's eight letters ``CEUAPRSF`` (``.``
for a bit not set, e.g. ``...AP.S.``), packets, bytes, flows. ICMP flows show ``type.code`` as the
destination port, as nfdump does. Addresses are printed in full (nfdump shortens long IPv6 ones
unless given ``-6``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa

from .grammar import PROTOCOLS
from .stats import StatSpec

__all__ = ["flag_letters", "proto_name", "duration_text", "line_rows", "write_line", "write_stats"]

_PROTO_NAMES = {v: k.upper() for k, v in reversed(list(PROTOCOLS.items()))}
_FLAGS = "CEUAPRSF"


def flag_letters(flags: int | None) -> str:
    """TCP flags as nfdump 1.7 prints them: ``CEUAPRSF`` from bit 0x80 down to 0x01, ``.`` when unset."""
    f = int(flags or 0)
    return "".join(ch if f & (0x80 >> i) else "." for i, ch in enumerate(_FLAGS))


def proto_name(p: int | None) -> str:
    if p is None:
        return "-"
    return _PROTO_NAMES.get(int(p), str(p))


def duration_text(ms: int) -> str:
    """``HH:MM:SS.mmm`` (hours go past 24 rather than wrap)."""
    ms = max(int(ms), 0)
    s, milli = divmod(ms, 1000)
    m, sec = divmod(s, 60)
    h, mi = divmod(m, 60)
    return f"{h:02d}:{mi:02d}:{sec:02d}.{milli:03d}"


def _ts(d: dt.datetime | None) -> str:
    if d is None:
        return "-"
    return d.strftime("%Y-%m-%d %H:%M:%S.") + f"{d.microsecond // 1000:03d}"


def _endpoint(addr: str | None, port: int | None, width: int, left: bool) -> str:
    a = addr or "-"
    p = "-" if port is None else str(port)
    text = f"{a:>15}:{p:<5}" if ":" not in a else f"{a}.{p:<5}"  # nfdump: IPv6 address.port
    return f"{text:<{width}}" if left else f"{text:>{width}}"


HEADER = (
    f"{'Date first seen':<23} {'Duration':>16} {'Proto':<5} {'Src IP Addr:Port':>22}    {'Dst IP Addr:Port':<22}"
    f" {'Flags':>8} {'Packets':>8} {'Bytes':>8} {'Flows':>5}"
)


def line_rows(table: pa.Table) -> Iterator[str]:
    """One text line per flow of an output-form table (:func:`flowpivot.schema.to_output`)."""
    for r in table.to_pylist():
        start, end = r["start"], r["end"]
        dur = int((end - start).total_seconds() * 1000) if start is not None and end is not None else 0
        proto = r["protocol"]
        dport: Any = r["dst_port"]
        if proto in (1, 58):
            t = r["icmp_type"] if r["icmp_type"] is not None else (dport or 0) >> 8
            c = r["icmp_code"] if r["icmp_code"] is not None else (dport or 0) & 255
            dport = f"{t}.{c}"
        yield (
            f"{_ts(start):<23} {duration_text(dur):>16} {proto_name(proto):<5}"
            f" {_endpoint(r['src_addr'], r['src_port'], 22, False)} -> {_endpoint(r['dst_addr'], dport, 22, True)}"
            f" {flag_letters(r['tcp_flags']):>8} {r['packets'] if r['packets'] is not None else '-':>8}"
            f" {r['bytes'] if r['bytes'] is not None else '-':>8} {1:>5}"
        )


def write_line(table: pa.Table, sink: IO[bytes], header: bool = True) -> None:
    if header:
        sink.write(HEADER.encode() + b"\n")
    for line in line_rows(table):
        sink.write(line.encode() + b"\n")


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}" if whole else "0.0"


def _value_text(spec: StatSpec, v: Any) -> str:
    if v is None:
        return "-"
    if spec.field == "proto":
        return proto_name(v)
    return str(v)


def write_stats(
    spec: StatSpec, rows: list[dict[str, Any]], totals: dict[str, int], fmt: str, sink: IO[bytes], n: int
) -> None:
    """One statistic as text (``line``), ``jsonl`` or ``csv``."""
    if fmt == "jsonl":
        for r in rows:
            rec = {"stat": spec.field, "order": spec.order, **r}
            for k in ("flows", "packets", "bytes"):
                rec[f"{k}_pct"] = round(100.0 * r[k] / totals[k], 2) if totals[k] else 0.0
            sink.write(json.dumps(rec).encode() + b"\n")
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["stat", "order", "value", "first", "last", "flows", "packets", "bytes"])
        for r in rows:
            w.writerow([spec.field, spec.order, r["value"], _iso(r["first"]), _iso(r["last"]), r["flows"],
                        r["packets"], r["bytes"]])  # fmt: skip
        sink.write(buf.getvalue().encode())
        return
    lines = [
        f"Top {n or len(rows)} {spec.title} ordered by {spec.order}:",
        f"{'Date first seen':<23} {'Duration':>16} {spec.title:>16} {'Flows(%)':>14} {'Packets(%)':>16}"
        f" {'Bytes(%)':>18}",
    ]
    for r in rows:
        lines.append(
            f"{_ts(_dt(r['first'])):<23} {duration_text(r['last'] - r['first']):>16}"
            f" {_value_text(spec, r['value']):>16} {r['flows']:>8}({_pct(r['flows'], totals['flows']):>5})"
            f" {r['packets']:>10}({_pct(r['packets'], totals['packets']):>5})"
            f" {r['bytes']:>12}({_pct(r['bytes'], totals['bytes']):>5})"
        )
    lines.append(
        f"Summary: total flows: {totals['flows']}, total bytes: {totals['bytes']}, total packets: {totals['packets']}"
    )
    sink.write(("\n".join(lines) + "\n\n").encode())


def _dt(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def _iso(ms: int) -> str:
    return _dt(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"

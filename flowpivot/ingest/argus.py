"""Argus flow records as text: the CTU ``.binetflow`` CSV and ``ra -c ,`` output with a header.

The CTU-13 and the other Stratosphere data sets ship Argus bidirectional flows as CSV::

    StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label
    2011/08/16 10:01:46.972101,0.000278,udp,147.32.84.59,56890,  <->,147.32.80.9,53,CON,0,0,2,214,81,flow=...

Columns are found by their names (case does not matter), so the output of ``ra -c , -M printer``
and friends reads the same way when its header names the columns; ``StartTime``, ``SrcAddr`` and
``DstAddr`` are required. One record is one flow from ``SrcAddr`` (the side Argus saw first) to
``DstAddr``; the counts of the two directions are split as far as the columns allow (see
docs/ingest.md for the table, the ``State`` mapping and what is dropped).

``StartTime`` is a wall-clock time without a zone. It is read as UTC unless the reader is given
``tz`` (an IANA name: the CTU captures were made in Prague, ``tz="Europe/Prague"``); the time an
Argus ``ra -u`` prints (epoch seconds) is zone-free anyway.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from ..schema import conform
from .base import ReadReport
from .columns import (
    MAX_MS,
    MIN_MS,
    OUT_OF_RANGE,
    TS_US,
    RowChecker,
    _np_bool,
    nullify,
    parse_addresses,
    parse_decimal_usec_checked,
    parse_uint,
)
from .textio import csv_chunk, explain_empty, line_chunks, open_text

__all__ = ["read_binetflow", "is_argus_header", "ARGUS_EXPORTER", "STATE_FLAGS", "state_flags"]

#: What the ``exporter`` column says for Argus records.
ARGUS_EXPORTER = "argus"

#: Letters of Argus' TCP flag states (``ra -Z b``: source flags ``_`` destination flags).
STATE_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}
_FLAG_STATE = re.compile(r"^[FSRPAUEC]*_[FSRPAUEC]*$")

#: IANA protocol keywords Argus prints, lower case -> number (others: the number if numeric, else null).
PROTOCOLS = {
    "icmp": 1, "igmp": 2, "ipnip": 4, "ipip": 4, "tcp": 6, "egp": 8, "igp": 9, "udp": 17, "rdp": 27,
    "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51,
    "ipv6-icmp": 58, "icmp6": 58, "ipv6-no": 59, "ipv6-opts": 60, "eigrp": 88, "ospf": 89, "ospfigp": 89,
    "pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132, "udt": 17, "rtp": 17, "rtcp": 17,
}  # fmt: skip

_DELIMITERS = (",", "\t", ";", "|")
#: ra prints a time of day alone unless RA_TIME_FORMAT has a date; -u prints epoch seconds.
NOT_A_TIME = "not a date and time (for ra output, print dates with RA_TIME_FORMAT or epoch seconds with -u)"
_NEEDED = ("starttime", "srcaddr", "dstaddr")


def _split_header(line: str) -> tuple[str, list[str]] | None:
    """(delimiter, column names) when the line is an Argus header, else None."""
    for d in _DELIMITERS:
        names = [n.strip() for n in line.strip("\r\n").split(d)]
        if all(k in (n.lower() for n in names) for k in _NEEDED):
            return d, names
    return None


def is_argus_header(head: bytes) -> bool:
    """Format detection: the first line names at least StartTime, SrcAddr and DstAddr."""
    first = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0]
    try:
        return _split_header(first.decode("utf-8")) is not None
    except UnicodeDecodeError:
        return False


def state_flags(state: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """Argus ``State`` strings -> (source flags, destination flags, is a flag state).

    ``FSPA_FSRPA``: F S P A seen from the source, F S R P A from the destination. Other states
    (``CON``, ``INT``, ``RST``, ``URP``, ...) name no flags: their values are 0 and the mask False.
    """
    s = nullify(state)
    flagged = _np_bool(pc.match_substring_regex(s, _FLAG_STATE.pattern))
    parts = pc.split_pattern(pc.if_else(pa.array(flagged), s, "_"), "_", max_splits=1)
    src, dst = pc.list_element(parts, 0), pc.list_element(parts, 1)
    out = []
    for side in (src, dst):
        bits = np.zeros(len(s), dtype=np.uint16)
        for letter, bit in STATE_FLAGS.items():
            bits |= np.where(_np_bool(pc.match_substring(side, letter)), bit, 0).astype(np.uint16)
        out.append(pa.array(bits, pa.uint16()))
    return out[0], out[1], flagged


def _times_us(col: pa.Array, tz: str) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Argus times -> (µs since epoch, not a time, outside years 1..9999).

    ``2019/04/04 16:23:00.325010`` (or with dashes, or ``T``) is wall-clock time in ``tz``; a plain
    number is epoch seconds (``ra -u``).
    """
    s = nullify(col)
    n = len(s)
    valid = _np_bool(pc.is_valid(s))
    numeric = _np_bool(pc.match_substring_regex(s, r"^\d+(\.\d*)?$"))
    us_num, bad_num, out_num = parse_decimal_usec_checked(
        pc.if_else(pa.array(numeric), s, pa.scalar(None, pa.string()))
    )
    t = pc.replace_substring_regex(s, r"^(\d{4,})[/-](\d\d)[/-](\d\d)[ T]", r"\1-\2-\3T")
    t = pc.if_else(pa.array(numeric), pa.scalar(None, pa.string()), t)
    out = np.zeros(n, dtype=bool)
    us = np.zeros(n, dtype=np.int64)
    try:
        naive = t.cast(pa.timestamp("us"))
        ok = valid & ~numeric
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        vals: list[int | None] = []
        ok = np.zeros(n, dtype=bool)
        for j, v in enumerate(t.to_pylist()):
            if v is None:
                vals.append(None)
                continue
            try:
                vals.append(pa.array([v]).cast(pa.timestamp("us")).cast(pa.int64())[0].as_py())
                ok[j] = True
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                vals.append(None)
                out[j] = bool(re.match(r"^\d{5,}-", v))
        naive = pa.array(vals, pa.int64()).cast(pa.timestamp("us"))
    if ok.any():
        zoned = naive
        if tz.upper() not in ("UTC", "Z", "GMT"):
            try:
                zoned = pc.assume_timezone(naive, tz, ambiguous="earliest", nonexistent="earliest")
            except pa.ArrowInvalid as e:
                raise InputError(f"unknown time zone {tz!r}: {e}") from e
        zoned = zoned.cast(TS_US) if zoned.type.tz is not None else zoned
        us = np.where(ok, np.asarray(zoned.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)), us)
    bad = valid & ~numeric & ~ok & ~out
    us = np.where(numeric, np.asarray(us_num.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64), us)
    bad |= bad_num
    out |= out_num
    good = valid & ~bad & ~out
    return pa.array(us, pa.int64(), mask=~good), bad, out


def _protocols(col: pa.Array) -> pa.Array:
    s = pc.utf8_lower(nullify(col))
    named = pc.take(pa.array(list(PROTOCOLS.values()), pa.uint8()), pc.index_in(s, value_set=pa.array(list(PROTOCOLS))))
    numeric = pc.if_else(pc.match_substring_regex(s, r"^\d{1,3}$"), s, pa.scalar(None, pa.string()))
    num, _ = parse_uint(numeric, pa.uint8())
    return pc.coalesce(named, num)


def _batch(t: pa.Table, lines: np.ndarray, report: ReadReport, tz: str) -> pa.RecordBatch:
    n = t.num_rows
    check = RowChecker(n, lines)
    have = set(t.column_names)
    cols: dict[str, pa.Array] = {}
    notes: dict[str, np.ndarray] = {}  # counters, counted at the end among the rows kept

    def col(name: str) -> pa.Array | None:
        if name not in have:
            return None
        c = t.column(name)
        return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c

    start = col("starttime")
    assert start is not None
    start_us, bad, out = _times_us(start, tz)
    check.flag(out, "StartTime", start, OUT_OF_RANGE)
    check.flag(bad | ~_np_bool(pc.is_valid(start_us)), "StartTime", start, NOT_A_TIME)
    end_us = start_us
    last, dur = col("lasttime"), col("dur")
    if last is not None:
        end_us, bad, out = _times_us(last, tz)
        check.flag(bad | out, "LastTime", last, NOT_A_TIME)
        end_us = pc.coalesce(end_us, start_us)
    elif dur is not None:
        d_us, bad, out = parse_decimal_usec_checked(dur)
        check.flag(bad | out, "Dur", dur, "not a duration in seconds")
        end_us = pc.add(start_us, pc.coalesce(d_us, 0))  # both below 10**18 µs: no wrap
    for name, v in (("StartTime", start_us), ("Dur", end_us)):
        arr = np.asarray(v.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        ms = np.floor_divide(arr, 1000)
        far = _np_bool(pc.is_valid(v)) & ((ms < MIN_MS) | (ms > MAX_MS))
        check.flag(far, name, start if name == "StartTime" else dur, OUT_OF_RANGE)
        cols["start" if name == "StartTime" else "end"] = pa.array(np.where(far, 0, ms), pa.int64())
    for side, key in (("src_addr", "srcaddr"), ("dst_addr", "dstaddr")):
        c = col(key)
        assert c is not None
        v4, v6, bad = parse_addresses(c)
        check.flag(bad | ~_np_bool(pc.or_(pc.is_valid(v4), pc.is_valid(v6))), key, c, "not an IP address")
        cols[f"{side}_v4"], cols[f"{side}_v6"] = v4, v6

    proto_raw = col("proto")
    proto = _protocols(proto_raw) if proto_raw is not None else pa.nulls(n, pa.uint8())
    if proto_raw is not None:
        unknown = _np_bool(pc.is_valid(nullify(proto_raw))) & ~_np_bool(pc.is_valid(proto))
        notes["records of a protocol without a number (arp, ...; kept, protocol null)"] = unknown
    v6 = _np_bool(pc.is_valid(cols["src_addr_v6"]))
    cols["protocol"] = pc.if_else(pa.array(v6 & _np_bool(pc.equal(proto, 1))), pa.scalar(58, pa.uint8()), proto)
    is_icmp = _np_bool(pc.is_in(cols["protocol"], value_set=pa.array([1, 58], pa.uint8())))

    def uint(key: str, typ: pa.DataType, rows: np.ndarray | None = None) -> pa.Array | None:
        """A column of unsigned integers (a bad value flags its row; ``rows``: only those checked)."""
        c = col(key)
        if c is None:
            return None
        v, bad = parse_uint(c, typ)
        check.flag(bad if rows is None else bad & rows, key, c, f"not a {typ}")
        return v if rows is None else pc.if_else(pa.array(rows), v, pa.scalar(None, typ))

    sp, dp = uint("sport", pa.uint16(), ~is_icmp), uint("dport", pa.uint16(), ~is_icmp)
    cols["src_port"], cols["dst_port"] = sp, dp
    if is_icmp.any() and col("sport") is not None:
        # Argus prints an ICMP flow's type and code in Sport, as 0xCCTT (0x0008 echo, 0x0303 port
        # unreachable, 0x0403 fragmentation needed); Dport holds the ICMP id, which is dropped
        raw, _ = parse_uint(col("sport"), pa.uint16())
        mask = pa.array(is_icmp)
        ty = pc.bit_wise_and(raw, 0xFF).cast(pa.uint8())
        co = pc.shift_right(raw, 8).cast(pa.uint8())
        cols["icmp_type"] = pc.if_else(mask, ty, pa.scalar(None, pa.uint8()))
        cols["icmp_code"] = pc.if_else(mask, co, pa.scalar(None, pa.uint8()))
        packed = pc.add(pc.multiply(ty.cast(pa.uint16()), 256), co.cast(pa.uint16())).cast(pa.uint16())
        cols["src_port"] = pc.if_else(
            mask, pa.scalar(0, pa.uint16()), sp if sp is not None else pa.nulls(n, pa.uint16())
        )
        cols["dst_port"] = pc.if_else(mask, packed, dp if dp is not None else pa.nulls(n, pa.uint16()))

    state = col("state")
    if state is not None:
        sf, df, flagged = state_flags(state)
        tcp = _np_bool(pc.equal(cols["protocol"], 6))
        notes["TCP records whose State names no flags (flags null)"] = tcp & ~flagged
        none16 = pa.scalar(None, pa.uint16())
        cols["tcp_flags"] = pc.if_else(pa.array(tcp), pc.if_else(pa.array(flagged), sf, none16), 0)
        cols["rev_tcp_flags"] = pc.if_else(pa.array(tcp), pc.if_else(pa.array(flagged), df, none16), 0)

    _counts(cols, uint, check, notes, n)
    label = col("label")
    if label is not None:
        notes["labels dropped (the flow schema has no place for them)"] = _np_bool(pc.is_valid(nullify(label)))
    cols["sampling_rate"] = pa.array(np.ones(n, dtype=np.uint32))
    cols["exporter"] = pa.array(np.full(n, ARGUS_EXPORTER, dtype=object), pa.string())
    keep = check.report_to(report)
    for name, mask in notes.items():  # counted among the records kept
        if k := int((mask & keep).sum()):
            report.count(name, k)
    batch = conform(cols, n)
    return batch if keep.all() else batch.filter(pa.array(keep))


def _counts(
    cols: dict[str, pa.Array],
    get: Callable[[str, pa.DataType], pa.Array | None],
    check: RowChecker,
    notes: dict[str, np.ndarray],
    n: int,
) -> None:
    """Packets and bytes per direction from whichever of the Tot/Src/Dst columns the file has."""
    u64 = pa.uint64()

    def split(what: str) -> tuple[pa.Array | None, pa.Array | None]:
        tot, src, dst = get(f"tot{what}", u64), get(f"src{what}", u64), get(f"dst{what}", u64)
        if tot is not None and (src is None) != (dst is None):
            known = src if src is not None else dst
            assert known is not None
            neg = _np_bool(pc.less(tot, known))
            check.flag(neg, f"Tot{what}", None, f"less than {'Src' if src is not None else 'Dst'}{what}")
            other = pc.if_else(pa.array(neg), pa.scalar(0, u64), pc.subtract(tot, known))
            src, dst = (known, other) if src is not None else (other, known)
        return src, dst

    src_b, dst_b = split("bytes")
    src_p, dst_p = split("pkts")
    tot_p = get("totpkts", u64)
    if src_p is None and tot_p is not None:
        # CTU-13 has no SrcPkts: the packets are the source's only when all the bytes are
        if dst_b is not None:
            one_way = pc.fill_null(pc.equal(dst_b, 0), False)
            src_p = pc.if_else(one_way, tot_p, pa.scalar(None, u64))
            dst_p = pc.if_else(one_way, pa.scalar(0, u64), pa.scalar(None, u64))
            unsplit = ~_np_bool(one_way)
        else:
            unsplit = np.ones(n, dtype=bool)
        notes["records whose packets cannot be split by direction (no SrcPkts; packets null)"] = unsplit
    for name, arr in (("packets", src_p), ("bytes", src_b), ("rev_packets", dst_p), ("rev_bytes", dst_b)):
        if arr is not None:
            cols[name] = arr


def read_binetflow(path: Path, report: ReadReport, tz: str = "UTC") -> Iterator[pa.RecordBatch]:
    """An Argus CSV (CTU ``.binetflow``, ``ra -c ,`` with a header) -> store batches.

    ``tz``: the zone of the wall-clock ``StartTime`` (default UTC; ``Europe/Prague`` for CTU data).
    """
    path = Path(path)
    data_lines = 0
    with open_text(path, report) as fh:
        header = fh.readline()
        if header.startswith(b"\xef\xbb\xbf"):
            header = header[3:]
        try:
            found = _split_header(header.decode("utf-8"))
        except UnicodeDecodeError:
            found = None
        if found is None:
            raise InputError(f"{path}: line 1: not an Argus CSV header (it needs StartTime, SrcAddr and DstAddr)")
        delim, names = found
        lower = [n.lower() for n in names]
        if len(set(lower)) != len(lower):
            raise InputError(f"{path}: line 1: a column is named twice: {', '.join(names)}")
        if delim == "," and '"' in header.decode("utf-8"):
            names = [n.strip() for n in next(csv.reader([header.decode("utf-8").strip()]))]
            lower = [n.lower() for n in names]
        wanted = {"starttime", "lasttime", "dur", "proto", "srcaddr", "sport", "dstaddr", "dport", "state",
                  "totpkts", "totbytes", "srcpkts", "srcbytes", "dstpkts", "dstbytes", "label"}  # fmt: skip
        for data, first in line_chunks(fh, first_line=2):
            bad_before = report.bad
            table, lines = csv_chunk(data, first, lower, report, delimiter=delim, quoting=False,
                                     include=[c for c in lower if c in wanted])  # fmt: skip
            data_lines += table.num_rows + report.bad - bad_before
            if "proto" in table.column_names and table.num_rows:
                # Argus' own status records (proto "man", no addresses): not flows
                man = _np_bool(pc.equal(pc.utf8_lower(nullify(table.column("proto").combine_chunks())), "man"))
                if man.any():
                    report.count("Argus management records (not flows) skipped", int(man.sum()))
                    table, lines = table.filter(pa.array(~man)), lines[~man]
                    data_lines -= int(man.sum())
            if table.num_rows:
                batch = _batch(table, lines, report, tz)
                report.records += batch.num_rows
                yield batch
    explain_empty(report, data_lines)

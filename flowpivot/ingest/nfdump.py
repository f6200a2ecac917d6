"""nfdump/nfcapd files, read through the real ``nfdump`` binary, and nfdump's own CSV output.

A binary file is streamed through ``nfdump -r FILE -o json`` (with ``TZ=UTC``): of nfdump 1.7.1's
outputs it is the one that carries millisecond start *and* end times (``-o csv`` prints whole
seconds, and the ``%ter`` tag of ``-o fmt:`` prints wrong milliseconds), full IPv6 addresses, the
exporter address, the per-record "sampled" flag, and it is also the fastest to print. Exporters,
observation domain ids and samplers come from ``nfdump -E FILE``.

nfcapd multiplies the packets and bytes of a sampled flow by the sampling rate; flowpivot stores
counts as exported, so they are divided back and the rate goes to ``sampling_rate``.

nfdump reports a damaged file on stderr and still exits 0; that text becomes a problem, and the
flows it printed before the damage are kept. A damaged block header makes it skip flows without a
word, so the flows read are compared with the count of the file's own summary (``nfdump -I``):
the flows it counts and nfdump did not read are counted as bad, with one problem.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ..errors import InputError
from ..schema import conform
from .base import ReadReport
from .columns import (
    OUT_OF_RANGE,
    RowChecker,
    _np_bool,
    nullify,
    parse_addresses,
    parse_times_checked,
    parse_uint,
)
from .nfdump_file import bounded, read_messages, repair_records, run_bounded, salvage, stopped_by
from .textio import explain_empty

__all__ = [
    "read_nfdump",
    "read_nfdump_csv",
    "nfdump_exporters",
    "NFDUMP_MAGIC",
    "NFDUMP_CSV_HEADER",
    "NFDUMP_CSV_COLUMNS",
    "NFDUMP_CSV_ROW",
    "Exporter",
]

#: First two bytes of an nfdump/nfcapd file (0xA50C little-endian), then the layout version 1 or 2.
NFDUMP_MAGIC = b"\x0c\xa5"
#: The first columns of ``nfdump -o csv`` (1.6 and 1.7).
NFDUMP_CSV_HEADER = ("ts", "te", "td", "sa", "da", "sp", "dp", "pr", "flg")
#: All columns of nfdump 1.7's ``-o csv``, for output saved with ``-q`` (which drops the header line).
NFDUMP_CSV_COLUMNS = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,svln,dvln,"
    "ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,ra,eng,exid,tr"
).split(",")
#: A headerless nfdump CSV line starts with two times.
NFDUMP_CSV_ROW = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?,\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")

READ_BYTES = 4 << 20
_NOISE = (b"No matching flows",)  # printed on stdout even with -q
_FLAG_BITS = (0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01)  # nfdump prints "CEUAPRSF"

# nfdump prints a protocol by name when it knows one (IANA keywords), else the number.
PROTOCOL_NUMBERS = {
    "HOPOPT": 0, "ICMP": 1, "IGMP": 2, "GGP": 3, "IPIP": 4, "IPV4": 4, "ST": 5, "TCP": 6, "CBT": 7, "EGP": 8,
    "IGP": 9, "BBN": 10, "NVPII": 11, "PUP": 12, "ARGUS": 13, "ENCOM": 14, "XNET": 15, "CHAOS": 16, "UDP": 17,
    "MUX": 18, "DCN": 19, "HMP": 20, "PRM": 21, "XNS": 22, "TRUNK1": 23, "TRUNK2": 24, "LEAF1": 25, "LEAF2": 26,
    "RDP": 27, "IRTP": 28, "ISO-4": 29, "NETBK": 30, "MFESP": 31, "MEINP": 32, "DCCP": 33, "3PC": 34, "IDPR": 35,
    "XTP": 36, "DDP": 37, "IDPR-CMTP": 38, "TP++": 39, "IL": 40, "IPV6": 41, "SDRP": 42, "IPV6-ROUTE": 43,
    "IPV6-FRAG": 44, "IDRP": 45, "RSVP": 46, "GRE": 47, "DSR": 48, "BNA": 49, "ESP": 50, "AH": 51, "I-NLSP": 52,
    "SWIPE": 53, "NARP": 54, "MOBILE": 55, "TLSP": 56, "SKIP": 57, "ICMP6": 58, "IPV6-ICMP": 58, "ICMPV6": 58,
    "IPV6-NONXT": 59, "NONXT": 59, "IPV6-OPTS": 60, "CFTP": 62, "SAT-EXPAK": 64, "KRYPTOLAN": 65, "RVD": 66,
    "IPPC": 67, "SAT-MON": 69, "VISA": 70, "IPCV": 71, "CPNX": 72, "CPHB": 73, "WSN": 74, "PVP": 75,
    "BR-SAT-MON": 76, "SUN-ND": 77, "WB-MON": 78, "WB-EXPAK": 79, "ISO-IP": 80, "VMTP": 81, "SECURE-VMTP": 82,
    "VINES": 83, "TTP": 84, "NSFNET-IGP": 85, "DGP": 86, "TCF": 87, "EIGRP": 88, "OSPF": 89, "OSPFIGP": 89,
    "SPRITE-RPC": 90, "LARP": 91, "MTP": 92, "AX.25": 93, "IPINIP": 94, "MICP": 95, "SCC-SP": 96, "ETHERIP": 97,
    "ENCAP": 98, "GMTP": 100, "IFMP": 101, "PNNI": 102, "PIM": 103, "ARIS": 104, "SCPS": 105, "QNX": 106,
    "A/N": 107, "IPCOMP": 108, "SNP": 109, "COMPAQ-PEER": 110, "IPX-IN-IP": 111, "VRRP": 112, "PGM": 113,
    "L2TP": 115, "DDX": 116, "IATP": 117, "STP": 118, "SRP": 119, "UTI": 120, "SMP": 121, "SM": 122, "PTP": 123,
    "ISIS": 124, "FIRE": 125, "CRTP": 126, "CRUDP": 127, "SSCOPMCE": 128, "IPLT": 129, "SPS": 130, "PIPE": 131,
    "SCTP": 132, "FC": 133, "RSVP-E2E-IGNORE": 134, "MOBILITY-HEADER": 135, "UDPLITE": 136, "MPLS-IN-IP": 137,
    "MANET": 138, "HIP": 139, "SHIM6": 140, "WESP": 141, "ROHC": 142, "ETHERNET": 143,
}  # fmt: skip


@dataclass(frozen=True)
class Exporter:
    sysid: int
    address: str
    version: str
    domain: int
    sampling_rate: int  # 1 when the exporter announced no sampler
    samplers: int  # how many samplers it announced


def _nfdump() -> str:
    path = shutil.which("nfdump") or ("/usr/bin/nfdump" if os.access("/usr/bin/nfdump", os.X_OK) else None)
    if not path:
        raise InputError("nfdump is not installed; install the 'nfdump' package (1.7 or newer) to read nfcapd files")
    return path


def _env() -> dict[str, str]:
    # nfdump prints local time; UTC makes its times exact and independent of the machine.
    return {**os.environ, "TZ": "UTC", "LC_ALL": "C"}


_SYSID_RE = re.compile(r"SysID:\s*(\d+),\s*IP:\s*(\S+),\s*version:\s*(\S+?),\s*ID:\s*(\d+)")
_SAMPLER_RE = re.compile(r"Sampler.*?(?:packet\s+)?interval:\s*(\d+)(?:,\s*packet space:\s*(\d+))?", re.I)


def nfdump_exporters(path: Path, report: ReadReport | None = None) -> dict[int, Exporter]:
    """Exporters recorded in an nfdump file (``nfdump -E``), by SysID, with their sampling rate.
    When nfdump is stopped by a bound (a damaged file), ``report`` gets a problem saying so."""
    stdout, rc = run_bounded([_nfdump(), "-E", str(path)], path, _env())
    stopped = stopped_by(rc, path)
    if stopped and report is not None:
        report.problem(
            "whole file",
            f"listing the exporters (nfdump -E): {stopped}; exporters, observation domains and sampling rates "
            "may be missing",
        )
    out: dict[int, Exporter] = {}
    current: list | None = None
    rates: dict[int, list[int]] = {}
    for line in stdout.decode("utf-8", "replace").splitlines():
        m = _SYSID_RE.search(line)
        if m:
            sysid = int(m.group(1))
            current = [sysid, m.group(2), m.group(3), int(m.group(4))]
            out[sysid] = Exporter(sysid, m.group(2), m.group(3), int(m.group(4)), 1, 0)
            rates[sysid] = []
            continue
        s = _SAMPLER_RE.search(line)
        if s and current is not None:
            interval = int(s.group(1))
            space = s.group(2)
            if space is not None:  # packet interval/space: interval packets taken out of interval+space
                rate = (interval + int(space)) // max(interval, 1)
            else:
                rate = interval
            rates[current[0]].append(max(rate, 1))
    for sysid, r in rates.items():
        if r:
            e = out[sysid]
            out[sysid] = Exporter(e.sysid, e.address, e.version, e.domain, r[0], len(r))
    return out


def _flow_count(path: Path) -> int | None:
    try:
        stdout, _rc = run_bounded([_nfdump(), "-r", str(path), "-I"], path, _env())
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(rb"^Flows:\s*(\d+)", stdout, re.M)
    return int(m.group(1)) if m else None


def _objects(chunk: bytes) -> bytes:
    """nfdump's JSON records, pretty-printed and comma-separated -> a stream of objects for pyarrow."""
    for noise in _NOISE:
        chunk = chunk.replace(noise, b"")
    data = chunk.replace(b"},\n{", b"}\n{").strip()
    if data.startswith(b"["):  # without -q, nfdump wraps the records in an array
        data = data[1:].lstrip()
    if data.endswith(b"]"):
        data = data[:-1].rstrip()
    if data.endswith(b","):
        data = data[:-1]
    return data + b"\n" if data else b""


def _reader_thread(stream: IO[bytes], q: queue.Queue, stop: threading.Event) -> None:
    # drain nfdump's stdout while the previous chunk is parsed, so that both run at once
    try:
        while not stop.is_set():
            try:
                block = stream.read(READ_BYTES)
            except (OSError, ValueError):  # the pipe was closed under us: the reader gave up
                block = b""
            while not stop.is_set():
                try:
                    q.put(block, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if not block:
                return
    finally:
        stop.set()


def _json_records(
    stream: IO[bytes], report: ReadReport, state: dict[str, bool] | None = None
) -> Generator[tuple[pa.Table, int], None, None]:
    """Stream nfdump -o json into tables of records; yields (table, number of the first record).
    ``state["complete"]`` says at the end whether the last record printed was whole (nfdump may
    die in the middle of printing one)."""
    q: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()
    reader = threading.Thread(target=_reader_thread, args=(stream, q, stop), daemon=True)
    reader.start()
    buf = b""
    record = 1
    try:
        while True:
            block = q.get()
            if block:
                buf += block
                cut = buf.rfind(b"\n},\n{")
                if cut < 0:
                    continue
                chunk, buf = buf[: cut + 3], buf[cut + 4 :]
            else:
                chunk, buf = buf, b""
            data = _objects(chunk)
            if not block and state is not None:
                state["complete"] = not data.strip() or data.rstrip().endswith(b"}")
            if data.strip():
                table = _parse_objects(data, record, report)
                yield table, record
                record += data.count(b"}\n{") + 1
            if not block:
                break
    finally:
        stop.set()


def _parse_objects(data: bytes, first: int, report: ReadReport) -> pa.Table:
    try:
        return pajson.read_json(
            io.BytesIO(data),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pajson.ParseOptions(newlines_in_values=True),
        )
    except pa.ArrowInvalid:
        pass
    rows = []
    for i, text in enumerate(data.split(b"}\n{")):
        text = (b"" if i == 0 else b"{") + text + (b"}" if not text.rstrip().endswith(b"}") else b"")
        try:
            obj = json.loads(text)
        except ValueError as e:
            report.problem(f"record {first + i}", f"nfdump printed a record that is not JSON: {e}")
            continue
        rows.append({k: (v if not isinstance(v, (dict, list)) else json.dumps(v)) for k, v in obj.items()})
    if not rows:
        return pa.table({})
    keys = list(dict.fromkeys(k for r in rows for k in r))  # IPv4 and IPv6 records have different keys
    return pa.Table.from_pylist(
        [{k: None if v is None else v if isinstance(v, str) else json.dumps(v) for k, v in r.items()} for r in rows],
        schema=pa.schema([(k, pa.string()) for k in keys]),
    )


def _column(t: pa.Table, *names: str) -> pa.Array | None:
    for n in names:
        if n in t.column_names:
            c = t.column(n)
            return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c
    return None


def flag_strings(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """nfdump's TCP flag string ("...A.R.." = CEUAPRSF positions, or 0x hex) -> uint16, bad mask."""
    s = nullify(col)
    valid = _np_bool(pc.is_valid(s))
    dotted = _np_bool(pc.match_substring_regex(s, r"^[.CEUAPRSF]{8}$"))
    value = np.zeros(len(s), dtype=np.uint16)
    for pos, bit in enumerate(_FLAG_BITS):
        ch = pc.utf8_slice_codeunits(s, pos, pos + 1)
        set_ = _np_bool(pc.and_(pc.not_equal(ch, "."), pc.not_equal(ch, "")))
        value |= np.where(set_ & dotted, bit, 0).astype(np.uint16)
    rest = valid & ~dotted
    bad = np.zeros(len(s), dtype=bool)
    if rest.any():
        nums, nbad = parse_uint(s.filter(pa.array(rest)), pa.uint16())
        idx = np.flatnonzero(rest)
        value[idx] = np.asarray(nums.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.uint16)
        bad[idx] = nbad
    return pa.array(value, pa.uint16(), mask=~(valid & ~bad)), bad


def _records_to_batch(
    t: pa.Table, first: int, report: ReadReport, exporters: dict[int, Exporter], fallback_exporter: str
) -> pa.RecordBatch:
    n = t.num_rows
    check = RowChecker(n, np.arange(first, first + n, dtype=np.int64), "record")
    cols: dict[str, pa.Array] = {}
    for name, keys in (("start", ("first",)), ("end", ("last",))):
        c = _column(t, *keys)
        if c is None:
            check.flag(np.ones(n, bool), name, None, "missing")
            continue
        ms, bad, out = parse_times_checked(c)
        check.flag(out, name, c, OUT_OF_RANGE)
        check.flag(bad, name, c, "not a time")
        # a damaged record whose time nfdump does not print: never stored without one
        check.flag(~_np_bool(pc.is_valid(ms)), name, c, "missing")
        cols[name] = ms
    for side, pair in (("src_addr", ("src4_addr", "src6_addr")), ("dst_addr", ("dst4_addr", "dst6_addr"))):
        c4, c6 = _column(t, pair[0]), _column(t, pair[1])
        if c4 is None and c6 is None:
            check.flag(np.ones(n, bool), side, None, "no address")
            continue
        both = c4 if c6 is None else c6 if c4 is None else pc.coalesce(c4, c6)
        v4, v6, bad = parse_addresses(both)
        check.flag(bad | ~_np_bool(pc.or_(pc.is_valid(v4), pc.is_valid(v6))), side, both, "not an IP address")
        cols[f"{side}_v4"], cols[f"{side}_v6"] = v4, v6

    def uint(key: str | tuple[str, ...], typ: pa.DataType) -> pa.Array | None:
        keys = (key,) if isinstance(key, str) else key
        c = _column(t, *keys)
        if c is None:
            return None
        v, bad = parse_uint(c, typ)
        check.flag(bad, keys[0], c, f"not a {typ}")
        return v

    proto = uint("proto", pa.uint8())
    cols["protocol"] = proto if proto is not None else pa.nulls(n, pa.uint8())
    is_icmp = _np_bool(pc.is_in(cols["protocol"], value_set=pa.array([1, 58], pa.uint8())))
    sp, dp = uint("src_port", pa.uint16()), uint("dst_port", pa.uint16())
    it, ic = uint("icmp_type", pa.uint8()), uint("icmp_code", pa.uint8())
    if it is None and dp is not None:  # older nfdump: type and code packed in the destination port
        it = pc.shift_right(dp, 8).cast(pa.uint8())
        ic = pc.bit_wise_and(dp, 0xFF).cast(pa.uint8())
    zero16 = pa.array(np.zeros(n, dtype=np.uint16))
    if it is not None and is_icmp.any():
        packed = pc.add(pc.multiply(it.cast(pa.uint16()), 256), ic.cast(pa.uint16()) if ic is not None else 0).cast(
            pa.uint16()
        )
        mask = pa.array(is_icmp)
        cols["src_port"] = pc.if_else(mask, zero16, sp if sp is not None else zero16)
        cols["dst_port"] = pc.if_else(mask, packed, dp if dp is not None else zero16)
        cols["icmp_type"] = pc.if_else(mask, it, pa.scalar(None, pa.uint8()))
        cols["icmp_code"] = pc.if_else(
            mask, ic if ic is not None else pa.scalar(0, pa.uint8()), pa.scalar(None, pa.uint8())
        )
    else:
        cols["src_port"] = sp if sp is not None else pa.nulls(n, pa.uint16())
        cols["dst_port"] = dp if dp is not None else pa.nulls(n, pa.uint16())
    flags = _column(t, "tcp_flags")
    if flags is not None:
        fv, bad = flag_strings(flags)
        check.flag(bad, "tcp_flags", flags, "not nfdump TCP flags")
        cols["tcp_flags"] = pc.if_else(pa.array(is_icmp), pa.scalar(None, pa.uint16()), fv)
    packets, octets = uint("in_packets", pa.uint64()), uint("in_bytes", pa.uint64())
    out_packets, out_bytes = uint("out_packets", pa.uint64()), uint("out_bytes", pa.uint64())
    for name, arr in (("in_if", uint("input_snmp", pa.uint32())), ("out_if", uint("output_snmp", pa.uint32())),
                      ("src_as", uint("src_as", pa.uint32())), ("dst_as", uint("dst_as", pa.uint32())),
                      ("direction", uint("direction", pa.uint8()))):  # fmt: skip
        if arr is not None:
            cols[name] = arr
    # Reverse counters: nfdump's "out" counters (bidirectional aggregation, NSEL, OUT_PKTS) when non-zero.
    for name, arr in (("rev_packets", out_packets), ("rev_bytes", out_bytes)):
        if arr is not None:
            cols[name] = pc.if_else(pc.equal(arr, 0), pa.scalar(None, pa.uint64()), arr)

    # exporter, observation domain and sampling from the file's exporter records
    sysid = uint("export_sysid", pa.uint32())
    sys_np = (
        np.asarray(sysid.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        if sysid is not None
        else np.zeros(n, np.int64)
    )
    ids = sorted(exporters)
    rate_of = {k: e.sampling_rate for k, e in exporters.items()}
    lut_rate = np.ones(max(ids + [0]) + 2, dtype=np.uint64)
    lut_domain = np.zeros(len(lut_rate), dtype=np.uint32)
    has_domain = np.zeros(len(lut_rate), dtype=bool)
    for k, e in exporters.items():
        lut_rate[k] = rate_of[k]
        if e.version not in ("1", "5", "v1", "v5"):
            lut_domain[k], has_domain[k] = e.domain, True
    sys_np = np.where((sys_np >= 0) & (sys_np < len(lut_rate)), sys_np, len(lut_rate) - 1)
    sampled = _column(t, "sampled")
    sampled_np = _np_bool(pc.not_equal(sampled.cast(pa.int64()), 0)) if sampled is not None else np.zeros(n, bool)
    rate = np.where(sampled_np, lut_rate[sys_np], 1).astype(np.uint64)
    if (sampled_np & (lut_rate[sys_np] == 1)).any():
        report.count("sampled flows without a known sampling rate", int((sampled_np & (lut_rate[sys_np] == 1)).sum()))
    cols["sampling_rate"] = pa.array(rate.astype(np.uint32))
    for name, arr in (("packets", packets), ("bytes", octets)):
        if arr is not None:
            # nfcapd multiplied sampled counts by the rate; store them as the exporter sent them
            cols[name] = pc.divide(arr, pa.array(rate)) if (rate > 1).any() else arr
    cols["observation_domain"] = pa.array(lut_domain[sys_np], pa.uint32(), mask=~has_domain[sys_np])
    router = _column(t, "ip4_router", "ip6_router")
    if router is None or ("ip4_router" in t.column_names and "ip6_router" in t.column_names):
        r4, r6 = _column(t, "ip4_router"), _column(t, "ip6_router")
        router = pc.coalesce(r4, r6) if r4 is not None and r6 is not None else router
    addr_lut = np.array([exporters[k].address if k in exporters else "" for k in range(len(lut_rate))], dtype=object)
    by_sysid = pa.array(addr_lut[sys_np].tolist(), pa.string())
    if router is not None:
        r = nullify(router, ("", "0.0.0.0", "::"))
        exporter = pc.coalesce(r, nullify(by_sysid))
    else:
        exporter = nullify(by_sysid)
    cols["exporter"] = pc.coalesce(exporter, pa.scalar(fallback_exporter))
    keep = check.report_to(report)
    batch = conform(cols, n)
    return batch if keep.all() else batch.filter(pa.array(keep))


def read_nfdump(path: Path, report: ReadReport) -> Iterator[pa.RecordBatch]:
    """An nfdump/nfcapd file -> store batches, streamed through ``nfdump -o json``.

    A file cut short is read through a salvaged copy (:func:`.nfdump_file.salvage`): the complete
    blocks before the cut, and the whole records of the cut block, with one problem for the rest.
    Every nfdump process runs within the bounds of :mod:`.nfdump_file`.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="flowpivot-nfdump-") as td:
        saved = salvage(path, Path(td))
        if saved is not None:
            report.problem(saved.where, saved.why)
            report.bad += max(0, saved.lost - 1)
            report.count("records lost where the file is cut short", saved.lost)
        state = (len(report.problems), report.bad, dict(report.counters))
        try:
            yield from _read_file(path, saved.path if saved is not None else path, report, saved is None, Path(td))
        except InputError as e:
            # nfdump refuses a whole file whose appendix (its summary and ident) is damaged
            retry = salvage(path, Path(td), f"nfdump refused the file ({e})") if saved is None else None
            if retry is None:
                raise
            del report.problems[state[0] :]  # what the refused attempt said is replaced by the retry's
            report.bad, report.counters = state[1], state[2]
            report.problem(retry.where, retry.why)
            yield from _read_file(path, retry.path, report, False, Path(td))


def _read_file(
    path: Path, source: Path, report: ReadReport, with_summary: bool, workdir: Path, skip: int | None = None
) -> Iterator[pa.RecordBatch]:
    """Read ``source`` (``path`` or a copy of it), leaving out the first ``skip`` records nfdump
    prints (read already; None: this is not a repaired copy); places and messages name ``path``.

    When nfdump stops at a damaged record (it aborts, or exits with an error, and every record
    after it is lost), an uncompressed file is read on from a copy without the records whose
    structure is damaged (:func:`.nfdump_file.repair_records`), each one a problem with its byte.
    """
    size = path.stat().st_size
    exporters = nfdump_exporters(source, report)
    expected = _flow_count(source) if with_summary else None
    if exporters:
        report.count("exporters", len(exporters))
    for e in exporters.values():
        if e.samplers > 1:
            report.count("exporters with several samplers (first one used)")
    cmd = [_nfdump(), "-r", str(source), "-q", "-N", "-6", "-o", "json"]
    advanced = 0
    bad_before, records_before, state_problems = report.bad, report.records, len(report.problems)
    with tempfile.TemporaryFile() as errf:
        proc = bounded(cmd, source, subprocess.PIPE, errf, _env())
        assert proc.stdout is not None
        tail: dict[str, bool] = {"complete": True}
        records = _json_records(proc.stdout, report, tail)
        try:
            for table, first in records:
                if skip and first + table.num_rows - 1 <= skip:
                    continue
                if skip and first <= skip:
                    table, first = table.slice(skip - first + 1), skip + 1
                if table.num_rows == 0:
                    continue
                batch = _records_to_batch(table, first, report, exporters, path.name)
                report.records += batch.num_rows
                if expected:
                    step = min(size, int(size * (first + table.num_rows - 1) / expected)) - advanced
                    report.advance(step)
                    advanced += step
                yield batch
        finally:
            records.close()
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()
        distinct = [m for m in read_messages(errf) if m.encode() not in _NOISE]
    report.advance(size - advanced)
    rejected = report.bad - bad_before  # records nfdump printed that were bad, before any file-level problem
    stopped = stopped_by(proc.returncode, source)
    if stopped:
        distinct = [stopped, *distinct]
    printed = (skip or 0) + report.records - records_before + rejected
    # nfdump stopped at damage: it died, or it complained and read fewer flows than the file's summary
    died = proc.returncode not in (0, None, -signal.SIGKILL) or bool(distinct and expected and printed < expected)
    repair = repair_records(source, workdir) if died and skip is None else None
    if repair is not None:
        last = report.problems[-1] if len(report.problems) > state_problems else None
        if not tail["complete"] and last is not None and last.where == f"record {printed}":
            # nfdump died in the middle of printing this record: it is read again from the copy
            report.problems.pop()
            report.bad -= 1
            printed -= 1
        report.problem(
            f"after record {printed}",
            "nfdump: " + "; ".join(distinct[:5] or [f"exited with status {proc.returncode}"])
            + " (it stops at a damaged record: the file is read on without the damaged records)",
        )  # fmt: skip
        for where, why in repair.problems:
            report.problem(where, why)
        report.bad += max(0, repair.lost - len(repair.problems))
        report.count("damaged records left out", repair.lost)
        again = printed - sum(1 for d in repair.dropped_flows if d < printed)
        yield from _read_file(path, repair.path, report, False, workdir, skip=max(again, 0))
        return
    if distinct:
        where = f"after record {report.records + rejected}"
        if report.records == 0 and not rejected:
            raise InputError(f"{path}: nfdump could not read any flow from it: {'; '.join(distinct[:3])}")
        report.problem(where, "nfdump: " + "; ".join(distinct[:5]) + " (what nfdump could read is kept)")
    elif proc.returncode not in (0, None) and report.records == 0 and not report.problems:
        raise InputError(f"{path}: nfdump exited with status {proc.returncode}")
    _compare_with_summary(report, expected, rejected, bad_before)
    if not report.problems:
        explain_empty(report, rejected, "flow record")


def _compare_with_summary(report: ReadReport, expected: int | None, rejected: int, bad_before: int = 0) -> None:
    """The flows nfdump printed against the count in the file's own summary (``nfdump -I``).

    A damaged block header (a record count or size that lies) makes nfdump skip the rest of the
    block without a word on stderr; only the summary nfcapd wrote when it closed the file tells.
    The flows it counts and nfdump did not print are counted in ``bad``, with one problem saying so.
    """
    read = report.records + rejected
    if not expected:  # no summary: a file nfcapd never closed, or -I failed
        return
    if read < expected:
        lost = expected - read
        report.count("flows in the file's summary that nfdump did not read", lost)
        report.problem(
            "whole file",
            f"nfdump read {read:,} flow(s) but the file's summary (nfdump -I) counts {expected:,}: {lost:,} flow(s) "
            "were not readable (a damaged block header or data block); the flows read are kept",
        )
        # bad counts records: the ones rejected and the ones lost (nfdump's message, if any, was about them)
        report.bad = bad_before + rejected + lost
    elif read > expected:
        report.count("flows beyond the count in the file's summary", read - expected)


from .nfdump_csv import read_nfdump_csv  # noqa: E402  (nfdump -o csv output; kept importable from here)

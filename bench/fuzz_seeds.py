"""The real inputs ``bench.fuzz`` mutates, and running one input through ``ingest_paths``.

Seeds come from the shared data (``FLOWPIVOT_SHARED``, default ``../shared/data``):

* ``datagram``: the router export pcaps (akvorado's template capture and its data twin joined into
  one pcap, the logstash, pmacct and Debian exporter captures; the first packets of the two large
  captures), parsed into packets so one datagram at a time can be mutated.
* ``nfdump``: the real nfdump file, and its first 300 flows rewritten by ``nfdump -w``
  uncompressed and LZ4-compressed (small seeds keep a case fast: the reader runs the nfdump binary).
* ``zeek``: the three real Zeek conn.log files.
* ``csv`` and ``parquet``: what ``flowpivot flows --output csv|parquet`` writes for a store made
  from the Zeek log and the small nfdump file, the Parquet rewritten in row groups of 64 rows,
  and one partition file of that store as it is (the store's own layout).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from flowpivot.ingest import ingest_paths
from flowpivot.ingest.pcap import _ip_payload, _udp
from flowpivot.store import Store

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FLOWPIVOT_SHARED", REPO.parent / "shared" / "data")).resolve()
AKV = "exports/akvorado/netflow-"

# (name, files joined in order, at most this many packets)
DATAGRAM_SEEDS: list[tuple[str, list[str], int]] = [
    ("akv-v9", [AKV + "template.pcap", AKV + "data.pcap"], 0),
    ("akv-v9-data+templates", [AKV + "data+templates.pcap"], 0),
    ("akv-datalink", [AKV + "datalink-template.pcap", AKV + "datalink-data.pcap"], 0),
    ("akv-eompls", [AKV + "ethernet-over-mpls-with-control-word-template.pcap", AKV + "ethernet-over-mpls-with-control-word-data.pcap"], 0),  # noqa: E501
    ("akv-icmp", [AKV + "icmp-template.pcap", AKV + "icmp-data.pcap"], 0),
    ("akv-ipfix-srv6", [AKV + "ipfix-srv6-template.pcap", AKV + "ipfix-srv6-data.pcap"], 0),
    ("akv-ipfixprobe", [AKV + "ipfixprobe-templates.pcap", AKV + "ipfixprobe-data.pcap"], 0),
    ("akv-juniper-cpid", [AKV + "juniper-cpid-template.pcap", AKV + "juniper-cpid-data.pcap"], 0),
    ("akv-mpls", [AKV + "mpls.pcap"], 0),
    ("akv-sampling", [AKV + "multiplesamplingrates-options-template.pcap", AKV + "multiplesamplingrates-options-data.pcap", AKV + "multiplesamplingrates-template.pcap", AKV + "multiplesamplingrates-data.pcap"], 0),  # noqa: E501
    ("akv-nat", [AKV + "nat.pcap"], 0),
    ("akv-v5", [AKV + "nfv5.pcap"], 0),
    ("akv-options", [AKV + "options-template.pcap", AKV + "options-data.pcap"], 0),
    ("akv-physif", [AKV + "physicalinterfaces.pcap"], 0),
    ("akv-samplingrate", [AKV + "samplingrate-template.pcap", AKV + "samplingrate-data.pcap"], 0),
    ("akv-sflow-1140", ["exports/akvorado/sflow-data-1140.pcap"], 0),
    ("akv-sflow-vxlan", ["exports/akvorado/sflow-data-encap-vxlan.pcap"], 0),
    ("akv-sflow-icmpv6", ["exports/akvorado/sflow-data-icmpv6.pcap"], 0),
    ("akv-sflow-qinq", ["exports/akvorado/sflow-data-qinq.pcap"], 0),
    ("akv-sflow-expanded", ["exports/akvorado/sflow-data-sflow-expanded-sample.pcap"], 0),
    ("akv-sflow-raw", ["exports/akvorado/sflow-data-sflow-raw-ipv4.pcap"], 0),
    ("fprobe-v5", ["realworld/exporters/fprobe-v5.pcap"], 0),
    ("fprobe-v7", ["realworld/exporters/fprobe-v7.pcap"], 0),
    ("softflowd-ipfix-biflow", ["realworld/exporters/sf-v10b-a.pcap"], 0),
    ("softflowd-psamp", ["realworld/exporters/sf-psamp-a.pcap"], 8),
    ("pmacct-sflow", ["realworld/exporters/pm-sflow.pcap"], 8),
    ("logstash-ipfix", ["realworld/logstash-codec-netflow/11-ipfix.pcap"], 0),
    ("logstash-h3c-v9", ["realworld/logstash-codec-netflow/20-netflow9_test_h3c_netstream_varstring_data3281.pcap"], 0),
    ("logstash-nokia-ipfix", ["realworld/logstash-codec-netflow/24-ipfix_test_nokia_bras_data256.pcap"], 0),
    ("pmacct-cisco-ipfix", ["realworld/pmacct/104-IPFIXv10-IPv6-CISCO-sampling_option/traffic-00.pcap"], 0),
]  # fmt: skip
NFDUMP_FILE = "stratosphere/test1-malicious.nfdump"
ZEEK_SEEDS = [
    "stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled",
    "realworld/zeek/scope_sep_conn.log",
    "realworld/stratosphere/test10-mixed-zeek-dir_conn.log",
]
FORMATS = ("datagram", "nfdump", "zeek", "csv", "parquet")
SUFFIX = {"datagram": ".pcap", "nfdump": ".nfcapd", "zeek": ".log", "csv": ".csv", "parquet": ".parquet"}


class CaseTimeout(BaseException):
    """Raised by the alarm when one case runs too long (a BaseException: ingest must not swallow it)."""


@dataclass
class Packet:
    """One pcap record: its 16-byte header fields and the frame; where the IP header and the UDP
    payload (the export datagram) lie in the frame."""

    ts: tuple[int, int]
    frame: bytes
    ip_off: int
    ip_ver: int
    pay: tuple[int, int]

    @property
    def payload(self) -> bytes:
        return self.frame[self.pay[0] : self.pay[1]]

    def with_payload(self, new: bytes) -> bytes:
        """The frame carrying ``new`` instead of its datagram, IP and UDP lengths adjusted."""
        f = bytearray(self.frame[: self.pay[0]] + new + self.frame[self.pay[1] :])
        delta = len(new) - (self.pay[1] - self.pay[0])
        if self.ip_ver == 4:
            (tot,) = struct.unpack_from(">H", f, self.ip_off + 2)
            struct.pack_into(">H", f, self.ip_off + 2, max(0, min(0xFFFF, tot + delta)))
        else:
            (pl,) = struct.unpack_from(">H", f, self.ip_off + 4)
            struct.pack_into(">H", f, self.ip_off + 4, max(0, min(0xFFFF, pl + delta)))
        (ul,) = struct.unpack_from(">H", f, self.pay[0] - 4)
        struct.pack_into(">H", f, self.pay[0] - 4, max(0, min(0xFFFF, ul + delta)))
        return bytes(f)


@dataclass
class Seed:
    fmt: str
    name: str
    data: bytes
    stored: int = 0  # flows the clean seed stores (the oracle for "good records around")
    status: str = ""
    # datagram seeds: the pcap's global header, byte order and packets
    pcap_header: bytes = b""
    bo: str = "<"
    packets: list[Packet] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        return SUFFIX[self.fmt]


# ----- pcap --------------------------------------------------------------------------------------


def parse_pcap(data: bytes) -> tuple[bytes, str, list[Packet]]:
    """Global header, byte order and packets of a classic Ethernet pcap."""
    bo = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    (link,) = struct.unpack_from(bo + "I", data, 20)
    out = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(bo + "IIII", data, off)
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        try:
            ip_off, ver = _ip_payload(frame, 0, len(frame), link)
            _exp, ps, pe, *_ports = _udp(frame, 0, len(frame), link)
        except Exception:  # noqa: BLE001 - a seed packet that is not UDP: kept as it is, never mutated
            out.append(Packet((sec, frac), frame, 0, 0, (len(frame), len(frame))))
            continue
        out.append(Packet((sec, frac), frame, ip_off, ver, (ps, pe)))
    return data[:24], bo, out


def record_header(bo: str, ts: tuple[int, int], incl: int, orig: int | None = None) -> bytes:
    return struct.pack(bo + "IIII", ts[0], ts[1], incl, incl if orig is None else orig)


def build_pcap(header: bytes, bo: str, frames: list[tuple[tuple[int, int], bytes]]) -> bytes:
    return header + b"".join(record_header(bo, ts, len(fr)) + fr for ts, fr in frames)


# ----- running one input -------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str  # ingest status, or "traceback" / "timeout" when an exception escaped
    stored: int
    error: str = ""
    exc_type: str = ""
    frames: list[tuple[str, str, int]] = field(default_factory=list)  # (file, function, line), innermost last


class _Catch(logging.Handler):
    """Keeps the exc_info that ingest_paths logs at debug level when it turns an exception into
    status ``failed``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.exc: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and self.exc is None:
            self.exc = record.exc_info


_CATCH = _Catch()


def install_catch() -> None:
    lg = logging.getLogger("flowpivot.ingest")
    if _CATCH not in lg.handlers:
        lg.addHandler(_CATCH)
        lg.setLevel(logging.DEBUG)
        lg.propagate = False


def _frames(tb: Any) -> list[tuple[str, str, int]]:
    out = []
    for fs in traceback.extract_tb(tb):
        fn = fs.filename
        i = fn.find("flowpivot/")
        fn = fn[i:] if i >= 0 else fn.rsplit("site-packages/", 1)[-1]
        out.append((fn, fs.name, fs.lineno or 0))
    return out


_UNRAISABLE: list[Any] = []


def _unraisable(u: Any) -> None:
    """Python prints these as "Exception ignored in ..." tracebacks (e.g. raised in a pyarrow
    callback); the user sees a traceback, so the case counts as one."""
    _UNRAISABLE.append((u.exc_type, u.exc_traceback, repr(u.object)[:80]))


def stored_rows(store: Store) -> int:
    return sum(pq.read_metadata(f).num_rows for f in store.files())


def run_bytes(data: bytes, suffix: str, workdir: Path, tag: str = "case") -> Outcome:
    """Write ``data`` to a file, ingest it (format detected, as the CLI does) into a new store,
    count the rows stored; the file and the store are removed afterwards."""
    install_catch()
    path = workdir / f"{tag}{suffix}"
    root = workdir / f"{tag}-store"
    path.write_bytes(data)
    _CATCH.exc = None
    _UNRAISABLE.clear()
    old_hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    try:
        store = Store(root)
        try:
            reps = ingest_paths([path], store)
        except CaseTimeout:
            return Outcome("timeout", 0, "case ran longer than the time limit")
        except Exception as e:  # noqa: BLE001 - the thing measured
            msg = f"{type(e).__name__}: {e}".replace(str(path), "<input>")
            return Outcome("traceback", 0, msg, type(e).__name__, _frames(e.__traceback__))
        rep = reps[0]
        rep.error = rep.error.replace(str(path), "<input>")
        if rep.status == "failed":
            exc = _CATCH.exc
            frames = _frames(exc[2]) if exc else []
            name = exc[0].__name__ if exc else rep.error.split(":", 1)[0]
            return Outcome("traceback", 0, rep.error, name, frames)
        stored = stored_rows(store) if rep.status == "ingested" else 0
        if _UNRAISABLE:
            typ, tb, obj = _UNRAISABLE[0]
            where = re.sub(r" at 0x[0-9a-f]+", "", obj)
            msg = f"printed: Exception ignored in {where}"
            return Outcome("traceback", stored, msg, f"unraisable {typ.__name__} in {where}", _frames(tb))
        return Outcome(rep.status, stored, rep.error)
    finally:
        sys.unraisablehook = old_hook
        path.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)


# ----- building the seeds ------------------------------------------------------------------------


def _shared(rel: str) -> Path:
    p = SHARED / rel
    if not p.exists():
        raise SystemExit(f"shared data file missing: {p} (set FLOWPIVOT_SHARED)")
    return p


def _datagram_seeds() -> list[Seed]:
    seeds = []
    for name, files, limit in DATAGRAM_SEEDS:
        header, bo, packets = b"", "<", []
        for rel in files:
            h, b, p = parse_pcap(_shared(rel).read_bytes())
            header, bo = header or h, b
            packets += p
        if limit:
            packets = packets[:limit]
        data = build_pcap(header, bo, [(p.ts, p.frame) for p in packets])
        seeds.append(Seed("datagram", name, data, pcap_header=header, bo=bo, packets=packets))
    return seeds


def _cli(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-c", "from flowpivot.cli import main; main()", *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def build_seeds(cache: Path) -> dict[str, list[Seed]]:
    """Every seed, its clean ingest result recorded (``stored``, ``status``)."""
    cache.mkdir(parents=True, exist_ok=True)
    full = _shared(NFDUMP_FILE)
    small = cache / "nfdump-300.nfcapd"
    lz4 = cache / "nfdump-300-lz4.nfcapd"
    if not small.exists():
        subprocess.run(["nfdump", "-r", str(full), "-c", "300", "-w", str(small)], check=True, capture_output=True)
    if not lz4.exists():
        subprocess.run(["nfdump", "-r", str(full), "-c", "300", "-y", "-w", str(lz4)], check=True, capture_output=True)
    csv_p, pq_p, part_p = cache / "flows.csv", cache / "flows-rg64.parquet", cache / "store-partition.parquet"
    if not (csv_p.exists() and pq_p.exists() and part_p.exists()):
        with tempfile.TemporaryDirectory() as td:
            st = Path(td) / "store"
            ingest_paths([_shared(ZEEK_SEEDS[0]), small], Store(st))
            _cli("flows", "--store", str(st), "--output", "csv", "--limit", "400", "--out", str(csv_p))
            raw = Path(td) / "flows.parquet"
            _cli("flows", "--store", str(st), "--output", "parquet", "--limit", "400", "--out", str(raw))
            pq.write_table(pq.read_table(raw), pq_p, row_group_size=64)
            shutil.copyfile(Store(st).files()[0], part_p)
    seeds = {
        "datagram": _datagram_seeds(),
        "nfdump": [
            Seed("nfdump", "nfdump-300", small.read_bytes()),
            Seed("nfdump", "nfdump-300-lz4", lz4.read_bytes()),
            Seed("nfdump", "nfdump-full", full.read_bytes()),
        ],
        "zeek": [Seed("zeek", Path(z).name, _shared(z).read_bytes()) for z in ZEEK_SEEDS],
        "csv": [Seed("csv", "flows-csv", csv_p.read_bytes())],
        "parquet": [
            Seed("parquet", "flows-rg64", pq_p.read_bytes()),
            Seed("parquet", "store-partition", part_p.read_bytes()),
        ],
    }
    with tempfile.TemporaryDirectory() as td:
        for group in seeds.values():
            for s in group:
                out = run_bytes(s.data, s.suffix, Path(td), "seed")
                s.stored, s.status = out.stored, out.status
    return seeds

"""Benchmark: decode a pcap of NetFlow v5, v9 and IPFIX export datagrams with flowpivot.

Run: ``.venv/bin/python -m bench.decode [--flows 2000000]``

It writes a synthetic capture (a third of the flows each as v5, v9 and IPFIX datagrams from
several exporters, IPv4 and IPv6 templates), times ``read_pcap`` + decode on one core, then in
the same run times the references on the same flows:

* nfdump: the flows are sent over loopback to a real ``nfcapd``; ``nfdump -r FILE -q -o csv``
  reading them back from the nfcapd file is the reference (reading its own binary format).
* tshark: ``tshark -T fields`` decoding the same pcap (on a slice, it is slow).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from flowpivot.decode import FlowDecoder
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.pcap import read_pcap

V5_REC = np.dtype(
    [("src", ">u4"), ("dst", ">u4"), ("nh", ">u4"), ("inif", ">u2"), ("outif", ">u2"), ("pkts", ">u4"),
     ("bytes", ">u4"), ("first", ">u4"), ("last", ">u4"), ("sport", ">u2"), ("dport", ">u2"), ("pad", "u1"),
     ("flags", "u1"), ("proto", "u1"), ("tos", "u1"), ("sas", ">u2"), ("das", ">u2"), ("smask", "u1"),
     ("dmask", "u1"), ("pad2", ">u2")]
)  # fmt: skip
# (element id, length) of the v9 IPv4 template and the IPFIX IPv6 template
V9_FIELDS = [(2, 4), (1, 4), (8, 4), (12, 4), (10, 4), (14, 4), (21, 4), (22, 4), (7, 2), (11, 2), (16, 4), (17, 4),
             (15, 4), (9, 1), (13, 1), (4, 1), (6, 1), (5, 1), (61, 1)]  # fmt: skip
IPFIX_FIELDS = [(2, 8), (1, 8), (27, 16), (28, 16), (10, 4), (14, 4), (152, 8), (153, 8), (7, 2), (11, 2), (16, 4),
                (17, 4), (4, 1), (6, 1), (61, 1)]  # fmt: skip


def _dtype(fields: list[tuple[int, int]]) -> np.dtype:
    return np.dtype(
        [
            (f"ie{i}_{eid}", ">u1" if n == 1 else f">u{n}" if n in (2, 4, 8) else ("u1", (n,)))
            for i, (eid, n) in enumerate(fields)
        ]
    )


def _fill(rec: np.ndarray, rng: np.random.Generator, now_ms: int) -> None:
    for name in rec.dtype.names:
        eid = int(name.split("_")[1]) if name.startswith("ie") else None
        sub = rec[name]
        if sub.ndim == 2:
            sub[:] = rng.integers(0, 256, size=sub.shape, dtype=np.uint8)
        elif eid in (152, 153):
            sub[:] = now_ms - rng.integers(0, 60_000, size=len(sub))
        elif eid in (21, 22):
            sub[:] = 1_000_000 - rng.integers(0, 60_000, size=len(sub))
        else:
            info = np.iinfo(sub.dtype)
            sub[:] = rng.integers(0, min(info.max, 1 << 31), size=len(sub), dtype=np.int64)


def _template_set(version: int, tid: int, fields: list[tuple[int, int]]) -> bytes:
    body = struct.pack(">HH", tid, len(fields)) + b"".join(struct.pack(">HH", e, n) for e, n in fields)
    return struct.pack(">HH", 0 if version == 9 else 2, 4 + len(body)) + body


def datagrams(n_flows: int, seed: int = 1) -> list[tuple[bytes, str, int]]:
    """Export datagrams carrying ``n_flows`` flows: a third each v5, v9, IPFIX; 4 exporters each."""
    rng = np.random.default_rng(seed)
    now = 1_700_000_000
    out: list[tuple[bytes, str, int]] = []
    third = n_flows // 3
    v9_dt, ipfix_dt = _dtype(V9_FIELDS), _dtype(IPFIX_FIELDS)
    seq: dict[str, int] = {}
    for version, per, dt, total in (
        (5, 30, V5_REC, third),
        (9, 27, v9_dt, third),
        (10, 12, ipfix_dt, n_flows - 2 * third),
    ):
        rec = np.zeros(total, dtype=dt)
        _fill(rec, rng, now * 1000)
        raw = rec.tobytes()
        size = dt.itemsize
        for k, start in enumerate(range(0, total, per)):
            count = min(per, total - start)
            exporter = f"192.0.2.{version * 10 + k % 4}"
            ts = (now + k // 1000) * 1000
            body = raw[start * size : (start + count) * size]
            s = seq.get(exporter, 0)
            if version == 5:
                hdr = struct.pack(">HHIIIIBBH", 5, count, 1_000_000, now, 0, s, 0, 1, 0)
                seq[exporter] = s + count
                out.append((hdr + body, exporter, ts))
                continue
            sets = b""
            if k < 4 or k % 200 == 0:  # templates at the start and now and then, as exporters do
                sets += _template_set(version, 256, V9_FIELDS if version == 9 else IPFIX_FIELDS)
            pad = (-len(body)) % 4
            sets += struct.pack(">HH", 256, 4 + len(body) + pad) + body + b"\0" * pad
            if version == 9:
                hdr = struct.pack(">HHIIII", 9, count, 1_000_000, now, s, 0)
                seq[exporter] = s + 1
            else:
                hdr = struct.pack(">HHIII", 10, 16 + len(sets), now, s, 0)
                seq[exporter] = s + count
            out.append((hdr + sets, exporter, ts))
    return out


def write_pcap(path: Path, dgrams: list[tuple[bytes, str, int]], port: int = 2055) -> None:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        eth = b"\x00\x53\x00\x44\x55\x66\x00\x53\x00\x11\x22\x33\x08\x00"
        for data, exporter, ts in dgrams:
            udp = struct.pack(">HHHH", 40000, port, 8 + len(data), 0)
            ip = struct.pack(
                ">BBHHHBBH4s4s",
                0x45,
                0,
                28 + len(data),
                0,
                0,
                64,
                17,
                0,
                socket.inet_aton(exporter),
                socket.inet_aton("192.0.2.254"),
            )
            frame = eth + ip + udp + data
            fh.write(struct.pack("<IIII", ts // 1000, (ts % 1000) * 1000, len(frame), len(frame)))
            fh.write(frame)


def time_flowpivot(path: Path, repeat: int = 5) -> tuple[float, float, int]:
    """Best wall-clock and best CPU seconds (this process) of read_pcap + decode, and the flows."""
    wall, cpu, flows = float("inf"), float("inf"), 0
    for _ in range(repeat):
        dec = FlowDecoder()
        report = ReadReport(str(path))
        t0, c0 = time.perf_counter(), time.process_time()
        flows = sum(b.num_rows for b in read_pcap(path, report, dec))
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
        assert not report.problems, report.problems[:3]
    return wall, cpu, flows


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_cpu(cmd: list[str]) -> tuple[float, bytes]:
    """CPU seconds (user + system) a tool spent, and its output: comparable with flowpivot's CPU time
    on a machine shared with other jobs, where wall-clock time measures the neighbours too."""
    c0 = _child_cpu()
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return _child_cpu() - c0, out


def nfdump_reference(dgrams: list[tuple[bytes, str, int]], workdir: Path) -> tuple[float, float, int] | None:
    """Send the datagrams to a real nfcapd over loopback, then time nfdump reading the flows back."""
    nfcapd, nfdump = shutil.which("nfcapd"), shutil.which("nfdump")
    if not (nfcapd and nfdump):
        return None
    outdir = workdir / "nfcapd"
    outdir.mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([nfcapd, "-b", "127.0.0.1", "-p", str(port), "-w", str(outdir), "-t", "3600", "-B", "8000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(1.0)  # nfcapd has no readiness signal; the bench (not a test) waits for it to bind
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, (data, _, _) in enumerate(dgrams):
                s.sendto(data, ("127.0.0.1", port))
                if i % 64 == 63:
                    time.sleep(0.002)  # pace so the kernel buffer does not drop datagrams
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    files = [p for p in outdir.rglob("nfcapd.*") if p.is_file()]
    if not files:
        return None
    csv_secs, out = run_cpu([nfdump, "-r", str(files[0]), "-q", "-o", "csv"])
    flows = out.count(b"\n")
    scan = float("inf")
    for _ in range(3):  # a filter no flow matches: nfdump reads and tests every record, prints nothing
        scan = min(scan, run_cpu([nfdump, "-r", str(files[0]), "-q", "proto 255"])[0])
    return csv_secs, scan, flows


def tshark_reference(dgrams: list[tuple[bytes, str, int]], workdir: Path, n: int = 2000) -> tuple[float, int] | None:
    tshark = shutil.which("tshark")
    if not tshark:
        return None
    sl = workdir / "slice.pcap"
    step = max(1, len(dgrams) // n)
    write_pcap(sl, dgrams[:4] + dgrams[::step][:n] + dgrams[len(dgrams) // 3 : len(dgrams) // 3 + 4])
    elapsed, out = run_cpu(
        [tshark, "-r", str(sl), "-d", "udp.port==2055,cflow", "-T", "fields", "-E", "occurrence=a",
         "-e", "cflow.srcaddr", "-e", "cflow.srcaddrv6"]
    )  # fmt: skip
    flows = sum(len(line.split(b",")) for line in out.splitlines() if line.strip())
    return elapsed, flows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=2_000_000)
    ap.add_argument("--no-nfdump", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        dg = datagrams(args.flows)
        pcap = work / "exports.pcap"
        write_pcap(pcap, dg)
        print(f"synthetic capture: {len(dg):,} datagrams, {args.flows:,} flows, {pcap.stat().st_size / 1e6:.0f} MB "
              f"(built in {time.perf_counter() - t0:.1f} s)")  # fmt: skip
        wall, secs, flows = time_flowpivot(pcap)
        fp_rate = flows / secs
        print(f"flowpivot read_pcap+decode: {flows:,} flows in {secs:.2f} s CPU = {fp_rate / 1e6:.2f} M flows/s "
              f"(wall {wall:.2f} s = {flows / wall / 1e6:.2f} M flows/s; best of 5, one core)")  # fmt: skip
        ref = None if args.no_nfdump else nfdump_reference(dg, work)
        if ref:
            csv_s, scan_s, rf = ref
            print(f"nfcapd received {rf:,} of the flows over loopback")
            print(
                f"nfdump -r FILE -o csv: {rf / csv_s / 1e6:.3f} M flows/s; flowpivot/nfdump = {fp_rate / (rf / csv_s):.1f}x"
            )
            print(f"nfdump -r FILE 'proto 255' (read+filter, no output): {rf / scan_s / 1e6:.2f} M flows/s; "
                  f"flowpivot/nfdump = {fp_rate / (rf / scan_s):.2f}x")  # fmt: skip
        ts = tshark_reference(dg, work)
        if ts:
            rs, rf = ts
            print(f"tshark -T fields (slice): {rf:,} flows in {rs:.2f} s = {rf / rs / 1e6:.3f} M flows/s; "
                  f"flowpivot/tshark = {fp_rate / (rf / rs):.0f}x")  # fmt: skip
        print(f"machine: {os.cpu_count()} cores, shared with other jobs (load average {os.getloadavg()[0]:.1f}); "
              f"python {sys.version.split()[0]}; every rate is per CPU second (user + system) of its process")  # fmt: skip


if __name__ == "__main__":
    main()

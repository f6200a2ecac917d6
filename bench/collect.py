"""Benchmark: the live collector against nfcapd 1.7.1, same NetFlow v5 stream over loopback, same run.

Run: ``.venv/bin/python -m bench.collect [--flows 5000000] [--rate 1500000]``

A sender process blasts pre-built NetFlow v5 datagrams (30 realistic flows each, every flow
distinct, sequence numbers continuous) at a controlled rate for a fixed count, first to
``flowpivot collect`` and then to ``nfcapd -y`` (LZ4). For each it reports the rate the sender
achieved, the flows stored (flowpivot: rows in the Parquet store; nfcapd: ``nfdump -I``) and the
loss, and flowpivot's rate as a ratio to nfcapd's. "Drain" is the time from the last datagram
sent to the collector having stored everything (flowpivot: SIGTERM, then decoding what is still
buffered and committing, up to its final stats.json write; nfcapd: socket queue empty, then
SIGTERM to exit), so
``flows / (send + drain)`` is the rate the collector really sustained.

Both collectors ask for a 64 MiB receive buffer. Linux caps SO_RCVBUF at net.core.rmem_max;
when run as root and the cap is lower, the benchmark raises it for the run and restores it
(it says so). flowpivot also tries SO_RCVBUFFORCE, which needs CAP_NET_ADMIN.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from flowpivot.collect import udp_queue

REPO = Path(__file__).resolve().parents[1]
RCVBUF = 64 << 20
PER_DATAGRAM = 30

V5_HEADER = np.dtype(
    [("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("secs", ">u4"), ("nsecs", ">u4"), ("seq", ">u4"),
     ("engine_type", "u1"), ("engine_id", "u1"), ("sampling", ">u2")]
)  # fmt: skip
V5_RECORD = np.dtype(
    [("src", ">u4"), ("dst", ">u4"), ("nexthop", ">u4"), ("in_if", ">u2"), ("out_if", ">u2"), ("packets", ">u4"),
     ("bytes", ">u4"), ("first", ">u4"), ("last", ">u4"), ("src_port", ">u2"), ("dst_port", ">u2"), ("pad1", "u1"),
     ("tcp_flags", "u1"), ("protocol", "u1"), ("tos", "u1"), ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"),
     ("dst_mask", "u1"), ("pad2", ">u2")]
)  # fmt: skip
assert V5_HEADER.itemsize == 24 and V5_RECORD.itemsize == 48


# ---- a realistic flow stream --------------------------------------------------------------------


def realistic_flows(
    n: int, seed: int = 1, flows_per_s: float = 20_000.0, start_ms: int | None = None
) -> dict[str, np.ndarray]:
    """``n`` NetFlow v5 flows of a border router: clients in 10.20/16 talking to a Zipf-popular set of
    servers (both directions of each connection exported), some inbound SYN scans and DNS/NTP;
    log-normal sizes, durations and arrival times at about ``flows_per_s``, in export (end) order."""
    rng = np.random.default_rng(seed)
    start_ms = int(time.time() * 1000) - int(n / flows_per_s * 1000) if start_ms is None else start_ms
    n_conn = (n + 1) // 2
    kind = rng.choice(4, size=n_conn, p=[0.72, 0.16, 0.07, 0.05])  # 0 tcp session, 1 dns/ntp, 2 scan syn, 3 rst
    clients = (10 << 24 | 20 << 16) + rng.integers(1, 4000, size=4000)
    servers = rng.integers(16 << 24, 223 << 24, size=60_000, dtype=np.int64)
    zipf_c = np.minimum(rng.zipf(1.3, size=n_conn), len(clients)) - 1
    zipf_s = np.minimum(rng.zipf(1.15, size=n_conn), len(servers)) - 1
    client = clients[zipf_c]
    server = servers[zipf_s]
    scanner = rng.integers(16 << 24, 223 << 24, size=n_conn)
    svc_ports = np.array([443, 80, 443, 443, 22, 25, 993, 8080, 3389, 5222, 8443, 443])
    sport = rng.integers(32_768, 61_000, size=n_conn)
    dport = svc_ports[rng.integers(0, len(svc_ports), size=n_conn)]
    dport = np.where(kind == 1, np.where(rng.random(n_conn) < 0.85, 53, 123), dport)
    dport = np.where(kind >= 2, rng.integers(1, 10_000, size=n_conn), dport)
    proto = np.where(kind == 1, 17, 6)
    pkts = np.maximum(1, rng.lognormal(1.6, 1.3, size=n_conn)).astype(np.int64)
    pkts = np.where(kind >= 2, 1, np.where(kind == 1, 1, pkts))
    pkt_size = rng.integers(52, 1500, size=n_conn)
    up_bytes = pkts * np.minimum(pkt_size, rng.integers(52, 600, size=n_conn))
    up_bytes = np.where(kind == 1, rng.integers(60, 90, size=n_conn), np.where(kind >= 2, 40, up_bytes))
    down_pkts = np.where(kind == 0, np.maximum(1, (pkts * rng.uniform(0.6, 1.6, size=n_conn)).astype(np.int64)), 1)
    down_bytes = np.where(kind == 0, down_pkts * pkt_size, np.where(kind == 1, rng.integers(90, 500, size=n_conn), 40))
    dur = np.where(rng.random(n_conn) < 0.3, 0, rng.lognormal(7.0, 2.0, size=n_conn)).astype(np.int64)
    dur = np.where(kind >= 1, np.minimum(dur, 50), np.minimum(dur, 300_000))
    t0 = start_ms + np.sort(rng.integers(0, int(n / flows_per_s * 1000) + 1, size=n_conn))
    up_flags = np.where(
        kind == 0, rng.choice([0x1B, 0x1B, 0x1F, 0x1A, 0x18, 0x1E], size=n_conn), np.where(kind >= 2, 0x02, 0)
    )
    down_flags = np.where(
        kind == 0, rng.choice([0x1B, 0x1B, 0x1A, 0x13, 0x18], size=n_conn), np.where(kind == 3, 0x14, 0)
    )
    as_pool = rng.integers(1000, 65_000, size=3000)
    ext = np.where(kind >= 2, scanner, server)
    ext_as = as_pool[(ext * 2654435761 >> 7) % len(as_pool)]
    inbound = kind >= 2  # scans come in from outside: the "up" flow is scanner -> client
    a = np.where(inbound, ext, client)
    b = np.where(inbound, client, ext)
    a_port = np.where(inbound, rng.integers(1024, 65_535, size=n_conn), sport)
    two = np.stack
    flows = {
        "src": two([a, b], 1).ravel(),
        "dst": two([b, a], 1).ravel(),
        "src_port": two([a_port, dport], 1).ravel(),
        "dst_port": two([dport, a_port], 1).ravel(),
        "protocol": two([proto, proto], 1).ravel(),
        "packets": two([pkts, down_pkts], 1).ravel(),
        "bytes": two([up_bytes, down_bytes], 1).ravel(),
        "tcp_flags": two([up_flags, down_flags], 1).ravel(),
        "start": two([t0, t0 + rng.integers(0, 40, size=n_conn)], 1).ravel(),
        "in_if": two([np.where(inbound, 2, 1), np.where(inbound, 1, 2)], 1).ravel(),
        "out_if": two([np.where(inbound, 1, 2), np.where(inbound, 2, 1)], 1).ravel(),
        "src_as": two([np.where(inbound, ext_as, 0), np.where(inbound, 0, ext_as)], 1).ravel(),
        "dst_as": two([np.where(inbound, 0, ext_as), np.where(inbound, ext_as, 0)], 1).ravel(),
    }
    flows["end"] = flows["start"] + two([dur, dur], 1).ravel()
    # a SYN that was never answered has no reverse flow
    keep = ~two([np.zeros(n_conn, bool), kind == 2], 1).ravel()
    flows = {k: v[keep] for k, v in flows.items()}
    # top up to n with more one-way scans, then export in end order
    short = n - len(flows["src"])
    if short > 0:
        extra = realistic_flows(short * 4 + 8, seed + 1, flows_per_s, start_ms)
        flows = {k: np.concatenate([v, extra[k][:short]]) for k, v in flows.items()}
    order = np.argsort(flows["end"], kind="stable")[:n]
    return {k: v[order] for k, v in flows.items()}


def v5_datagrams(flows: dict[str, np.ndarray], per: int = PER_DATAGRAM, boot_ms: int | None = None) -> np.ndarray:
    """The flows as NetFlow v5 export datagrams, one row of a (datagrams, 24 + 48*per) uint8 array each."""
    n = len(flows["src"])
    if n % per:
        raise ValueError(f"{n} flows is not a multiple of {per}")
    nd = n // per
    boot_ms = int(flows["start"].min()) - 3_600_000 if boot_ms is None else boot_ms
    rec = np.zeros(n, V5_RECORD)
    for name in (
        "src",
        "dst",
        "src_port",
        "dst_port",
        "protocol",
        "packets",
        "bytes",
        "tcp_flags",
        "in_if",
        "out_if",
        "src_as",
        "dst_as",
    ):
        rec[name] = flows[name]
    rec["first"] = flows["start"] - boot_ms
    rec["last"] = flows["end"] - boot_ms
    export_ms = flows["end"].reshape(nd, per).max(axis=1) + 20
    hdr = np.zeros(nd, V5_HEADER)
    hdr["version"] = 5
    hdr["count"] = per
    hdr["uptime"] = export_ms - boot_ms
    hdr["secs"] = export_ms // 1000
    hdr["nsecs"] = (export_ms % 1000) * 1_000_000
    hdr["seq"] = np.arange(nd, dtype=np.int64) * per
    out = np.empty((nd, 24 + 48 * per), np.uint8)
    out[:, :24] = hdr.view(np.uint8).reshape(nd, 24)
    out[:, 24:] = rec.view(np.uint8).reshape(nd, 48 * per)
    return out


# ---- sending ------------------------------------------------------------------------------------


def _send(datagrams: np.ndarray, addr: tuple[str, int], rate_flows: float, result: Any) -> None:
    """Sender process: every datagram once, paced to ``rate_flows`` flows/s (0: as fast as possible)."""
    per = (datagrams.shape[1] - 24) // 48
    interval = per / rate_flows if rate_flows > 0 else 0.0
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.connect(addr)
    send = s.send
    flat = memoryview(np.ascontiguousarray(datagrams).reshape(-1))
    size = datagrams.shape[1]
    views = [flat[i * size : (i + 1) * size] for i in range(len(datagrams))]  # no copies
    clock = time.perf_counter
    t0 = clock()
    burst = 64  # about 1.3 ms of datagrams at 1.5 M flows/s
    sleep = time.sleep
    for i in range(0, len(views), burst):
        for v in views[i : i + burst]:
            while True:
                try:
                    send(v)
                    break
                except (BlockingIOError, ConnectionRefusedError):
                    continue
        if interval:
            ahead = t0 + (i + burst) * interval - clock()
            if ahead > 0:
                sleep(ahead)  # sleep, not spin: the sender must not take the collector's CPU
    result["seconds"] = clock() - t0
    result["datagrams"] = len(views)


def blast(datagrams: np.ndarray, addr: tuple[str, int], rate_flows: float) -> tuple[int, float]:
    """Send in a forked process (no GIL shared with anything); returns (datagrams sent, seconds)."""
    ctx = mp.get_context("fork")
    with ctx.Manager() as m:
        res = m.dict()
        p = ctx.Process(target=_send, args=(datagrams, addr, rate_flows, res))
        p.start()
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"sender failed ({p.exitcode})")
        return int(res["datagrams"]), float(res["seconds"])


def _wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


class RmemMax:
    """Raise net.core.rmem_max for the run when root (and restore it); report what was done."""

    PATH = Path("/proc/sys/net/core/rmem_max")

    def __init__(self, want: int):
        self.want = want
        self.before: int | None = None
        self.note = ""

    def __enter__(self) -> RmemMax:
        try:
            self.before = int(self.PATH.read_text())
        except OSError:
            self.note = "net.core.rmem_max unreadable"
            return self
        if self.before >= self.want:
            self.note = f"net.core.rmem_max {self.before} (left as is)"
        elif os.geteuid() == 0:
            try:
                self.PATH.write_text(str(self.want))
                self.note = (
                    f"net.core.rmem_max raised from {self.before} to {self.want} for the run (root), then restored"
                )
            except OSError as e:
                self.note = f"net.core.rmem_max {self.before}; raising it failed: {e}"
        else:
            self.note = f"net.core.rmem_max {self.before} caps SO_RCVBUF (not root: not raised)"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.before is not None and "raised" in self.note:
            self.PATH.write_text(str(self.before))


# ---- the two collectors -------------------------------------------------------------------------


def run_flowpivot(
    datagrams: np.ndarray, rate: float, workdir: Path, rotate: str = "5m", writers: int = 1
) -> dict[str, Any]:
    store, log = workdir / "fp-store", workdir / "fp-collect.log"
    shutil.rmtree(store, ignore_errors=True)
    cmd = [sys.executable, "-c", "from flowpivot.cli import main; main()", "collect", "--store", str(store),
           "--listen", "127.0.0.1:0", "--rotate", rotate, "--rcvbuf", str(RCVBUF), "--writers", str(writers)]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh, cwd=REPO)
    port: list[int] = []

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"flowpivot collect exited: {log.read_text()}")
        for line in log.read_text().splitlines():
            if line.startswith("listening on "):
                port.append(int(line.split()[2].rsplit(":", 1)[1]))
                return True
        return False

    _wait(listening, 60, "flowpivot collect to listen")
    t_send = time.time()
    sent, secs = blast(datagrams, ("127.0.0.1", port[0]), rate)
    proc.send_signal(signal.SIGTERM)
    rc, cpu = _wait_cpu(proc)
    if rc != 0:
        raise RuntimeError(f"flowpivot collect exited {rc}: {log.read_text()[-2000:]}")
    files = sorted(store.glob("flows/day=*/*.parquet"))
    stored = sum(pq.read_metadata(f).num_rows for f in files)
    stats = json.loads((store / "collector" / "stats.json").read_text())
    if not len(datagrams):
        return {"cpu_s": cpu}
    # everything decoded and committed at the final stats write (the process exits just after)
    done = datetime.datetime.fromisoformat(stats["updated"].replace("Z", "+00:00")).timestamp()
    drain = max(0.0, done - t_send - secs)
    return {
        "sent_flows": sent * PER_DATAGRAM,
        "send_s": secs,
        "drain_s": drain,
        "stored_flows": stored,
        "disk_bytes": sum(f.stat().st_size for f in files),
        "files": len(files),
        "cpu_s": cpu,
        "kernel_drops": stats.get("kernel_drops"),
        "rcvbuf": stats.get("rcvbuf_effective"),
        "timing": stats.get("timing"),
        "lost_seq": stats["totals"].get("lost_seq"),
        "store": str(store),
    }


def _wait_cpu(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Wait for a child; its exit status and the CPU seconds (user + system, all its threads) it used."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # already reaped (it exited early)
        return proc.wait(), float("nan")
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def _nfcapd_flows(nfdump: str, flowdir: Path) -> int:
    total = 0
    for f in sorted(flowdir.glob("nfcapd.*")):
        out = subprocess.run([nfdump, "-I", "-r", str(f)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Flows:"):
                total += int(line.split()[1])
                break
    return total


def run_nfcapd(datagrams: np.ndarray, rate: float, workdir: Path, compress: str = "-y") -> dict[str, Any]:
    nfcapd, nfdump = shutil.which("nfcapd"), shutil.which("nfdump")
    if not nfcapd or not nfdump:
        raise RuntimeError("nfcapd/nfdump not installed")
    flowdir = workdir / "nfcapd"
    shutil.rmtree(flowdir, ignore_errors=True)
    flowdir.mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [nfcapd, "-w", str(flowdir), "-b", "127.0.0.1", "-p", str(port), "-B", str(RCVBUF), "-t", "300", compress]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(lambda: udp_queue(port) is not None, 30, "nfcapd to listen")
    sent, secs = blast(datagrams, ("127.0.0.1", port), rate)
    t = time.perf_counter()
    _wait(lambda: udp_queue(port) == 0, 600, "nfcapd to read its socket")
    proc.send_signal(signal.SIGTERM)
    _, cpu = _wait_cpu(proc)
    drain = time.perf_counter() - t
    files = sorted(flowdir.glob("nfcapd.*"))
    return {
        "sent_flows": sent * PER_DATAGRAM,
        "send_s": secs,
        "drain_s": drain,
        "stored_flows": _nfcapd_flows(nfdump, flowdir),
        "cpu_s": cpu,
        "disk_bytes": sum(f.stat().st_size for f in files),
        "files": len(files),
        "dir": str(flowdir),
    }


def _rate(r: dict[str, Any]) -> float:
    return r["stored_flows"] / (r["send_s"] + r["drain_s"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=5_000_010, help="flows to send (a multiple of 30)")
    ap.add_argument("--rate", type=float, default=1_500_000, help="sending rate in flows/s (0: as fast as possible)")
    ap.add_argument("--skip-nfcapd", action="store_true")
    ap.add_argument("--writers", type=int, default=1, help="flowpivot collect --writers")
    ap.add_argument("--keep", type=Path, help="keep the stores in this directory")
    ap.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    a = ap.parse_args(argv)
    n = a.flows - a.flows % PER_DATAGRAM
    t = time.perf_counter()
    dgrams = v5_datagrams(realistic_flows(n))
    build_s = time.perf_counter() - t
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"{n:,} flows in {len(dgrams):,} v5 datagrams of {dgrams.shape[1]} bytes (built in {build_s:.1f} s)")  # fmt: skip
    work = a.keep or Path(tempfile.mkdtemp(prefix="bench-collect-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    try:
        with RmemMax(2 * RCVBUF) as rm:
            print(rm.note)
            # CPU of starting and stopping with no traffic (interpreter, imports), subtracted below
            idle = run_flowpivot(dgrams[:0], a.rate, work)["cpu_s"]
            results["flowpivot"] = run_flowpivot(dgrams, a.rate, work, writers=a.writers)
            results["flowpivot"]["cpu_s"] -= idle
            print(f"flowpivot collect start + stop with no traffic: {idle:.2f} CPU s (subtracted)")
            if not a.skip_nfcapd:
                results["nfcapd"] = run_nfcapd(dgrams, a.rate, work)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        "| collector | sent flows | send rate (flows/s) | drain (s) | stored | lost | sustained (flows/s) | CPU s | flows per CPU s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        lost = r["sent_flows"] - r["stored_flows"]
        print(f"| {name} | {r['sent_flows']:,} | {r['sent_flows'] / r['send_s']:,.0f} | {r['drain_s']:.2f} | "
              f"{r['stored_flows']:,} | {lost:,} ({lost / r['sent_flows']:.2%}) | {_rate(r):,.0f} | "
              f"{r['cpu_s']:.1f} | {r['stored_flows'] / max(r['cpu_s'], 1e-9):,.0f} |")  # fmt: skip
    fp = results["flowpivot"]
    print(f"\nflowpivot: receive buffer {fp['rcvbuf']:,} bytes (as reported by the kernel), kernel drops {fp['kernel_drops']}, "
          f"decoder timing {fp['timing']}, lost to sequence gaps {fp['lost_seq']}")  # fmt: skip
    if "nfcapd" in results:
        nf = results["nfcapd"]
        print(f"ratio flowpivot/nfcapd: sustained rate {_rate(fp) / _rate(nf):.2f}, "
              f"CPU per flow {fp['cpu_s'] / max(fp['stored_flows'], 1) / (nf['cpu_s'] / max(nf['stored_flows'], 1)):.1f}x, "
              f"stored {fp['stored_flows'] / max(nf['stored_flows'], 1):.3f}; "
              f"bytes/flow on disk: flowpivot {fp['disk_bytes'] / max(fp['stored_flows'], 1):.1f}, "
              f"nfcapd LZ4 {nf['disk_bytes'] / max(nf['stored_flows'], 1):.1f}")  # fmt: skip
    if a.json:
        print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()

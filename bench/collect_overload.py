"""Benchmark: the live collector under overload. Memory peak and its own loss report against what was sent.

Run: ``.venv/bin/python -m bench.collect_overload [--seconds 20] [--senders 2]``

Sender processes blast NetFlow v5 datagrams (30 flows each, sequence numbers continuous per
sender, each sender its own exporter address 127.0.0.N) over loopback as fast as they can for
``--seconds``: more datagrams per second than the collector can decode, so its backlog fills to
its bound and the kernel drops the rest. Then the senders stop, the collector catches up, one
last datagram per sender (continuing its sequence) shows the gap at the end, and SIGTERM stops
it. The collector runs in its own process (the library ``Collector`` with the CLI's defaults,
or the settings given with ``--set``), so its peak RSS is the kernel's ``ru_maxrss`` for it.

It reports: flows sent, stored, and sent - stored against the collector's own account:
``lost_seq`` (flows the sequence numbers say never arrived), ``kernel_drops`` (datagrams the
kernel dropped, x 30 flows) and backlog drops; the RSS peak against the bound docs/collector.md
states; the load average before and after.
"""

from __future__ import annotations

import argparse
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

from bench.collect import PER_DATAGRAM, RCVBUF, RmemMax, realistic_flows, v5_datagrams

REPO = Path(__file__).resolve().parents[1]
RSS_BOUND = 1 << 30  # docs/collector.md: the collector's RSS stays under 1 GiB

CHILD = """
import json, signal, sys, threading
from flowpivot.collect import Collector, CollectorConfig
from flowpivot.store import Store
settings = json.loads(sys.argv[2])
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
c = Collector(Store(sys.argv[1]), config=CollectorConfig(listen=(("127.0.0.1", 0),), rcvbuf=RCVBUF).replace(**settings))
c.start()
print(c.address[1], flush=True)
while not stop.wait(0.2) and c.alive():
    pass
c.stop()
""".replace("RCVBUF", str(RCVBUF))


def _blast(datagrams: np.ndarray, host: str, addr: tuple[str, int], seconds: float, result: Any) -> None:
    """Sender process: the datagrams over and over (sequence numbers continued) for ``seconds``."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.bind((host, 0))
    s.connect(addr)
    n = len(datagrams)
    seq = datagrams[:, 16:20].view(">u4").reshape(-1).astype(np.int64)  # v5 header: flow_sequence at 16
    size = datagrams.shape[1]
    sent = 0
    t0 = time.perf_counter()
    rounds = 0
    while time.perf_counter() - t0 < seconds:
        datagrams[:, 16:20] = ((seq + rounds * n * PER_DATAGRAM) % (1 << 32)).astype(">u4").view(np.uint8).reshape(n, 4)
        flat = memoryview(np.ascontiguousarray(datagrams).reshape(-1))
        for i in range(n):
            while True:
                try:
                    s.send(flat[i * size : (i + 1) * size])
                    break
                except (BlockingIOError, ConnectionRefusedError):
                    continue
            sent += 1
            if not i % 4096 and time.perf_counter() - t0 >= seconds:
                break
        rounds += 1
    result[host] = {"datagrams": sent, "seconds": time.perf_counter() - t0, "next_seq": sent * PER_DATAGRAM}


def _last(datagrams: np.ndarray, host: str, addr: tuple[str, int], next_seq: int) -> None:
    """One more datagram continuing the sender's sequence: the collector then sees the gap at the end."""
    d = datagrams[0].copy()
    d[16:20] = np.array([next_seq % (1 << 32)], dtype=">u4").view(np.uint8)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        s.sendto(d.tobytes(), addr)


def _udp_queue(port: int) -> int | None:
    from flowpivot.collect import udp_queue

    return udp_queue(port)


def run(seconds: float, senders: int, settings: dict[str, Any], workdir: Path, flows: int) -> dict[str, Any]:
    store = workdir / "store"
    shutil.rmtree(store, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store), json.dumps(settings)], stdout=subprocess.PIPE, cwd=REPO, env=env
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    addr = ("127.0.0.1", port)
    base = v5_datagrams(realistic_flows(flows, seed=3))
    hosts = [f"127.0.0.{2 + k}" for k in range(senders)]
    load_before = os.getloadavg()
    ctx = mp.get_context("fork")
    with ctx.Manager() as m:
        res = m.dict()
        procs = [ctx.Process(target=_blast, args=(base.copy(), h, addr, seconds, res)) for h in hosts]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        send_s = time.perf_counter() - t0
        sent = {h: dict(res[h]) for h in hosts}
    # the collector reads what the kernel holds: its socket empties (the backlog may still be decoding)
    deadline = time.monotonic() + 600
    quiet = 0
    while time.monotonic() < deadline and quiet < 10:
        quiet = quiet + 1 if _udp_queue(port) == 0 else 0
        time.sleep(0.1)
    socket_empty_after_s = time.perf_counter() - t0 - send_s
    for h in hosts:
        _last(base, h, addr, sent[h]["next_seq"])
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"collector exited {proc.returncode}")
    stats = json.loads((store / "collector" / "stats.json").read_text())
    stored = sum(pq.read_metadata(f).num_rows for f in store.glob("flows/day=*/*.parquet"))
    sent_flows = sum(v["datagrams"] + 1 for v in sent.values()) * PER_DATAGRAM
    loss = stats["loss"]
    return {
        "settings": settings,
        "senders": senders,
        "send_s": round(send_s, 2),
        "socket_empty_after_s": round(socket_empty_after_s, 2),
        "sent_flows": sent_flows,
        "sent_rate_flows_s": round(sent_flows / send_s),
        "stored_flows": stored,
        "sent_minus_stored": sent_flows - stored,
        "lost_seq": loss["lost_seq"],
        "kernel_drops_flows": loss["kernel_drops"] * PER_DATAGRAM,
        "backlog_drops": loss["backlog_drops"],
        "other_loss": {k: v for k, v in loss.items() if k not in ("lost_seq", "kernel_drops", "backlog_drops") and v},
        "rss_peak_mib": round(usage.ru_maxrss / 1024, 1),
        "rss_bound_mib": RSS_BOUND >> 20,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "max_backlog_bytes_seen": stats["timing"].get("max_backlog_bytes_seen"),
        "backlog_waits": stats["timing"].get("backlog_waits"),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the senders blast")
    ap.add_argument("--senders", type=int, default=2, help="sender processes (exporters 127.0.0.2, .3, ...)")
    ap.add_argument("--flows", type=int, default=300_000, help="distinct flows each sender cycles through")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=JSON", help="a CollectorConfig setting")
    ap.add_argument("--keep", type=Path, help="keep the store in this directory")
    args = ap.parse_args(argv)
    settings = {}
    for s in args.set:
        k, _, v = s.partition("=")
        settings[k] = json.loads(v)
    work = args.keep or Path(tempfile.mkdtemp(prefix="fp-overload-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.python_version()}")
    try:
        with RmemMax(RCVBUF) as rm:
            print(rm.note)
            r = run(args.seconds, args.senders, settings, work, args.flows)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(r, indent=2))
    ok_loss = r["sent_minus_stored"] == r["lost_seq"] + r["backlog_drops"] + sum(r["other_loss"].values())
    print(
        f"sent - stored = {r['sent_minus_stored']:,}; lost_seq {r['lost_seq']:,}, kernel drops x 30 "
        f"{r['kernel_drops_flows']:,}: {'matches' if ok_loss else 'DOES NOT MATCH'}; "
        f"RSS peak {r['rss_peak_mib']} MiB against {r['rss_bound_mib']} MiB: "
        f"{'inside' if r['rss_peak_mib'] <= r['rss_bound_mib'] else 'OVER'}"
    )


if __name__ == "__main__":
    main()

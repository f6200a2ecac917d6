"""Benchmark: ``flowpivot simulate`` end to end, its NetFlow v9 encoder, and two references in the same run.

Run: ``.venv/bin/python -m bench.simulate [--flows 1000000] [--sampling 100]``

* simulate: the fin7 scenario with ``--flows`` exported records (sessions, sampling, encoding, files).
* encoder: ``V9Writer.write`` on one day's records, against a per-record ``struct.pack`` encoder of the
  same records (the straightforward way to write v9 datagrams in Python).
* tshark: decoding the same day's pcap with ``tshark -T fields`` (an independent reader of the bytes).
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from flowpivot.simulate import Scenario, simulate
from flowpivot.simulate import traffic as T
from flowpivot.simulate.netflow9 import REC4, REC6, Exporter, V9Writer


def naive_encode(f: dict[str, np.ndarray], v4: np.ndarray, v6: np.ndarray, boot: int) -> bytes:
    """One struct.pack per record, grouped 30 to a datagram: the reference encoder."""
    out = []
    recs: list[bytes] = []
    for i in range(len(f["start"])):
        if f["v6"][i]:
            addr = v6[f["src"][i]].tobytes() + v6[f["dst"][i]].tobytes()
        else:
            addr = struct.pack(">II", int(v4[f["src"][i]]), int(v4[f["dst"][i]]))
        recs.append(
            addr
            + struct.pack(
                ">HHBBBBIIHHII",
                int(f["sport"][i]),
                int(f["dport"][i]),
                int(f["proto"][i]),
                int(f["flags"][i]),
                1,
                0,
                int(f["packets"][i]),
                int(f["bytes"][i]),
                int(f["in_if"][i]),
                int(f["out_if"][i]),
                (int(f["start"][i]) - boot) % (1 << 32),
                (int(f["end"][i]) - boot) % (1 << 32),
            )  # fmt: skip
        )
        if len(recs) == 30:
            out.append(struct.pack(">HHIIII", 9, 30, 0, 0, 0, 1) + b"".join(recs))
            recs = []
    return b"".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--sampling", type=int, default=100)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-simulate-"))
    try:
        t = time.perf_counter()
        truth = simulate(Scenario(flows=args.flows, sampling=args.sampling), tmp / "sim", keep_flows=True)
        dt = time.perf_counter() - t
        n = truth.data["flows"]["exported"]
        size = sum(p.stat().st_size for p in truth.files)
        print("| step | records | seconds | records/s | V9Writer speed-up |\n|---|---:|---:|---:|---:|")
        print(
            f"| simulate fin7 end to end ({len(truth.files)} daily pcaps, {size / 1e6:.0f} MB) | {n:,} | {dt:.1f} | {n / dt:,.0f} | |"
        )
        assert truth.flows is not None
        f = truth.flows
        day = T.take(f, np.flatnonzero(f["day"] == 15))
        v4, v6 = truth.book.v4, truth.book.v6
        ex = [Exporter(e["address"], e["source_id"], 0) for e in truth.data["exporters"]]
        t = time.perf_counter()
        V9Writer(ex, args.sampling).write(tmp / "day.pcap", day, v4, v6)
        enc = time.perf_counter() - t
        m = len(day["start"])
        k = min(m, 200_000)
        part = T.take(day, np.arange(k))
        t = time.perf_counter()
        naive_encode(part, v4, v6, 0)
        ref = (time.perf_counter() - t) * m / k
        print(f"| V9Writer.write, one day | {m:,} | {enc:.2f} | {m / enc:,.0f} | |")
        print(
            f"| reference: struct.pack per record (on {k:,}, scaled) | {m:,} | {ref:.2f} | {m / ref:,.0f} | {ref / enc:.1f}x |"
        )
        tshark = shutil.which("tshark")
        if tshark:
            t = time.perf_counter()
            subprocess.run(
                [tshark, "-r", str(tmp / "day.pcap"), "-n", "-d", "udp.port==2055,cflow", "-T", "fields", "-e", "cflow.packets"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            ts = time.perf_counter() - t
            print(f"| reference: tshark decoding that day | {m:,} | {ts:.2f} | {m / ts:,.0f} | {ts / enc:.1f}x |")
        print(f"\nrecord sizes: IPv4 {REC4.itemsize} bytes, IPv6 {REC6.itemsize} bytes; sampling 1:{args.sampling}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

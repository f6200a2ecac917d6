"""Benchmark: the hunt's pivot against nfdump 1.7 filtering nfcapd files, and the whole hunt against a
hand-written DuckDB query, same flows, same seeds, same run.

Run: ``.venv/bin/python -m bench.hunt [--flows 10000000] [--seeds 1000] [--repeats 3]``
or, on the FIN7 scenario's own data and seeds: ``.venv/bin/python -m bench.hunt --scenario fin7 --flows 10000000``

The flows are bench.collect's border-router mix spread over 30 days. They are written once into
a flowpivot store (Parquet, as ``flowpivot ingest`` would) and once, as NetFlow v5 over loopback,
into ``nfcapd -y`` files. The seeds are external addresses picked from the flows. We time:

* nfdump: ``nfdump -R DIR 'ip in [ seed ... ]'`` printing the matching flows (to a file);
* pivot: flowpivot's SQL pivot (flows -> per seed, peer and direction aggregates with session
  evidence), the heavy step of the hunt;
* reference: a hand-written DuckDB query that only collects the (seed, peer) pairs over the same
  Parquet (UNION ALL of the source and destination sides);
* hunt: the whole ``flowpivot.hunt.hunt`` in a child process, with its peak resident memory.

Both sides are checked to match the same number of flows. Ratios: nfdump / pivot (goal >= 10),
hunt / reference (goal <= 3), peak memory (goal <= 4 GB). Every step runs ``--repeats`` times and
the median is reported (the machine is shared; a single run moves by 2x).

``--scenario fin7`` times the same steps on ``flowpivot simulate fin7`` data (ingested from its
NetFlow v9 pcaps) with the scenario's 25 seeds and ASN database: the hunt an analyst runs. nfdump
is not run there (its files would need the v9 export replayed into nfcapd).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.collect import PER_DATAGRAM, RCVBUF, RmemMax, realistic_flows, run_nfcapd, v5_datagrams
from flowpivot.schema import conform
from flowpivot.store import Store

DAY_MS = 86_400_000


CHUNK_FLOWS = 10_000_020  # flows generated at a time: 100 M flows at once would need about 20 GB


def _write(w: Any, flows: dict[str, np.ndarray]) -> None:
    n, chunk = len(flows["src"]), 1 << 21
    for i in range(0, n, chunk):
        sl = slice(i, i + chunk)
        m = len(flows["src"][sl])
        w.write(
            conform(
                {
                    "start": flows["start"][sl],
                    "end": flows["end"][sl],
                    "src_addr_v4": flows["src"][sl].astype(np.uint32),
                    "dst_addr_v4": flows["dst"][sl].astype(np.uint32),
                    "src_port": flows["src_port"][sl].astype(np.uint16),
                    "dst_port": flows["dst_port"][sl].astype(np.uint16),
                    "protocol": flows["protocol"][sl].astype(np.uint8),
                    "tcp_flags": flows["tcp_flags"][sl].astype(np.uint16),
                    "packets": flows["packets"][sl].astype(np.uint64),
                    "bytes": flows["bytes"][sl].astype(np.uint64),
                    "sampling_rate": np.ones(m, np.uint32),
                    "exporter": ["127.0.0.1"] * m,
                },
                m,
            )
        )


def build(
    n: int, n_seeds: int, work: Path, seed: int = 7, datagrams: bool = True
) -> tuple[int, list[str], int, int, np.ndarray | None]:
    """The border mix over 30 days into work/store, and as NetFlow v5 datagrams (a file-backed array).

    Above ``CHUNK_FLOWS`` the flows are generated in equal slices of the 30 days, each from its
    own generator seed (repeating one slice would make the data compress and sort unrealistically
    well), and the seeds are drawn evenly from every slice's external addresses. Returns (flows,
    seeds, first start, last start, datagrams). ``datagrams=False``: the store and the seeds only
    (bench.spark), no datagrams (None).
    """
    start = int(time.time() * 1000) - 31 * DAY_MS
    pieces = max(1, -(-n // CHUNK_FLOWS))
    per = n // pieces
    per -= per % PER_DATAGRAM
    span = 30 * DAY_MS // pieces
    dgram = (
        np.lib.format.open_memmap(
            work / "datagrams.npy",
            mode="w+",
            dtype=np.uint8,
            shape=(pieces * per // PER_DATAGRAM, 24 + 48 * PER_DATAGRAM),
        )
        if datagrams
        else None
    )
    store = Store(work / "store")
    w = store.writer("bench")
    seeds: list[str] = []
    picked: list[int] = []
    lo, hi = None, None
    for k in range(pieces):
        flows = realistic_flows(per, seed=seed + k, flows_per_s=per / (span / 1000), start_ms=start + k * span)
        ext = np.unique(flows["dst"][(flows["dst"] >> 16) != (10 << 8 | 20)])
        ext = np.setdiff1d(ext, np.array(picked, dtype=ext.dtype))
        rng = np.random.default_rng(seed + k)
        want = n_seeds // pieces + (1 if k < n_seeds % pieces else 0)
        chosen = rng.choice(ext, size=min(want, len(ext)), replace=False).astype(np.uint32)
        picked.extend(int(x) for x in chosen)
        seeds += [".".join(str((int(s) >> b) & 255) for b in (24, 16, 8, 0)) for s in chosen]
        _write(w, flows)
        rows = per // PER_DATAGRAM
        if dgram is not None:
            dgram[k * rows : (k + 1) * rows] = v5_datagrams(flows)
        lo = int(flows["start"].min()) if lo is None else min(lo, int(flows["start"].min()))
        hi = int(flows["start"].max()) if hi is None else max(hi, int(flows["start"].max()))
        del flows
    w.commit()
    if dgram is not None:
        dgram.flush()
    (work / "seeds.txt").write_text("\n".join(seeds) + "\n")
    assert lo is not None and hi is not None
    return pieces * per, seeds, lo, hi, dgram


def median_time(f: Any, repeats: int) -> tuple[float, Any]:
    """Run ``f`` ``repeats`` times: the median wall seconds and the last result."""
    secs, out = [], None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = f()
        secs.append(time.perf_counter() - t)
    return float(np.median(secs)), out


def build_scenario(n: int, work: Path) -> tuple[list[str], Path]:
    """``flowpivot simulate fin7`` with ``n`` flows, ingested into work/store: its seeds and ASN database."""
    import dataclasses

    from flowpivot.hunt import read_seeds
    from flowpivot.ingest import ingest_paths
    from flowpivot.simulate import Scenario, simulate

    simulate(dataclasses.replace(Scenario(flows=n)), work / "sim")
    ingest_paths(sorted((work / "sim" / "exports").glob("*.pcap")), Store(work / "store"))
    shutil.copy(work / "sim" / "seeds.txt", work / "seeds.txt")
    return read_seeds([work / "seeds.txt"]).ips(), work / "sim" / "asn.tsv"


def time_nfdump(flowdir: Path, seeds: list[str], work: Path, repeats: int = 1) -> tuple[float, int]:
    nfdump = shutil.which("nfdump")
    assert nfdump
    filt = work / "filter.txt"
    filt.write_text("ip in [ " + " ".join(seeds) + " ]\n")
    out = work / "nfdump.out"

    def run() -> None:
        with open(out, "wb") as fh:
            subprocess.run(
                [nfdump, "-R", str(flowdir), "-q", "-o", "fmt:%ts %sa %da %sp %dp %pr %flg %pkt %byt", "-f", str(filt)],
                stdout=fh,
                check=True,
            )

    secs, _ = median_time(run, repeats)
    with open(out, "rb") as fh:
        lines = sum(1 for _ in fh)
    return secs, lines


def _seed_table(con: Any, seeds: list[str]) -> None:
    from flowpivot.hunt.keys import anchor_table as _anchor_table

    con.register("s_arrow", _anchor_table(seeds))
    con.execute("CREATE OR REPLACE TEMP TABLE seeds AS SELECT * FROM s_arrow")
    con.unregister("s_arrow")


def time_pivot(
    store: Store, seeds: list[str], since: int, until: int, repeats: int = 1, index: bool = False
) -> tuple[float, int, int]:
    from flowpivot.hunt.context import HuntContext
    from flowpivot.hunt.pivot import create_pairs, ipkey_macro
    from flowpivot.store.index import index_plan

    con = HuntContext(store)
    ipkey_macro(con)
    _seed_table(con, seeds)
    if index:
        window = con.sql(
            f"SELECT count(*) FROM flows WHERE start >= make_timestamptz({since * 1000}::BIGINT) AND start <= make_timestamptz({until * 1000}::BIGINT)"
        ).fetchall()[0][0]
        con.use_index(index_plan(store, since, until), window)
    secs, _ = median_time(lambda: create_pairs(con, "seeds", "sp", since, until, keep_flows=True), repeats)
    pairs = con.sql("SELECT count(*) FROM sp").fetchall()[0][0]
    # flows with a seed on either side, counted once (the oracle nfdump's count must equal)
    matched = con.sql(
        "SELECT count(*) FROM flows WHERE src_addr_v4 IN (SELECT v4 FROM seeds) OR dst_addr_v4 IN (SELECT v4 FROM seeds)"
        " OR src_addr_v6 IN (SELECT v6 FROM seeds) OR dst_addr_v6 IN (SELECT v6 FROM seeds)"
    ).fetchall()[0][0]
    return secs, pairs, matched


def time_reference(store: Store, seeds: list[str], repeats: int = 1) -> tuple[float, int]:
    con = store.connect()
    _seed_table(con, seeds)
    fams = [4, 6] if any(":" in s for s in seeds) else [4]
    q = " UNION ".join(
        f"SELECT DISTINCT s.key, f.{p}_addr_v{fam} FROM flows f JOIN seeds s ON f.{a}_addr_v{fam} = s.v{fam}"
        for fam in fams
        for a, p in (("src", "dst"), ("dst", "src"))
    )
    return median_time(lambda: con.sql(f"SELECT count(*) FROM ({q})").fetchall()[0][0], repeats)


_CHILD = """
import json, os, sys, time
from flowpivot.hunt import hunt
t = time.perf_counter()
r = hunt(sys.argv[1], [sys.argv[2]], asn_dbs=sys.argv[3:], use_index=os.environ.get("BENCH_INDEX") == "1")
secs = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a big parent inherits it
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"secs": secs, "rss_kb": hwm,
                  "clusters": len(r["clusters"]), "expansion": len(r["expansion"]), "victims": len(r["victims"]),
                  "excluded": len(r["excluded"]), "timings": r["provenance"]["timings_s"]}))
"""


def time_hunt(work: Path, asn_dbs: list[Path] | None = None, repeats: int = 1, index: bool = False) -> dict[str, Any]:
    runs = []
    for _ in range(max(1, repeats)):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(work / "store"), str(work / "seeds.txt"), *map(str, asn_dbs or [])],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "BENCH_INDEX": "1" if index else "0"},
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda r: r["secs"])
    med = dict(runs[len(runs) // 2])
    med["rss_kb"] = max(r["rss_kb"] for r in runs)
    med["runs_s"] = [round(r["secs"], 3) for r in runs]
    return med


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--flows",
        type=int,
        default=10_000_020,
        help="flows (the goal is stated for 100 M; default 10 M on a shared machine)",
    )
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3, help="runs per step; the median is reported")
    ap.add_argument(
        "--scenario",
        choices=["fin7"],
        help="time the hunt on `flowpivot simulate fin7` data with its own seeds (no nfdump)",
    )
    ap.add_argument("--rate", type=float, default=1_000_000, help="NetFlow v5 sending rate to nfcapd, flows/s")
    ap.add_argument("--skip-nfdump", action="store_true")
    ap.add_argument("--keep", type=Path, help="keep the store and nfcapd files here")
    ap.add_argument(
        "--index",
        action="store_true",
        help="also build the address index (`flowpivot index`) and time the pivot and the hunt through it",
    )
    a = ap.parse_args(argv)
    n = a.flows - a.flows % 30
    work = a.keep or Path(tempfile.mkdtemp(prefix="bench-hunt-"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"flows": n, "seeds": a.seeds, "machine": f"{platform.node()}, {os.cpu_count()} cores"}
    asn_dbs: list[Path] = []
    try:
        t = time.perf_counter()
        if a.scenario:
            seeds, asn = build_scenario(a.flows, work)
            asn_dbs = [asn]
            con = Store(work / "store").connect()
            n, lo, hi = con.sql("SELECT count(*), epoch_ms(min(start)), epoch_ms(max(start)) FROM flows").fetchall()[0]
            con.close()
            res.update({"flows": n, "seeds": len(seeds), "scenario": a.scenario})
            since, until = int(lo), int(hi)
            dgram = None
        else:
            n, seeds, since, until, dgram = build(n, a.seeds, work)
            res["flows"] = n
        res["build_s"] = round(time.perf_counter() - t, 1)
        # every timed step reads files written just before it: let the kernel write them back
        # first, so no step is timed against that I/O
        os.sync()
        if dgram is not None and not a.skip_nfdump:
            with RmemMax(2 * RCVBUF) as rm:
                print(rm.note, file=sys.stderr)
                nf = run_nfcapd(dgram, a.rate, work)
            res["nfcapd_stored"] = nf["stored_flows"]
            if nf["stored_flows"] != n:
                print(f"WARNING: nfcapd stored {nf['stored_flows']:,} of {n:,} flows", file=sys.stderr)
            os.sync()
            res["nfdump_s"], res["nfdump_matched"] = time_nfdump(Path(nf["dir"]), seeds, work, a.repeats)
        del dgram
        (work / "datagrams.npy").unlink(missing_ok=True)
        store = Store(work / "store")
        res["store_bytes_per_flow"] = round(sum(p.stat().st_size for p in store.files()) / max(1, n), 2)
        res["pivot_s"], res["pairs"], res["matched"] = time_pivot(store, seeds, since, until, a.repeats)
        res["reference_s"], res["reference_pairs"] = time_reference(store, seeds, a.repeats)
        res["hunt"] = time_hunt(work, asn_dbs, a.repeats)
        if a.index:
            from flowpivot.store.index import build_index

            t = time.perf_counter()
            m = build_index(store)
            os.sync()
            res["index"] = {"build_s": round(time.perf_counter() - t, 1), "bytes_per_flow": m["bytes_per_flow"]}
            res["index"]["pivot_s"], _, _ = time_pivot(store, seeds, since, until, a.repeats, index=True)
            res["index"]["hunt"] = time_hunt(work, asn_dbs, a.repeats, index=True)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    h = res["hunt"]
    n = res["flows"]
    print(
        f"{n:,} flows{' (' + a.scenario + ' scenario)' if a.scenario else ''}, {res['seeds']} seeds, {res['machine']}; "
        f"median of {a.repeats} run(s) per step; flows with a seed: {res['matched']:,}, (seed, peer) pairs: {res['pairs']:,}\n"
    )
    print("| step | seconds | flows/s | ratio |")
    print("| --- | ---: | ---: | ---: |")
    if "nfdump_s" in res:
        print(
            f"| nfdump 1.7 `ip in [ {a.seeds} seeds ]` over nfcapd -y files ({res['nfdump_matched']:,} flows out) | {res['nfdump_s']:.2f} | {n / res['nfdump_s']:,.0f} | 1.00 |"
        )
        print(
            f"| flowpivot pivot (SQL, pairs + session evidence) | {res['pivot_s']:.2f} | {n / res['pivot_s']:,.0f} | nfdump / pivot = **{res['nfdump_s'] / res['pivot_s']:.1f}x** |"
        )
    else:
        print(
            f"| flowpivot pivot (SQL, pairs + session evidence) | {res['pivot_s']:.2f} | {n / res['pivot_s']:,.0f} | |"
        )
    print(f"| hand-written DuckDB seed-peer query | {res['reference_s']:.2f} | {n / res['reference_s']:,.0f} | 1.00 |")
    print(
        f"| whole hunt (child process) | {h['secs']:.2f} | {n / h['secs']:,.0f} | hunt / reference = **{h['secs'] / res['reference_s']:.2f}x** |"
    )
    print(
        f"\npeak resident memory of the hunt: {h['rss_kb'] / 1024 / 1024:.2f} GiB; hunt runs (s): {h['runs_s']}; "
        f"steps of the median run (s): {h['timings']}"
    )
    print(
        f"hunt found {h['clusters']} cluster(s), {h['expansion']} expansion host(s), {h['victims']} victim(s), {h['excluded']} excluded"
    )
    if "index" in res:
        ix, hi = res["index"], res["index"]["hunt"]
        ref = res.get("nfdump_s")
        print(
            f"\naddress index: built in {ix['build_s']} s, {ix['bytes_per_flow']} bytes/flow (two copies; the store is "
            f"{res.get('store_bytes_per_flow', '?')})\n"
        )
        print("| through the index | seconds | ratio |")
        print("| --- | ---: | ---: |")
        print(
            f"| flowpivot pivot | {ix['pivot_s']:.2f} | "
            + (
                f"nfdump / pivot = **{ref / ix['pivot_s']:.1f}x**"
                if ref
                else f"{res['pivot_s'] / ix['pivot_s']:.1f}x faster than without"
            )
            + " |"
        )
        print(f"| whole hunt | {hi['secs']:.2f} | hunt / reference = **{hi['secs'] / res['reference_s']:.2f}x** |")
        print(
            f"\npeak memory of the hunt through the index: {hi['rss_kb'] / 1024 / 1024:.2f} GiB; steps: {hi['timings']}"
        )
    if "nfdump_matched" in res and res["nfdump_matched"] != res["matched"]:
        print(f"WARNING: nfdump printed {res['nfdump_matched']:,} flows, flowpivot matched {res['matched']:,}")
    print("\n" + json.dumps(res))


if __name__ == "__main__":
    main()

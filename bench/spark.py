"""Benchmark: the same hunt, and the same top-N statistic, on DuckDB and on Spark, same store, same seeds, same run.

Run: ``.venv/bin/python -m bench.spark --flows 10000000 30000000 [100000000] [--seeds 1000]``

For each ``--flows`` size the store is bench.hunt's border-router mix over 30 days with ``--seeds``
external seeds (:func:`bench.hunt.build`, the store and seeds only), written into ``--keep`` or a
temporary directory; ``--store N=DIR`` uses an existing store ``DIR/store`` and ``DIR/seeds.txt``
for size N instead (read only: the 100 M-flow store of bench.hunt ``--keep``). Then, each in its
own process, one after the other:

* DuckDB: ``flowpivot.hunt.hunt(store, [seeds])``, the default engine as ``flowpivot hunt`` runs it
  (through the address index when the store has one, ``"index"`` in the JSON says which). On a
  store built in this run a first DuckDB hunt builds the day sketches both engines then read
  (``duckdb_cold``);
* Spark: the session (``--master``, default ``local[*]``: this machine's cores; its start is timed
  apart) and ``hunt(..., engine="spark")``: every stage in Spark SQL;
* ``flows -s ip/bytes -n 20`` on both (one full scan, a two-sided group-by: Spark's shuffle).

The results must be equal: the hunt's clusters, members, seeds and their status, expansion,
victims, probes and exclusions (everything in the result but its provenance and parameters), and
the statistic's rows and totals. Both engines' stage timings, the wall times, the Python
process's peak memory and the load average before and after go into ``bench/out/spark-*.json``.
With ``--spark-conf spark.eventLog.enabled=true --spark-conf spark.eventLog.dir=DIR`` it also
holds, per hunt stage, what Spark read and shuffled (``spark_passes``, from the event log).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"

_CHILD = """
import json, sys, time
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
kw = {}
if args["engine"] == "spark":
    from flowpivot.spark import spark_session
    kw = {"engine": "spark", "spark": spark_session(args["master"], args["conf"])}
session_s = time.perf_counter() - t0
from flowpivot.hunt import hunt
from flowpivot.query import StatSpec, parse_filter, top_n, where_sql
from flowpivot.store import Store
if "spark" in kw:  # each Spark job is labelled with the hunt stage it runs in (bench.spark.passes)
    order = ["window", "pivot", "sessions", "victims", "noise", "expansion", "clusters", "seeds", "output"]
    sc = kw["spark"].sparkContext
    sc.setJobDescription("hunt:window")
    def step(name):
        nxt = order[order.index(name) + 1] if name in order[:-1] else "after-" + name
        sc.setJobDescription("hunt:" + nxt)
    kw["progress"] = step
t = time.perf_counter()
r = hunt(args["store"], [args["seeds"]], **kw)
hunt_s = time.perf_counter() - t
t = time.perf_counter()
spec, node = StatSpec("ip", "bytes"), parse_filter("any")
if args["engine"] == "spark":
    kw["spark"].sparkContext.setJobDescription("flows -s ip/bytes")
    from flowpivot.query import spark as on_spark
    stat = on_spark.top_n(kw["spark"], args["store"], spec, node, n=20)
else:
    where, params = where_sql(node)
    stat = top_n(Store(args["store"]).connect(), spec, where, params, 20)
stat_s = time.perf_counter() - t
json.dump({"result": r, "stat": stat}, open(args["out"], "w"))
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"session_s": session_s, "hunt_s": hunt_s, "stat_s": stat_s, "rss_kb": hwm,
                  "timings_s": r["provenance"]["timings_s"], "index": r["parameters"].get("index"),
                  "clusters": len(r["clusters"]), "pairs_total": r.get("pairs_total")}))
"""


def passes(event_log_dir: str) -> dict[str, dict[str, Any]]:
    """Per hunt stage (the job descriptions the child sets), from the newest Spark event log in
    ``event_log_dir``: jobs, stages, tasks, the rows and bytes read from Parquet, the bytes and rows
    written to and read from the shuffle, and the executors' run time."""
    import pyarrow as pa

    d = Path(event_log_dir.removeprefix("file://"))
    apps = sorted(d.iterdir(), key=lambda p: p.stat().st_mtime)
    if not apps:
        return {}
    # Spark 4 writes an application's log as a directory of zstd files (events_1_APP.zstd, ...)
    files = sorted(apps[-1].glob("events_*")) if apps[-1].is_dir() else [apps[-1]]
    lines: list[str] = []
    for f in files:
        with pa.input_stream(str(f), compression="zstd" if f.suffix == ".zstd" else None) as fh:
            lines += fh.read().decode().splitlines()
    stage_of: dict[int, str] = {}
    out: dict[str, dict[str, Any]] = {}
    keys = {
        "internal.metrics.input.recordsRead": "rows_read",
        "internal.metrics.input.bytesRead": "bytes_read",
        "internal.metrics.shuffle.write.bytesWritten": "shuffle_write_bytes",
        "internal.metrics.shuffle.write.recordsWritten": "shuffle_write_rows",
        "internal.metrics.shuffle.read.remoteBytesRead": "shuffle_read_bytes",
        "internal.metrics.shuffle.read.localBytesRead": "shuffle_read_bytes",
        "internal.metrics.executorRunTime": "executor_ms",
    }
    for line in lines:
        e = json.loads(line)
        if e["Event"] == "SparkListenerJobStart":
            label = (e.get("Properties") or {}).get("spark.job.description") or "other"
            out.setdefault(label, {"jobs": 0, "stages": 0, "tasks": 0, **dict.fromkeys(keys.values(), 0)})
            out[label]["jobs"] += 1
            for sid in e.get("Stage IDs", []):
                stage_of[sid] = label
        elif e["Event"] == "SparkListenerStageCompleted":
            info = e["Stage Info"]
            label = stage_of.get(info["Stage ID"], "other")
            row = out.setdefault(label, {"jobs": 0, "stages": 0, "tasks": 0, **dict.fromkeys(keys.values(), 0)})
            row["stages"] += 1
            row["tasks"] += info.get("Number of Tasks", 0)
            for acc in info.get("Accumulables", []):
                if acc.get("Name") in keys:
                    row[keys[acc["Name"]]] += int(acc.get("Value") or 0)
    return out


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A hunt result without what may differ between two runs of the same hunt: the provenance
    (timings, the time it was made, the engine) and the parameters (the index used or not)."""
    out = {k: v for k, v in result.items() if k not in ("provenance", "parameters")}
    out["flows_in_window"] = result["provenance"].get("flows_in_window")
    return out


def run_engine(engine: str, store: Path, seeds: Path, out: Path, master: str, conf: dict[str, str]) -> dict[str, Any]:
    args = {"engine": engine, "store": str(store), "seeds": str(seeds), "out": str(out), "master": master, "conf": conf}
    t = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True, env=os.environ.copy()
    )
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{res.stderr[-4000:]}")
    fig = json.loads(res.stdout.strip().splitlines()[-1])
    fig["wall_s"] = wall
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in fig.items()}


def one_size(n: int, n_seeds: int, work: Path, given: Path | None, master: str, conf: dict[str, str]) -> dict[str, Any]:
    from bench.hunt import build

    row: dict[str, Any] = {"flows_asked": n, "seeds_asked": n_seeds}
    if given is not None:
        store, seeds = given / "store", given / "seeds.txt"
        row["store"] = f"{given} (existing)"
    else:
        d = work / f"flows-{n}"
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "seeds.txt").exists():  # a --keep directory from an earlier run: the same store
            t = time.perf_counter()
            build(n - n % 30, n_seeds, d, datagrams=False)
            row["build_s"] = round(time.perf_counter() - t, 1)
        store, seeds = d / "store", d / "seeds.txt"
        row["store"] = str(store)
    os.sync()
    row["load_before"] = [round(x, 2) for x in os.getloadavg()]
    figures, results = {}, {}
    if "build_s" in row:  # a new store: the first hunt builds and caches its day sketches (STORE/sketches/)
        cold = run_engine("duckdb", store, seeds, work / f"result-{n}-cold.json", master, conf)
        row["duckdb_cold"] = cold
        print(f"{n:,} flows, duckdb (cold, builds the sketches): {cold}", file=sys.stderr, flush=True)
    for engine in ("duckdb", "spark"):
        out = work / f"result-{n}-{engine}.json"
        figures[engine] = run_engine(engine, store, seeds, out, master, conf)
        results[engine] = json.loads(out.read_text())
        print(f"{n:,} flows, {engine}: {figures[engine]}", file=sys.stderr, flush=True)
    row["load_after"] = [round(x, 2) for x in os.getloadavg()]
    a, b = results["duckdb"], results["spark"]
    row["flows"] = a["result"]["provenance"].get("flows_in_window")
    row["seeds"] = a["result"].get("seed_input", {}).get("count")
    row["duckdb"], row["spark"] = figures["duckdb"], figures["spark"]
    row["hunt_equal"] = comparable(a["result"]) == comparable(b["result"])
    row["stat_equal"] = a["stat"] == b["stat"]
    if not row["hunt_equal"]:
        ka, kb = comparable(a["result"]), comparable(b["result"])
        row["hunt_differs_in"] = sorted(k for k in set(ka) | set(kb) if ka.get(k) != kb.get(k))
    if conf.get("spark.eventLog.enabled") == "true" and conf.get("spark.eventLog.dir"):
        row["spark_passes"] = passes(conf["spark.eventLog.dir"])
    row["spark_over_duckdb_hunt"] = round(figures["spark"]["hunt_s"] / max(figures["duckdb"]["hunt_s"], 1e-9), 2)
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, nargs="+", default=[10_000_020, 30_000_000, 100_000_020])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--master", default="local[*]", help="Spark master (default: this machine's cores)")
    ap.add_argument("--spark-conf", action="append", default=[], help="KEY=VALUE, repeat (e.g. spark.driver.memory=8g)")
    ap.add_argument("--store", action="append", default=[], help="N=DIR: for N flows use DIR/store and DIR/seeds.txt")
    ap.add_argument("--keep", type=Path, help="write the stores here and keep them")
    a = ap.parse_args(argv)
    from flowpivot.spark import parse_conf

    conf = {"spark.driver.memory": "6g", **parse_conf(a.spark_conf)}
    given = {int(k): Path(v) for k, v in (s.split("=", 1) for s in a.store)}
    work = a.keep or Path(tempfile.mkdtemp(prefix="bench-spark-"))
    work.mkdir(parents=True, exist_ok=True)
    import pyspark

    res: dict[str, Any] = {
        "bench": "spark",
        "machine": f"{platform.node()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB",
        "pyspark": pyspark.__version__,
        "master": a.master,
        "spark_conf": conf,
        "sizes": [],
    }
    for n in a.flows:
        res["sizes"].append(one_size(n, a.seeds, work, given.get(n), a.master, conf))
        OUT.mkdir(exist_ok=True)
        path = OUT / f"spark-{time.strftime('%Y%m%dT%H%M%S')}.json"
        path.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    print(f"written to {path}", file=sys.stderr)
    if not all(r["hunt_equal"] and r["stat_equal"] for r in res["sizes"]):
        raise SystemExit("the engines' results differ")


if __name__ == "__main__":
    main()

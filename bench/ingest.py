"""File ingest throughput, each reader against a reference in the same run.

    .venv/bin/python -m bench.ingest [--copies 12] [--zeek-rows 200000] [--repeat 3]

* nfdump: an nfdump file of ``--copies`` copies of the shared real file (merged by nfdump itself)
  read by flowpivot (``nfdump -o json`` streamed and converted to the store schema) against
  ``nfdump -r FILE -o json > /dev/null``, the floor: nfdump printing the same records.
* Zeek: the shared conn.log repeated to ``--zeek-rows`` rows, read by flowpivot against a plain
  ``csv`` module loop that builds one tuple per row (what a script would do) and against
  ``pyarrow.csv`` splitting it into string columns (the floor of parsing the text).
* canonical CSV: the same flows written by ``flowpivot flows --output csv``, read back against
  ``pyarrow.csv`` with the column types given (no validation, no addresses parsed).

Every figure is the best of ``--repeat`` runs of CPU seconds (this process and its children,
so nfdump's own work counts), which a shared, loaded machine disturbs far less than wall time;
wall seconds are printed too. Ratios > 1 mean flowpivot takes longer.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.nfdump import read_nfdump
from flowpivot.ingest.tabular import read_csv
from flowpivot.ingest.zeek import read_zeek
from flowpivot.schema import to_output

SHARED = Path(os.environ.get("FLOWPIVOT_SHARED", Path(__file__).resolve().parents[2] / "shared" / "data"))
NFDUMP_FILE = SHARED / "stratosphere" / "test1-malicious.nfdump"
CONN = SHARED / "stratosphere" / "test18-malicious-ctu-sme-11-win" / "zeek-labeled" / "conn.log.labeled"


WALL: dict[int, float] = {}


def _cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best CPU seconds of ``repeat`` runs (the best wall seconds go to WALL[id(result)])."""
    t, wall, out = 1e9, 1e9, None
    for _ in range(repeat):
        c0, w0 = _cpu(), time.perf_counter()
        out = fn()
        t, wall = min(t, _cpu() - c0), min(wall, time.perf_counter() - w0)
    WALL[len(WALL)] = wall
    return t, out


def rows_of(reader: Callable[[Path, ReadReport], object], path: Path) -> int:
    rep = ReadReport(str(path))
    n = sum(b.num_rows for b in reader(path, rep))  # type: ignore[attr-defined]
    assert rep.bad == 0, rep.problems[:3]
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=12)
    ap.add_argument("--zeek-rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    nfdump = shutil.which("nfdump")
    tmp = Path(tempfile.mkdtemp(prefix="fp-bench-ingest-"))
    env = {**os.environ, "TZ": "UTC"}
    lines = []
    try:
        if nfdump:
            parts = tmp / "parts"
            parts.mkdir()
            for i in range(a.copies):
                shutil.copy(NFDUMP_FILE, parts / f"nfcapd.2018011215{i:02d}")
            big = tmp / "big.nfdump"
            subprocess.run([nfdump, "-R", str(parts), "-w", str(big)], check=True, capture_output=True, env=env)
            ref, _ = best(
                lambda: subprocess.run([nfdump, "-r", str(big), "-q", "-N", "-6", "-o", "json"], stdout=subprocess.DEVNULL, env=env, check=True),
                a.repeat,
            )  # fmt: skip
            ours, n = best(lambda: rows_of(read_nfdump, big), a.repeat)
            lines.append(("nfdump file", n, ours, "nfdump -o json > /dev/null", ref))

        text = CONN.read_text().splitlines()
        header, body = [ln for ln in text if ln.startswith("#")], [ln for ln in text if not ln.startswith("#")]
        reps = -(-a.zeek_rows // len(body))
        conn = tmp / "conn.log"
        conn.write_text("\n".join(header + (body * reps)[: a.zeek_rows]) + "\n")
        fields = next(ln for ln in header if ln.startswith("#fields")).split("\t")[1:]

        def csv_module() -> int:
            n = 0
            with open(conn, newline="") as fh:
                for rec in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
                    if rec and not rec[0].startswith("#"):
                        dict(zip(fields, rec, strict=False))
                        n += 1
            return n

        def arrow_split() -> int:
            data = b"\n".join(ln for ln in conn.read_bytes().split(b"\n") if not ln.startswith(b"#"))
            t = pacsv.read_csv(
                io.BytesIO(data),
                read_options=pacsv.ReadOptions(column_names=fields),
                parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
                convert_options=pacsv.ConvertOptions(column_types={f: pa.string() for f in fields}),
            )
            return t.num_rows

        ours, n = best(lambda: rows_of(read_zeek, conn), a.repeat)
        ref1, _ = best(csv_module, a.repeat)
        ref2, _ = best(arrow_split, a.repeat)
        lines.append(("Zeek conn.log (TSV)", n, ours, "csv module, dict per row", ref1))
        lines.append(("Zeek conn.log (TSV)", n, ours, "pyarrow.csv, strings only", ref2))

        table = pa.Table.from_batches(list(read_zeek(conn, ReadReport("z"))))
        flows_csv = tmp / "flows.csv"
        out = to_output(table)
        for name in ("start", "end"):
            i = out.schema.get_field_index(name)
            out = out.set_column(i, name, pa.compute.strftime(out.column(name), format="%Y-%m-%dT%H:%M:%SZ"))
        pacsv.write_csv(out, flows_csv)
        types = {f.name: (pa.string() if f.name in ("start", "end") else f.type) for f in out.schema}
        ref, _ = best(
            lambda: pacsv.read_csv(flows_csv, convert_options=pacsv.ConvertOptions(column_types=types)).num_rows,
            a.repeat,
        )
        ours, n = best(lambda: rows_of(read_csv, flows_csv), a.repeat)
        lines.append(("canonical CSV", n, ours, "pyarrow.csv typed, no checks", ref))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.node()}: {os.cpu_count()} cores, load {load:.1f}, pyarrow {pa.__version__}, best of {a.repeat}")
    print("| input | flows | flowpivot CPU s | flows per CPU s | reference | reference CPU s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, n, ours, ref_name, ref in lines:
        print(f"| {name} | {n:,} | {ours:.3f} | {n / ours:,.0f} | {ref_name} | {ref:.3f} | {ours / ref:.2f}x |")
    print("\nbest wall seconds, in the order measured:", ", ".join(f"{w:.3f}" for w in WALL.values()))


if __name__ == "__main__":
    main()

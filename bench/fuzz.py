"""Measured robustness: mutate real inputs of every format and ingest each one, end to end.

Run: ``.venv/bin/python -m bench.fuzz [--cases 10000] [--seed 1] [--workers 2] [--formats datagram,zeek]``

Every case is one real input (see :mod:`bench.fuzz_seeds`) with one mutation (see
:mod:`bench.fuzz_mutate` and :mod:`bench.fuzz_files`): bit flips, byte runs, truncation,
extension, extreme length fields, template and field counts, extreme times, one bad line or record
among good ones. The case is written to a file and given to ``flowpivot.ingest.ingest_paths``
(format detected from the content, as the CLI does) with a new store; the rows that reach the
store are counted. Each case is classified:

* ``traceback``: an exception escaped ``ingest_paths``, or ingest caught one it did not expect
  (status ``failed``: nothing stored). Its signature is the exception type and the innermost
  flowpivot frame; the first case of each signature is saved under ``--out`` to be replayed.
* ``timeout``: the case ran longer than ``--time-limit`` seconds.
* ``rejected``: no row stored although the good records around the damage would have given some
  (``unreadable``, or ``ingested`` with nothing stored).
* ``ok``.

"Good records kept" is the sum over the cases whose damage is known of min(stored, expected) over
the sum of expected: expected is the clean seed's stored rows less the lines or records the
mutation touched, or, for export datagrams, what the seed stores without the damaged packet
(measured the same way, since a lost template takes its data with it).

Results go to ``--out``/results.json and, between the markers, into docs/reliability.md.
``--replay FILE ...`` ingests saved reproducers and prints what happens.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import multiprocessing as mp
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .fuzz_files import NFDUMP_KINDS, PARQUET_KINDS, TEXT_KINDS, mutate_nfdump, mutate_parquet, mutate_text
from .fuzz_mutate import DATAGRAM_KINDS, Case, Expect, mutate_datagram, prefix_packets, without_packet
from .fuzz_seeds import FORMATS, REPO, CaseTimeout, Outcome, Seed, build_seeds, run_bytes

KINDS: dict[str, list[tuple[str, int]]] = {
    "datagram": DATAGRAM_KINDS,
    "nfdump": NFDUMP_KINDS,
    "zeek": TEXT_KINDS,
    "csv": TEXT_KINDS,
    "parquet": PARQUET_KINDS,
}
MUTATE: dict[str, Callable[[random.Random, Seed, str], Case]] = {
    "datagram": mutate_datagram,
    "nfdump": mutate_nfdump,
    "zeek": mutate_text,
    "csv": mutate_text,
    "parquet": mutate_parquet,
}
SEED_WEIGHT = {"nfdump-full": 0.25}  # the full nfdump file costs ten times a small one
DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- bench.fuzz figures: begin -->", "<!-- bench.fuzz figures: end -->"


def make_case(
    seeds: dict[str, list[Seed]], fmt: str, seed: int, i: int, only: set[str] | None = None
) -> tuple[Seed, Case]:
    """Case ``i`` of format ``fmt``: the same for the same ``seed``, whatever the workers.
    ``only`` restricts the mutation kinds drawn from."""
    rng = random.Random(f"{seed}:{fmt}:{i}")
    group = seeds[fmt]
    s = rng.choices(group, [SEED_WEIGHT.get(x.name, 1.0) for x in group])[0]
    kinds = [(k, w) for k, w in KINDS[fmt] if only is None or k in only]
    kind = rng.choices([k for k, _w in kinds], [w for _k, w in kinds])[0]
    return s, MUTATE[fmt](rng, s, kind)


# ----- the worker --------------------------------------------------------------------------------

_SEEDS: dict[str, list[Seed]] = {}
_ORACLE: dict[tuple[str, str, int], int] = {}
_WORK: Path = Path(".")


def _init(seeds: dict[str, list[Seed]], work: str) -> None:
    global _SEEDS, _WORK
    _SEEDS, _WORK = seeds, Path(tempfile.mkdtemp(prefix="fuzz-", dir=work))

    def alarm(_sig: int, _frame: Any) -> None:
        raise CaseTimeout

    signal.signal(signal.SIGALRM, alarm)


def expected(seed: Seed, expect: Expect, work: Path | None = None) -> int | None:
    """The good records around a case's damage (see :mod:`bench.fuzz_mutate`); None when unknown."""
    if expect is None:
        return None
    how, n = expect
    if how == "minus":
        return max(0, seed.stored - n)
    key = (seed.name, how, n)
    if key not in _ORACLE:
        data = without_packet(seed, n) if how == "without" else prefix_packets(seed, n)
        _ORACLE[key] = run_bytes(data, seed.suffix, work or _WORK, "oracle").stored
    return _ORACLE[key]


def signature(out: Outcome) -> str:
    """Exception type and innermost flowpivot frame (and the innermost frame, when elsewhere)."""
    own = [f for f in out.frames if f[0].startswith("flowpivot/")]
    sig = out.exc_type or out.status
    if own:
        sig += f" at {own[-1][0]}:{own[-1][1]}"
    if out.frames and (not own or out.frames[-1] != own[-1]):
        sig += f" (in {out.frames[-1][0]}:{out.frames[-1][1]})"
    return sig


def _chunk(job: tuple[str, int, int, int, float]) -> dict[str, Any]:
    fmt, lo, hi, seed, limit = job
    kinds: dict[str, dict[str, int]] = {}
    failures: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    last = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peaks: dict[str, int] = {}  # the mutation during which the worker's peak memory last rose
    jumps: list[dict[str, Any]] = []
    for i in range(lo, hi):
        s, case = make_case(_SEEDS, fmt, seed, i)
        k = kinds.setdefault(
            case.kind, dict.fromkeys(("cases", "traceback", "timeout", "rejected", "expected", "kept", "measured"), 0)
        )
        k["cases"] += 1
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            out = run_bytes(case.data, s.suffix, _WORK)
            exp = expected(s, case.expect) if out.status not in ("traceback", "timeout") else None
        except CaseTimeout:
            out, exp = Outcome("timeout", 0, f"longer than {limit:g} s"), None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if rss > last:
            peaks[case.kind] = max(peaks.get(case.kind, 0), rss)
            if rss - last > 100 * 1024:
                jumps.append({"case": i, "seed": s.name, "kind": case.kind, "detail": case.detail, "mb": rss // 1024})
            last = rss
        if out.status in ("traceback", "timeout"):
            k[out.status] += 1
            sig = signature(out)
        elif exp:
            k["measured"] += 1
            k["expected"] += exp
            k["kept"] += min(out.stored, exp)
            if out.stored == 0:
                k["rejected"] += 1
                sig = f"whole file rejected ({case.kind}): {out.status} {out.error[:70]}".rstrip()
            else:
                continue
        else:
            continue
        f = failures.setdefault(sig, {"count": 0, "case": i, "seed": s.name, "kind": case.kind})
        f["count"] += 1
        if i <= f["case"]:
            f.update(
                case=i, seed=s.name, kind=case.kind, detail=case.detail, error=out.error[:300], frames=out.frames[-6:]
            )
    return {
        "fmt": fmt,
        "kinds": kinds,
        "failures": failures,
        "secs": time.perf_counter() - t0,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "child_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "peaks": peaks,
        "jumps": jumps,
    }


# ----- the run -----------------------------------------------------------------------------------


def run(
    cases: int, seed: int, workers: int, formats: list[str], out: Path, limit: float, chunk: int = 40
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    seeds = build_seeds(out / "seeds")
    ctx = mp.get_context("fork")
    result: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.fuzz " + " ".join(sys.argv[1:]),
        "cases_per_format": cases,
        "seed": seed,
        "workers": workers,
        "seeds": {
            f: [{"name": s.name, "bytes": len(s.data), "stored": s.stored, "status": s.status} for s in seeds[f]]
            for f in formats
        },
        "formats": {},
    }
    repro = out / "repro"
    shutil.rmtree(repro, ignore_errors=True)
    repro.mkdir()
    with tempfile.TemporaryDirectory(prefix="fuzz-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as work:
        for fmt in formats:
            t0 = time.perf_counter()
            jobs = [(fmt, lo, min(cases, lo + chunk), seed, limit) for lo in range(0, cases, chunk)]
            kinds: dict[str, dict[str, int]] = {}
            failures: dict[str, dict[str, Any]] = {}
            rss = child = 0
            peaks: dict[str, int] = {}
            jumps: list[dict[str, Any]] = []
            with ctx.Pool(workers, _init, (seeds, work), maxtasksperchild=None) as pool:
                for r in pool.imap_unordered(_chunk, jobs):
                    rss, child = max(rss, r["maxrss_kb"]), max(child, r["child_maxrss_kb"])
                    jumps += r["jumps"]
                    for k, v in r["peaks"].items():
                        peaks[k] = max(peaks.get(k, 0), v)
                    for k, v in r["kinds"].items():
                        acc = kinds.setdefault(k, dict.fromkeys(v, 0))
                        for key, n in v.items():
                            acc[key] += n
                    for sig, f in r["failures"].items():
                        g = failures.get(sig)
                        if g is None:
                            failures[sig] = f
                        else:
                            n = g["count"] + f["count"]
                            if f["case"] < g["case"]:
                                failures[sig] = f
                            failures[sig]["count"] = n
                    done = sum(v["cases"] for v in kinds.values())
                    print(f"\r{fmt}: {done}/{cases} cases", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
            for n, (sig, f) in enumerate(sorted(failures.items(), key=lambda x: -x[1]["count"])):
                _s, case = make_case(seeds, fmt, seed, f["case"])
                h = hashlib.sha1(sig.encode()).hexdigest()[:8]
                name = f"{fmt}-{n:02d}-{h}-case{f['case']}{_s.suffix}"
                (repro / name).write_bytes(case.data)
                f["reproducer"] = (
                    str((repro / name).relative_to(REPO)) if repro.is_relative_to(REPO) else str(repro / name)
                )
            total = {key: sum(v[key] for v in kinds.values()) for key in next(iter(kinds.values()))}
            result["formats"][fmt] = {
                "total": total,
                "kinds": dict(sorted(kinds.items())),
                "failures": failures,
                "secs": round(time.perf_counter() - t0, 1),
                "peak_rss_mb": round(rss / 1024, 1),
                "peak_child_rss_mb": round(child / 1024, 1),
                "peak_rss_mb_by_kind": {k: round(v / 1024) for k, v in sorted(peaks.items())},
                "memory_jumps": sorted(jumps, key=lambda j: -j["mb"])[:5],
            }
    result["parent_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    return result


# ----- the report --------------------------------------------------------------------------------


def _pct(kept: int, exp: int) -> str:
    return f"{100 * kept / exp:.2f} % ({kept:,}/{exp:,})" if exp else "-"


def figures_md(res: dict[str, Any]) -> str:
    lines = [
        f"Measured {res['date']} with `{res['command'].strip()}` ({res['cases_per_format']:,} cases per format, "
        f"seed {res['seed']}, {res['workers']} worker processes, on the 2-core build machine).",
        "",
        "| format | cases tried | tracebacks | timeouts | whole files rejected | good records kept | peak memory "
        "(worker / tool it runs) | time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fmt, r in res["formats"].items():
        t = r["total"]
        lines.append(
            f"| {fmt} | {t['cases']:,} | {t['traceback']:,} | {t['timeout']:,} | {t['rejected']:,} of {t['measured']:,} | "
            f"{_pct(t['kept'], t['expected'])} | {r['peak_rss_mb']:.0f} MB / {r['peak_child_rss_mb']:.0f} MB | "
            f"{r['secs']:.0f} s |"
        )
    lines += ["", "By mutation:", "", "| format | mutation | cases | tracebacks | timeouts | rejected | good kept |"]
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for fmt, r in res["formats"].items():
        for k, t in r["kinds"].items():
            lines.append(
                f"| {fmt} | {k} | {t['cases']:,} | {t['traceback']} | {t['timeout']} | {t['rejected']} | "
                f"{_pct(t['kept'], t['expected'])} |"
            )
    lines += ["", "Memory: a case that raised a worker's peak by more than 100 MB:", ""]
    jumps = [(fmt, j) for fmt, r in res["formats"].items() for j in r.get("memory_jumps", [])]
    for fmt, j in jumps:
        lines.append(f"- {fmt}, case {j['case']}, seed `{j['seed']}`, {j['kind']}: {j['detail']} (peak {j['mb']} MB)")
    if not jumps:
        lines.append("- none")
    lines += ["", "Distinct failures (first case of each kept as a reproducer):", ""]
    any_f = False
    for fmt, r in res["formats"].items():
        for sig, f in sorted(r["failures"].items(), key=lambda x: -x[1]["count"]):
            any_f = True
            lines.append(
                f"- **{fmt}**, {f['count']:,} case(s): `{sig}`. First: case {f['case']}, seed `{f['seed']}`, "
                f"{f['kind']}: {f.get('detail', '')}. Reproducer `{f.get('reproducer', '')}`."
            )
    if not any_f:
        lines.append("- none")
    return "\n".join(lines) + "\n"


def write_doc(res: dict[str, Any], doc: Path) -> None:
    text = doc.read_text() if doc.exists() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    doc.write_text(f"{head}{BEGIN}\n{figures_md(res)}{END}{tail}")


def replay(files: list[str]) -> int:
    bad = 0
    with tempfile.TemporaryDirectory() as td:
        for f in files:
            p = Path(f)
            out = run_bytes(p.read_bytes(), "".join(p.suffixes[-1:]), Path(td))
            print(f"{p.name}: {out.status}, {out.stored} row(s) stored {out.error[:200]}")
            for fr in out.frames:
                print(f"    {fr[0]}:{fr[2]} in {fr[1]}")
            bad += out.status in ("traceback", "timeout")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--cases", type=int, default=500, help="cases per format (default 500; the acceptance run is 10000)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, of {', '.join(FORMATS)}")
    ap.add_argument("--time-limit", type=float, default=10.0, help="seconds one case may take")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "fuzz")
    ap.add_argument("--doc", type=Path, default=DOC, help="write the figures into this page (between its markers)")
    ap.add_argument("--no-doc", action="store_true", help="do not touch the docs page")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="ingest saved reproducers and print what happens")
    ap.add_argument(
        "--write-case", nargs="+", metavar="FORMAT:N", help="write case N of a format (with --seed) to --out"
    )
    a = ap.parse_args(argv)
    if a.replay:
        return replay(a.replay)
    if a.write_case:
        seeds = build_seeds(a.out / "seeds")
        for spec in a.write_case:
            fmt, n = spec.split(":")
            s, case = make_case(seeds, fmt, a.seed, int(n))
            dest = a.out / f"{fmt}-seed{a.seed}-case{n}{s.suffix}"
            dest.write_bytes(case.data)
            print(f"{dest}: seed {s.name}, {case.kind}: {case.detail}")
        return 0
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    unknown = set(formats) - set(FORMATS)
    if unknown:
        ap.error(f"unknown format(s) {', '.join(sorted(unknown))}")
    res = run(a.cases, a.seed, max(1, min(a.workers, 2)), formats, a.out, a.time_limit)
    print(figures_md(res))
    if not a.no_doc:
        write_doc(res, a.doc)
    bad = sum(r["total"]["traceback"] + r["total"]["timeout"] + r["total"]["rejected"] for r in res["formats"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

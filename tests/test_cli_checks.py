"""Never fail quietly (issue 13 A): a path that is not a store, an empty window, a default window
that hides most of the store, seeds that are domains, a hunt without an ASN database. Each gets a
clear message; an error exits 2, nothing to work on exits 3 (docs/cli.md, "Exit codes")."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import shared
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.errors import EXIT_NOTHING, EXIT_USAGE
from flowpivot.ingest import ingest_paths
from flowpivot.store import Store

NFDUMP = "stratosphere/test1-malicious.nfdump"
ZEEK = "stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})
    return res.exit_code, res.output + (res.stderr if res.stderr_bytes is not None else "")


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("checks") / "store"
    reports = ingest_paths([shared(NFDUMP), shared(ZEEK)], Store(root))
    assert all(r.status == "ingested" for r in reports)
    return root


def _flows(path: Path) -> int:
    return sum(1 for _ in Store(path).query().to_pylist())


def test_default_window_that_hides_most_of_the_store_says_so(real_store: Path, tmp_path: Path) -> None:
    seeds = tmp_path / "s.txt"
    seeds.write_text("147.32.82.62\n")
    code, text = _run("hunt", "--store", str(real_store), "--seeds", str(seeds), "-o", str(tmp_path / "r.json"))
    r = json.loads((tmp_path / "r.json").read_text())
    total = _flows(real_store)
    inside = r["provenance"]["flows_in_window"]
    assert 0 < inside < total / 2  # the Zeek day is in the default window, the 2018 nfdump day is not
    msg = next(w["message"] for w in r["warnings"] if w["code"] == "window-hides-store")
    assert f"holds {inside:,} of {total:,} flows; use --since" in msg
    assert msg.startswith("the store spans 2018-") and msg in " ".join(text.split())
    # the seed is in the nfdump day only: the hunt had nothing to work on
    assert code == EXIT_NOTHING
    # with --since covering the store the warning goes, the seed is seen, and the exit is 0
    code, text = _run(
        "hunt",
        "--store",
        str(real_store),
        "--seeds",
        str(seeds),
        "--since",
        "2018-01-01",
        "-o",
        str(tmp_path / "r2.json"),
    )
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert r2["provenance"]["flows_in_window"] == total
    assert "window-hides-store" not in {w["code"] for w in r2["warnings"]}
    assert code == 0, text


def test_domain_seeds_and_no_asn_db_are_warnings(real_store: Path, tmp_path: Path) -> None:
    maltrail = shared("iocs/maltrail-fin7.txt")
    code, text = _run("hunt", "--store", str(real_store), "--seeds", str(maltrail), "-o", str(tmp_path / "r.json"))
    r = json.loads((tmp_path / "r.json").read_text())
    domains = r["seed_input"]["skipped"]["domain"]
    # the oracle: lines of the file that are neither comments nor addresses nor URLs
    lines = [x.strip() for x in maltrail.read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert domains == sum(1 for x in lines if "/" not in x and not re.fullmatch(r"[0-9.]+(:[0-9]+)?", x))
    flat = " ".join(text.split())
    assert f"{domains:,} domains" in flat and "skipped: flowpivot matches addresses" in flat
    assert "no ASN database: clusters are by address block" in flat and "give --asn-db" in flat


def test_an_empty_window_exits_3(real_store: Path, tmp_path: Path) -> None:
    seeds = tmp_path / "s.txt"
    seeds.write_text("147.32.82.62\n")
    args = ["--since", "2020-01-01", "--until", "2020-02-01", "-o", str(tmp_path / "r.json")]
    code, text = _run("hunt", "--store", str(real_store), "--seeds", str(seeds), *args)
    assert code == EXIT_NOTHING
    assert "the window 2020-01-01 .. 2020-02-01 holds no flows" in " ".join(text.split())


def test_paths_that_are_not_stores_are_errors(tmp_path: Path) -> None:
    seeds = tmp_path / "s.txt"
    seeds.write_text("147.32.82.62\n")
    nfdump_dir = shared(NFDUMP).parent
    for args in (
        ["hunt", "--store", str(nfdump_dir), "--seeds", str(seeds)],
        ["stats", "--store", str(nfdump_dir)],
        ["flows", "--store", str(nfdump_dir)],
    ):
        code, text = _run(*args)
        flat = " ".join(text.split())
        assert code == EXIT_USAGE, (args, text)
        assert "is not a flow store" in flat and "nfdump" in flat and "ingest them first" in flat
    code, text = _run("stats", "--store", str(tmp_path / "nowhere"))
    assert code == EXIT_USAGE and "does not exist" in text


def test_ctrl_c_exits_130_with_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "flowpivot"
    proc = subprocess.Popen(
        [str(exe), "simulate", "fin7", "--out", str(tmp_path / "sim"), "--flows", "30000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3.0)  # well inside the simulation (minutes for 30 M flows)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "interrupted"


def test_piped_output_is_not_wrapped(tmp_path: Path) -> None:
    deep = tmp_path / ("a-folder-with-a-rather-long-name-" * 3) / "conn.log.labeled"
    deep.parent.mkdir(parents=True)
    deep.write_bytes(shared(ZEEK).read_bytes())
    exe = Path(sys.executable).parent / "flowpivot"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    res = subprocess.run(
        [str(exe), "ingest", str(deep), "--store", str(tmp_path / "st")], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr
    assert any(str(deep) in line for line in res.stdout.splitlines()), res.stdout  # the path on one line


def test_expire_dry_run_and_asking_before_every_partition(real_store: Path, tmp_path: Path) -> None:
    import shutil

    st = tmp_path / "copy"
    shutil.copytree(real_store, st)
    before = sorted(p.name for p in (st / "flows").glob("day=*"))
    assert len(before) == 2  # the 2018 nfdump day and the 2023 Zeek day
    code, text = _run("expire", "--store", str(st), "--older-than", "90d", "--dry-run")
    assert code == 0 and "would remove 2 of 2 day partition(s)" in text
    assert sorted(p.name for p in (st / "flows").glob("day=*")) == before  # nothing removed
    # every partition would go: without --yes and without a terminal to ask on, refused
    code, text = _run("expire", "--store", str(st), "--older-than", "90d")
    assert code == EXIT_USAGE and "would remove every day partition" in " ".join(text.split())
    assert sorted(p.name for p in (st / "flows").glob("day=*")) == before
    # only the old day: no question
    code, text = _run("expire", "--store", str(st), "--older-than", "365d", "--now", "2023-03-01")
    assert code == 0 and sorted(p.name for p in (st / "flows").glob("day=*")) == [before[1]]
    code, text = _run("expire", "--store", str(st), "--older-than", "90d", "--yes")
    assert code == 0 and not list((st / "flows").glob("day=*"))


def test_quiet_and_json_where_they_mean_something(real_store: Path, tmp_path: Path) -> None:
    seeds = tmp_path / "s.txt"
    seeds.write_text("147.32.82.62\n")
    r = tmp_path / "r.json"
    code, text = _run(
        "hunt", "--store", str(real_store), "--seeds", str(seeds), "--since", "2018-01-01", "-q", "-o", str(r)
    )
    assert code == 0 and "window 2018" not in text and json.loads(r.read_text())["format"] == "flowpivot-hunt/1"
    res = CliRunner().invoke(app, ["report", str(r), "--md", str(tmp_path / "r.md"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout) == {"md": str(tmp_path / "r.md")}
    res = CliRunner().invoke(app, ["expire", "--store", str(real_store), "--older-than", "1d", "--dry-run", "--json"])
    assert res.exit_code == 0
    assert json.loads(res.stdout) == {"dry_run": True, "days": ["2018-01-12", "2023-02-22"], "kept": 0}


def test_verbose_logs_every_stage_and_completion_is_offered(real_store: Path, tmp_path: Path) -> None:
    seeds = tmp_path / "s.txt"
    seeds.write_text("147.32.82.62\n")
    exe = Path(sys.executable).parent / "flowpivot"
    res = subprocess.run(
        [str(exe), "-v", "hunt", "--store", str(real_store), "--seeds", str(seeds), "--since", "2018-01-01",
         "-q", "-o", str(tmp_path / "r.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    stages = re.findall(r"stage (\w+): ([0-9.]+) s; (.*)", res.stderr)
    r = json.loads((tmp_path / "r.json").read_text())
    assert [s[0] for s in stages] == list(r["provenance"]["timings_s"])  # every stage, in order
    assert any(s[0] == "window" and f"flows {r['provenance']['flows_in_window']:,}" in s[2] for s in stages)
    # the bash completion script, as `flowpivot --install-completion` installs it (asked for by
    # name: from make or CI the parent shell is sh, which the detection refuses)
    shown = subprocess.run(
        [str(exe)], capture_output=True, text=True, env={**os.environ, "_FLOWPIVOT_COMPLETE": "source_bash"}
    )
    assert shown.returncode == 0 and "_flowpivot_completion" in shown.stdout and "complete " in shown.stdout


def test_a_rerun_after_an_interrupted_ingest_gives_no_false_warnings(tmp_path: Path) -> None:
    from flowpivot.simulate import Scenario, simulate

    simulate(Scenario(flows=60_000, seed=5), tmp_path / "sim")
    pcaps = sorted((tmp_path / "sim" / "exports").glob("*.pcap"))
    store = Store(tmp_path / "st")
    first = ingest_paths(pcaps[:3], store)  # the run that was interrupted after three files
    assert all(r.status == "ingested" and r.bad == 0 for r in first)
    again = ingest_paths(pcaps, store)
    assert [r.status for r in again[:3]] == ["already ingested"] * 3
    assert all(r.status == "ingested" for r in again[3:])
    assert sum(r.bad for r in again) == 0 and not any(r.problems for r in again)
    # and every flow once: the same count as one uninterrupted run
    whole = ingest_paths(pcaps, Store(tmp_path / "one"))
    assert sum(r.records for r in first + again) == sum(r.records for r in whole)

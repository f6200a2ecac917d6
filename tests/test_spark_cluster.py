"""A real Spark standalone cluster on 127.0.0.1: a master and two workers of one core each.

The pyspark wheel ships ``sbin/spark-daemon.sh`` but not ``start-master.sh``/``start-worker.sh``,
which are two-line wrappers around it (``spark-daemon.sh start org.apache.spark.deploy.master.Master
1 --host H --port P --webui-port W``, and ``... worker.Worker N MASTER_URL``): this starts the same
daemons the same way, with their logs, pid files and work directories in a temporary directory,
and stops them afterwards (``spark-daemon.sh stop``, then the pid files' processes if any is left),
also when a test fails. The master listens on 7077 as the issue says, or on a free port when 7077
is taken.

The commands run as separate processes (a session's master cannot change inside one process):
``flowpivot flows``/``stats --engine spark --spark-master spark://...``, and the docs/scale.md
recipe, ``spark-submit --py-files flowpivot.zip submit.py ...``. Each must give what DuckDB gives,
and the cluster's work directory must show that both workers ran an executor for it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest
from conftest import REPO, shared
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.ingest import ingest_paths
from flowpivot.store import Store

pytestmark = pytest.mark.spark
SPARK_HOME = Path(pyspark.__file__).parent
DAEMON = SPARK_HOME / "sbin" / "spark-daemon.sh"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
WORKERS = 2
# what one executor may take on a worker (SPARK_WORKER_MEMORY is 1g)
EXECUTOR_CONF = ["--spark-conf", "spark.executor.memory=512m", "--spark-conf", "spark.sql.shuffle.partitions=4"]


def _free_tcp_port(preferred: int | None = None) -> int:
    if preferred is not None:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    url: str
    ui: str
    env: dict[str, str]
    work: Path

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=10) as r:
            return json.loads(r.read())

    def executors_of_last_app(self) -> list[str]:
        apps = sorted(p for p in self.work.iterdir() if p.name.startswith("app-"))
        return sorted(p.name for p in apps[-1].iterdir()) if apps else []


def _daemon(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(DAEMON), *args], env=env, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    d = tmp_path_factory.mktemp("spark-cluster")
    port, ui_port = _free_tcp_port(7077), _free_tcp_port()
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_WORKER_CORES": "1",
        "SPARK_WORKER_MEMORY": "1g",
        "SPARK_LOG_DIR": str(d / "log"),
        "SPARK_PID_DIR": str(d / "pid"),
        "SPARK_WORKER_DIR": str(d / "work"),
        "SPARK_IDENT_STRING": f"flowpivot-test-{os.getpid()}",
        "PYSPARK_PYTHON": sys.executable,
    }
    env.pop("PYTHONPATH", None)  # the daemons need none; each command gets its own
    url = f"spark://127.0.0.1:{port}"
    c = Cluster(url, f"http://127.0.0.1:{ui_port}", env, d / "work")
    try:
        _daemon(
            env, "start", MASTER_CLASS, "1", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)
        )
        for i in range(1, WORKERS + 1):
            _daemon(env, "start", WORKER_CLASS, str(i), "--host", "127.0.0.1", "--webui-port", "0", url)
        deadline = time.monotonic() + 180
        while True:
            try:
                if c.state().get("aliveworkers") == WORKERS:
                    break
            except (OSError, ValueError):  # not listening yet, or not serving its JSON yet
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in (d / "log").glob("*.out"))
                pytest.fail(f"the cluster did not come up with {WORKERS} workers:\n{logs}")
            time.sleep(0.5)
        yield c
    finally:
        for i in range(1, WORKERS + 1):
            subprocess.run([str(DAEMON), "stop", WORKER_CLASS, str(i)], env=env, capture_output=True, timeout=60)
        subprocess.run([str(DAEMON), "stop", MASTER_CLASS, "1"], env=env, capture_output=True, timeout=60)
        for pid_file in (d / "pid").glob("*.pid"):  # spark-daemon.sh removes those it stopped
            try:
                os.kill(int(pid_file.read_text().strip()), 9)
            except (ProcessLookupError, ValueError):
                pass


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Two real sources on two days: the Stratosphere nfdump file and a labelled Zeek conn.log."""
    st = Store(tmp_path_factory.mktemp("cluster-store") / "store")
    paths = [
        shared("stratosphere/test1-malicious.nfdump"),
        shared("stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"),
    ]
    for rep in ingest_paths(paths, st):
        assert rep.status == "ingested", rep.problems
    return st


@pytest.fixture(scope="module")
def fin7(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path, Path]:
    """The FIN7 demo scenario, small: its NetFlow v9 exports ingested; (store, seeds, ASN database)."""
    from flowpivot.simulate import Scenario, simulate

    d = tmp_path_factory.mktemp("fin7")
    simulate(Scenario(flows=100_000), d / "scenario")
    st = Store(d / "store")
    for rep in ingest_paths(sorted((d / "scenario" / "exports").glob("*.pcap")), st):
        assert rep.status == "ingested", rep.problems
    return st, d / "scenario" / "seeds.txt", d / "scenario" / "asn.tsv"


def _comparable(result: dict) -> dict:
    """A hunt result but its provenance (timings, when, which engine) and parameters."""
    return {k: v for k, v in result.items() if k not in ("provenance", "parameters")}


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> str:
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stdout


def _duckdb(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def test_flows_and_stats_through_the_cluster(cluster: Cluster, store: Store, tmp_path: Path) -> None:
    env = {**cluster.env, "PYTHONPATH": str(REPO)}
    s = str(store.root)
    for args in (
        ["flows", "--store", s, "-f", "proto tcp and not port 443", "-s", "ip/bytes", "-s", "dstport/flows", "-n", "5"],
        ["stats", "--store", s, "--json"],
    ):
        got = _run([sys.executable, "-m", "flowpivot", *args, "--engine", "spark", "--spark-master", cluster.url,
                    *EXECUTOR_CONF], env, tmp_path)  # fmt: skip
        assert got == _duckdb(*args) and got.strip(), args
        assert cluster.executors_of_last_app() == [str(i) for i in range(WORKERS)]  # one executor per worker
    done = [a for a in cluster.state()["completedapps"] if a["name"] == "flowpivot"]
    assert len(done) >= 2 and all(a["state"] == "FINISHED" for a in done)


def test_the_fin7_hunt_through_the_cluster(cluster: Cluster, fin7: tuple[Store, Path, Path], tmp_path: Path) -> None:
    """``flowpivot hunt --engine spark --spark-master spark://...`` gives the DuckDB hunt's result."""
    store, seeds, asn = fin7
    args = ["hunt", "--store", str(store.root), "--seeds", str(seeds), "--asn-db", str(asn), "-q"]
    _duckdb(*args, "-o", str(tmp_path / "duckdb.json"))
    _run([sys.executable, "-m", "flowpivot", *args, "-o", str(tmp_path / "spark.json"), "--engine", "spark",
          "--spark-master", cluster.url, *EXECUTOR_CONF], {**cluster.env, "PYTHONPATH": str(REPO)}, tmp_path)  # fmt: skip
    want, got = (json.loads((tmp_path / f"{e}.json").read_text()) for e in ("duckdb", "spark"))
    assert want["clusters"] and _comparable(got) == _comparable(want)
    assert got["provenance"].get("engine") != want["provenance"].get("engine")  # each engine ran
    assert cluster.executors_of_last_app() == [str(i) for i in range(WORKERS)]


def _recipe() -> tuple[str, str]:
    """The launcher and the spark-submit line of docs/scale.md's recipe, as the page gives them."""
    text = (REPO / "docs" / "scale.md").read_text()
    launcher = re.search(r"```python\n(# submit\.py\n.*?)```", text, re.S)
    submit = re.search(r"```sh\n(spark-submit .*?)```", text, re.S)
    assert launcher and submit, "docs/scale.md lost its recipe"
    return launcher.group(1), submit.group(1)


def test_the_spark_submit_recipe_runs_on_the_cluster(cluster: Cluster, store: Store, tmp_path: Path) -> None:
    """docs/scale.md's recipe, as written there: the package as a zip (--py-files), the launcher
    as the application, the master from spark-submit (no --spark-master)."""
    launcher, submit = _recipe()
    (tmp_path / "submit.py").write_text(launcher)
    with zipfile.ZipFile(tmp_path / "flowpivot.zip", "w") as z:
        for p in (REPO / "flowpivot").rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts:
                z.write(p, p.relative_to(REPO))
    args = ["flows", "--store", str(store.root), "-s", "proto/bytes", "-n", "3"]
    for opt in ("--master", "--py-files flowpivot.zip", "submit.py", "--engine spark", "--out"):
        assert opt in submit, opt
    cmd = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster.url, "--conf", "spark.executor.memory=512m",
           "--py-files", "flowpivot.zip", "submit.py", *args, "--engine", "spark", "--out", "top.txt"]  # fmt: skip
    # no PYTHONPATH: spark-submit puts the zip first on the driver's path, and ships it to the executors
    _run(cmd, {**cluster.env, "PYSPARK_DRIVER_PYTHON": sys.executable}, tmp_path)
    got = (tmp_path / "top.txt").read_text()
    assert got == _duckdb(*args) and "TCP" in got
    assert cluster.executors_of_last_app() == [str(i) for i in range(WORKERS)]

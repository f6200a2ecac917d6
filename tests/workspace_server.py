"""`flowpivot serve` as the tests run it: the real command in a subprocess on a free port, and the
FIN7 scenario's store split at the suspension (days before it, and the days after)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from conftest import REPO, free_tcp_port, wait_for


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    workspace: Path
    log: Path

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)


def serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from flowpivot.cli import main; main()", "serve", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


@contextmanager
def running(store: Path, workspace: Path, *args: str, host: str = "127.0.0.1") -> Iterator[Server]:
    """``flowpivot serve --store STORE --workspace WS --listen HOST:PORT ARGS...`` until the block ends."""
    port = free_tcp_port(host)
    cmd = serve_cmd("--store", str(store), "--workspace", str(workspace), "--listen", f"{host}:{port}", *args)
    log = workspace.parent / f"serve-{port}.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, text=True, env=env())
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"flowpivot serve exited {proc.returncode}: {log.read_text()}")
        try:
            httpx.get(url + "/openapi.json", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, "flowpivot serve to answer", timeout=60)
        yield Server(url, proc, workspace, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_hunt(
    c: httpx.Client, hunt_id: str, timeout: float = 120, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        h: dict[str, Any] = c.get(f"/api/hunts/{hunt_id}", headers=headers).json()
        if h["status"] in ("done", "failed"):
            return h
        if time.monotonic() > deadline:
            raise AssertionError(f"hunt {hunt_id} still {h['status']} after {timeout} s")
        time.sleep(0.2)


@dataclass
class Scenario:
    dir: Path
    store: Path
    asn: Path
    seeds: Path
    truth: dict[str, Any]
    before: list[Path]  # day files before the suspension day
    after: list[Path]  # the suspension day and the days after it


def fin7(d: Path, flows: int = 150_000, split: bool = False) -> Scenario:
    """The FIN7 scenario (flowpivot simulate) ingested into d/store: every day, or (split) only the
    days before the suspension (the rest left for the test to ingest)."""
    from flowpivot.ingest import ingest_paths
    from flowpivot.simulate import Scenario as Sim
    from flowpivot.simulate import simulate
    from flowpivot.store import Store

    scen = d / "scenario"
    simulate(Sim(flows=flows, seed=1), scen)
    truth = json.loads((scen / "truth.json").read_text())
    days = sorted((scen / "exports").glob("day-*.pcap"))
    susp = truth["period"]["suspension"][:10]
    start = truth["period"]["start"][:10]
    import datetime as dt

    n = (dt.date.fromisoformat(susp) - dt.date.fromisoformat(start)).days  # days before the suspension day
    before, after = days[:n], days[n:]
    ingest_paths(before if split else days, Store(d / "store"))
    return Scenario(d, d / "store", scen / "asn.tsv", scen / "seeds.txt", truth, before, after)

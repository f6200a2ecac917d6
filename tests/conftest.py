"""Shared fixtures: the real data in ../shared/data, and real tools that must run in CI."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FLOWPIVOT_SHARED", REPO.parent / "shared" / "data")).resolve()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_tool(name: str) -> str:
    """Path of a real tool. Missing: skip on a developer machine, fail in CI (make test installs it)."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path:
        return path
    if IN_CI:
        pytest.fail(f"{name} is not installed; `make test` installs it as root")
    pytest.skip(f"{name} is not installed (run `make test` as root to install it)")


def shared(rel: str) -> Path:
    p = SHARED / rel
    if not p.exists():
        pytest.fail(f"shared data file missing: {p}")
    return p


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.exists():
        pytest.fail(f"shared data not found at {SHARED}; set FLOWPIVOT_SHARED")
    return SHARED


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``predicate`` until it holds; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def pytest_configure(config: pytest.Config) -> None:
    # (registered here, not in pyproject: `-m spark` selects the Spark tests, `-m "not spark"` skips them)
    config.addinivalue_line("markers", "spark: runs on Apache Spark (pyspark, local mode, Java); selected by -m spark")

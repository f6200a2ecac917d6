"""Shared fixtures: the real data in ../shared/data, and real tools that must run in CI."""

from __future__ import annotations

import os
import shutil
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

"""Every CLI command has help and is documented; the public surface is what modules export."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from flowpivot.cli import app

REPO = Path(__file__).resolve().parents[1]
COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]
DOCS = (REPO / "README.md").read_text() + "".join(p.read_text() for p in sorted((REPO / "docs").glob("*.md")))


def test_the_pipeline_commands_exist() -> None:
    assert {"ingest", "collect", "flows", "stats", "expire", "enrich", "hunt", "report", "simulate", "demo"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_and_docs(name: str) -> None:
    res = CliRunner().invoke(app, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert len(res.output.strip().splitlines()) > 3
    assert f"flowpivot {name}" in DOCS or f"`{name}`" in DOCS, f"command {name} is not documented"


def test_readme_shows_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme

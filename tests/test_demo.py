"""`flowpivot demo`: the whole job on built-in data, judged by the simulator's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flowpivot.cli import app


def test_demo_writes_every_output_and_finds_the_planted_clusters(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--flows", "200000"])
    assert res.exit_code == 0, res.output
    truth = json.loads((out / "scenario" / "truth.json").read_text())
    result = json.loads((out / "result.json").read_text())
    assert sorted(sorted(c["members"]) for c in result["clusters"]) == sorted(
        sorted(c["members"]) for c in truth["clusters"]
    )
    for name in ("report.html", "report.md", "stix.json", "misp.json"):
        assert (out / name).stat().st_size > 0
    assert list((out / "abuse").glob("abuse-AS*.txt"))
    assert f"open the report: {out / 'report.html'}" in res.stdout

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
    assert (
        f"open the workspace: flowpivot serve --store {out / 'store'} --asn-db {out / 'scenario' / 'asn.tsv'}"
        in res.stdout
    )
    # run twice in a row (`make demo` again): the captures are already in the store, nothing is
    # stored twice, no false "bad input" or "give template files first", the same result
    again = CliRunner().invoke(app, ["demo", "--out", str(out), "--flows", "200000"])
    assert again.exit_code == 0, again.output
    assert "0 flows ingested (" in again.output and "already in the store), 0 bad inputs" in again.output
    assert "template" not in again.output
    second = json.loads((out / "result.json").read_text())
    assert (
        second["clusters"] == result["clusters"]
        and second["provenance"]["flows_in_window"] == (result["provenance"]["flows_in_window"])
    )

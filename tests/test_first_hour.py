"""docs/first-hour.md stays true: its commands, run on the same real files, print what it quotes."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import shared
from typer.testing import CliRunner

from flowpivot.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "first-hour.md"


def _run(*args: str) -> str:
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split())


def _quoted(line_start: str) -> str:
    """The doc's line that starts with this text, whitespace collapsed."""
    line = next(ln for ln in DOC.read_text().splitlines() if ln.strip().startswith(line_start))
    return " ".join(line.split())


def test_the_walkthrough_prints_what_it_quotes(tmp_path: Path) -> None:
    st = str(tmp_path / "fh")
    nf = shared("stratosphere/test1-malicious.nfdump")
    zeek = shared("stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled")
    assert "5,359 flows from 2 file(s)" in _run("ingest", str(nf), str(zeek), "--store", st)
    text = _run("flows", "--store", st, "--since", "2018-01-01", "-f", "dst port 902 and flags S and not flags A",
                "-o", "line", "--limit", "3")  # fmt: skip
    assert _quoted("2018-01-12 15:37:30.950") in text
    text = _run("flows", "--store", st, "--since", "2018-01-01", "-s", "dstport/flows", "-n", "3")
    assert _quoted("2018-01-12 15:37:30.942     00:00:33.039              902") in text
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("66.63.168.35\n147.32.82.62\n")
    mmdb = shared("asn/iptoasn-asn-2026-09-16.mmdb")
    r = str(tmp_path / "r.json")
    text = _run("hunt", "--store", st, "--seeds", str(seeds), "--since", "2018-01-01", "--asn-db", str(mmdb), "-o", r)
    assert _quoted("window 2018-01-01T00:00:00.000Z") in text
    assert _quoted("147.32.80.119 -> 147.32.82.62:902/tcp retry-storm") in text
    row = re.sub(r"\s+", " ", _quoted("192.168.1.107  66.63.168.35:5888"))
    assert all(cell in text for cell in row.split())
    text = _run("ip", "192.168.1.107", "147.32.80.119", "--store", st, "--result", r, "--top", "1")
    assert _quoted("hunt: victim of 66.63.168.35:5888") in text
    assert _quoted("hunt: probe retry-storm") in text

"""Reports from a real hunt: the FIN7 scenario simulated as NetFlow v9, ingested, hunted, then every format.

This is the hunt's own output (not a hand-made fixture): whatever shape it has, every format must come out
valid, name the lead clusters' hosts, and write abuse letters to their providers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tool
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_string

from flowpivot.report import read_result
from flowpivot.report.text import defang

NOW = datetime(2024, 5, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def hunted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], Path]:
    from flowpivot.demo import run

    d = tmp_path_factory.mktemp("real")
    demo = run(d, flows=2000, sampling=100, seed=1, actor="FIN7", now=NOW)
    result, truth, out = demo.result, demo.truth, d
    return result, truth, out


@pytest.mark.slow
def test_every_format_from_a_real_hunt_is_valid(hunted: tuple[dict[str, Any], dict[str, Any], Path]) -> None:
    result, _truth, out = hunted
    rep = read_result(result)
    assert rep.problems == []
    res = validate_string((out / "stix.json").read_text(), ValidationOptions(version="2.1"))
    assert res.is_valid, [str(e) for e in res.errors]
    ev = MISPEvent()
    ev.load((out / "misp.json").read_text())
    assert {t.name for t in ev.tags} >= {"tlp:amber", "PAP:AMBER"}
    lead = rep.lead_clusters()
    assert lead, "the hunt found no cluster in the FIN7 scenario"
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for c in lead:
        for m in c.members:
            assert defang(m) in md and defang(m) in html
        letter = (out / "abuse" / f"abuse-AS{c.asn}.txt").read_text()
        assert all(defang(m) in letter for m in c.members)
    # netflow objects for the member-seed pairs the hunt listed
    assert sum(o.name == "netflow" for o in ev.objects) == sum(len(rep.cluster_pairs(c)) for c in rep.clusters)


@pytest.mark.slow
def test_letters_go_to_the_providers_the_scenario_planted(hunted: tuple[dict[str, Any], dict[str, Any], Path]) -> None:
    # The simulator's ground truth names the providers hosting the actor's upstream clusters: each gets a letter.
    _result, truth, out = hunted
    planted = {c["provider"]["asn"] for c in truth["clusters"]}
    written = {int(p.stem.removeprefix("abuse-AS")) for p in (out / "abuse").glob("abuse-AS*.txt")}
    assert planted <= written


@pytest.mark.slow
@pytest.mark.tools
def test_real_hunt_report_opens_cleanly_in_chromium(hunted: tuple[dict[str, Any], dict[str, Any], Path]) -> None:
    chromium = need_tool("chromium")
    from playwright.sync_api import sync_playwright

    result, _truth, out = hunted
    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            pg = b.new_page()
            pg.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            pg.on("pageerror", lambda e: problems.append(str(e)))
            pg.on("request", lambda r: requests.append(r.url))
            pg.goto((out / "report.html").resolve().as_uri())
            pg.wait_for_selector("body[data-ready='1']", timeout=20000)
            assert pg.evaluate("window.fpCy.nodes('[kind = \"cluster\"]').length") == len(result["clusters"])
            assert pg.locator("#clusters-table tbody tr").count() == len(result["clusters"])
        finally:
            b.close()
    assert problems == []
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in requests)

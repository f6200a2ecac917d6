"""The workspace as an analyst uses it, in Debian's Chromium through Playwright, end to end:

start `flowpivot serve` on the FIN7 scenario's store holding the days before the suspension; look an
address up from the search box; run the FIN7 hunt from the browser (the scenario's seed file
uploaded); follow its stages; open a cluster from the graph and follow a member to its profile;
save the investigation; ingest the days of and after the suspension; run it again and watch the
diff show the seeds gone dark.

Oracles: the scenario's truth.json (who the members are, that every seed goes dark at the
suspension), the runs' own results through the API (which seeds were answering before), and the
browser itself (no console error, no request leaves the server). Screenshots go to tests/artifacts/workspace/ (docs/workspace/ with FLOWPIVOT_DOC_SHOTS=1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, need_tool
from test_report_html import CHROMIUM_ARGS
from workspace_server import Scenario, Server, fin7, running, wait_hunt

pytestmark = [pytest.mark.tools, pytest.mark.slow]

# The screenshots go to tests/artifacts/workspace; with FLOWPIVOT_DOC_SHOTS=1 they replace the
# pictures of docs/workspace.md (hunt ids and times change each run, so a plain run leaves docs alone).
SHOTS = (
    REPO / "docs" / "workspace"
    if os.environ.get("FLOWPIVOT_DOC_SHOTS") == "1"
    else REPO / "tests" / "artifacts" / "workspace"
)


@pytest.fixture(scope="module")
def scen(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return fin7(tmp_path_factory.mktemp("ws-browser"), flows=150_000, split=True)


@pytest.fixture(scope="module")
def server(scen: Scenario) -> Iterator[Server]:
    with running(scen.store, scen.dir / "ws", "--asn-db", str(scen.asn)) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = need_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _members(truth: dict[str, Any]) -> set[str]:
    return {m if isinstance(m, str) else m["address"] for c in truth["clusters"] for m in c["members"]}


def test_analyst_session_end_to_end(browser: Any, server: Server, scen: Scenario) -> None:
    from flowpivot.ingest import ingest_paths
    from flowpivot.store import Store

    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    members = _members(scen.truth)
    member = sorted(members)[0]

    def shot(name: str, full: bool = False) -> None:
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)

    # look an address up
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    shot("start")
    page.fill("#q", member)
    page.press("#q", "Enter")
    page.wait_for_selector("#profile-ip")
    assert page.inner_text("#profile-ip") == member
    assert page.locator("#peers tbody tr").count() > 0
    assert "AS" in page.inner_text("#owner")

    # run the FIN7 hunt from the browser, behind another one so that its page opens while it waits
    # and the page's own script follows it to the end (the stage events, then a reload)
    with server.client() as c:
        assert c.post("/api/hunts", json={"seeds": scen.seeds.read_text()}).status_code == 202
    page.goto(server.url + "/")
    page.set_input_files("#seed-files", str(scen.seeds))
    page.click("#hunt-start")
    page.wait_for_url("**/hunts/*")
    assert page.get_attribute("#hunt-status", "data-status") in ("queued", "running")
    page.screenshot(path=str(SHOTS / "hunt-waiting.png"), clip={"x": 0, "y": 0, "width": 1400, "height": 200})
    page.wait_for_selector("#hunt-status[data-status='done']", timeout=120_000)
    assert any(u.endswith("/events") for u in requests)
    assert page.locator("#stages li.done").count() == page.locator("#stages li").count()
    shot("hunt")
    page.locator("#graph").scroll_into_view_if_needed()
    page.locator("#graph").screenshot(path=str(SHOTS / "hunt-graph.png"))
    hunt_url = page.url
    shown = {x.get_attribute("data-ip") for x in page.locator("#cluster-graph a.node.member").all()}
    assert shown and shown <= members, shown - members

    # open a cluster and follow a member to its profile
    page.locator("#cluster-graph a.cluster-link").first.click()
    page.wait_for_selector("#members")
    shot("cluster")
    first = page.locator("#members tbody tr td a.ip").first
    who = first.inner_text()
    assert who in members
    first.click()
    page.wait_for_selector("#roles")
    assert page.inner_text("#profile-ip") == who
    assert "member" in page.inner_text("#roles")
    shot("profile")

    # save the investigation
    page.goto(hunt_url)
    page.fill("#save-name", "fin7-stark")
    page.click("#save")
    page.wait_for_selector("#investigation-name")
    inv_url = page.url
    assert page.locator("#runs tbody tr").count() == 1

    # the days of and after the suspension land in the store
    done = ingest_paths(scen.after, Store(scen.store))
    assert sum(r.records for r in done) > 0

    # run it again and look at the difference
    page.click("#rerun")
    page.wait_for_url("**/hunts/*")
    page.wait_for_selector("#hunt-status[data-status='done']", timeout=120_000)
    page.goto(inv_url)
    assert page.locator("#runs tbody tr").count() == 2
    shot("investigation")
    page.click("#diff")
    page.wait_for_selector("#seeds-dark")
    shot("diff")
    gone_dark = {x.inner_text() for x in page.locator("#seeds-dark li a.ip").all()}

    # record the disclosure (midnight of the suspension day, before any seed goes dark), read the takedown
    disclosed = scen.truth["period"]["suspension"][:10] + "T00:00:00Z"
    page.goto(inv_url)
    page.fill("#disclosed", disclosed)
    page.click("#record-disclosed")
    page.click("#takedown-link")
    page.wait_for_selector("#takedown")
    shot("takedown")
    verdicts = {
        row.locator("td a.ip").first.inner_text(): row.locator("td.verdict").inner_text()
        for row in page.locator("#takedown tbody tr").all()
    }

    with server.client() as c:
        inv = c.get("/api/investigations/fin7-stark").json()
        r1, r2 = (c.get(f"/api/investigations/fin7-stark/runs/{r['id']}/result").json() for r in inv["runs"])
        for h in c.get("/api/hunts").json():
            wait_hunt(c, h["id"])
    answering = {s["ip"] for s in r1["seeds"] if s["status"] == "active"}
    truth_dark = {s["address"] for s in scen.truth["seeds"] if s.get("dark_at")}
    assert answering, "before the suspension the hunt must see seeds answering"
    assert answering <= truth_dark  # the scenario takes every one of them down on the suspension day
    assert gone_dark == answering, (sorted(gone_dark), sorted(answering))
    assert {s["ip"] for s in r2["seeds"] if s["status"] == "dark"} >= answering
    # truth: each of them went dark after the disclosure date (at its own dark_at on the suspension day)
    dark_at = {s["address"]: s["dark_at"] for s in scen.truth["seeds"]}
    assert all(dark_at[ip] > disclosed for ip in answering)
    assert {ip for ip, v in verdicts.items() if v == "dark-after-disclosure"} == answering, verdicts

    ctx.close()
    assert not problems, problems
    assert all(u.startswith(server.url) for u in requests), [u for u in requests if not u.startswith(server.url)]


def test_hostile_names_are_text_in_chromium(browser: Any, scen: Scenario, tmp_path: Path) -> None:
    """AS names that are markup and terminal escapes, rendered by Chromium: no dialog, no element of
    theirs, their text shown with the controls made visible."""
    html = '<script>alert("owned")</script><img src=x onerror=alert(1)>'
    evil = "\x1b[2J\x1b]0;pwned\x07 \u202eevil"
    tsv = tmp_path / "hostile.tsv"
    tsv.write_text("".join(f"{ln.rsplit(chr(9), 1)[0]}\t{html} {evil}\n" for ln in scen.asn.read_text().splitlines()))
    member = sorted(_members(scen.truth))[0]
    with running(scen.store, tmp_path / "ws", "--asn-db", str(tsv)) as s:
        ctx = browser.new_context()
        page = ctx.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{s.url}/ip/{member}")
        page.wait_for_selector("body[data-ready='1']")
        owner = page.inner_text("#owner")
        peers = page.inner_text("#peers")
        imgs = page.locator("img").count()
        scripts = page.evaluate("Array.from(document.scripts).map(s => s.src)")
        ctx.close()
    assert not dialogs and imgs == 0
    assert scripts == [f"{s.url}/static/app.js"]
    assert html in owner and "\\x1b[2J\\x1b]0;pwned\\x07" in owner and "\\u202eevil" in owner
    assert html in peers

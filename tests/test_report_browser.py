"""The HTML report read as an analyst reads it, in Debian's Chromium through Playwright, on two real
reports: the demo's (`flowpivot demo --flows 200000`) and one hunted over the real Stratosphere nfdump
capture and labelled Zeek log with the maltrail FIN7 list as seeds (179 seeds the flows never saw).

Each report must open without a console error, show every section, fit the page at 1280x800 and
1440x900 (no element wider than its section), lay its graph out the same way on every load, keep its
headings clear of the sticky navigation bar, draw the colours its legend names, and collapse never-seen
seeds and likely victims behind toggles that work. Screenshots go to tests/artifacts/ to look at.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tool, shared
from test_report_html import ARTIFACTS, CHROMIUM_ARGS, Page
from typer.testing import CliRunner

from flowpivot.cli import app

pytestmark = [pytest.mark.tools, pytest.mark.slow]

# real addresses of the two captures (the CTU university host the capture probes, and the peers the
# Windows host of test18 talked to), so that the report has seeds in every state besides never seen
REAL_SEEDS = ("147.32.82.62", "66.63.168.35", "50.62.139.155", "87.250.251.15", "5.255.255.88")
SIZES = ((1280, 800), (1440, 900))


def _run(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """name: (report.html, the hunt result it was made from)."""
    d = tmp_path_factory.mktemp("browser")
    demo = d / "demo"
    _run("demo", "--out", str(demo), "--flows", "200000")
    real = d / "real"
    real.mkdir()
    store = real / "store"
    _run(
        "ingest",
        "-q",
        "-s",
        str(store),
        str(shared("stratosphere/test1-malicious.nfdump")),
        str(shared("stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled")),
    )
    (real / "ctu.txt").write_text("\n".join(REAL_SEEDS) + "\n")
    _run(
        "hunt",
        "-s",
        str(store),
        "--seeds",
        str(shared("iocs/maltrail-fin7.txt")),
        "--seeds",
        str(real / "ctu.txt"),
        "--since",
        "2018-01-01",
        "--asn-db",
        str(shared("asn/iptoasn-asn-2026-09-16.mmdb")),
        "-o",
        str(real / "result.json"),
    )
    _run("report", str(real / "result.json"), "--html", str(real / "report.html"))
    return {
        name: (p / "report.html", json.loads((p / "result.json").read_text()))
        for name, p in (("demo", demo), ("real", real))
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    chromium = need_tool("chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser: Any, path: Path, size: tuple[int, int] = SIZES[0]) -> Page:
    page = Page(browser, path)
    page.page.set_viewport_size({"width": size[0], "height": size[1]})
    return page


def never_seen(doc: dict[str, Any]) -> int:
    return sum(1 for s in doc["seeds"] if s["status"] not in ("active", "dark", "unanswered"))


def all_nodes(doc: dict[str, Any]) -> int:
    """Nodes of the whole graph: a cluster each, and each address once (member, seed, new host, victim)."""
    ips = {m for c in doc["clusters"] for m in c["members"]} | {s["ip"] for s in doc["seeds"]}
    ips |= {e["ip"] for e in doc["expansion"]} | {v["ip"] for v in doc["victims"]}
    return len(doc["clusters"]) + len(ips)


def shown_nodes(pg: Any) -> int:
    return int(pg.evaluate("window.fpCy.nodes().filter((n) => n.visible()).length"))


@pytest.mark.parametrize("name", ["demo", "real"])
def test_every_section_is_visible_and_nothing_overflows(browser: Any, reports: dict, name: str) -> None:
    path, doc = reports[name]
    page = open_page(browser, path)
    pg = page.page
    try:
        ids = pg.evaluate("Array.from(document.querySelectorAll('main > section')).map((s) => s.id)")
        for want in ("summary", "graph", "timeline", "clusters", "evidence", "new-hosts", "hosts", "victims"):
            assert want in ids
        assert {"probes", "near-misses", "excluded", "provenance"} <= set(ids)
        for sid in ids:
            sec = pg.locator(f"main > section#{sid}")
            assert sec.is_visible(), sid
            assert sec.locator("h2").is_visible(), sid
            assert sec.bounding_box()["height"] > 40, sid
        # the real hunt's probe and near misses are listed in their sections, one row each
        assert pg.locator("#probes-table tbody tr").count() == len(doc["probes"])
        assert pg.locator("#near-misses-table tbody tr").count() == len(doc["near_misses"])
        for w, h in SIZES:
            pg.set_viewport_size({"width": w, "height": h})
            pg.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
            assert pg.evaluate("document.documentElement.scrollWidth") <= w
            wide = pg.evaluate(
                """() => {
                    const out = [];
                    for (const sec of document.querySelectorAll('main > section')) {
                        const box = sec.getBoundingClientRect();
                        for (const el of sec.querySelectorAll('*')) {
                            const r = el.getBoundingClientRect();
                            if (el.scrollWidth > sec.clientWidth || el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible'
                                || r.width && (r.right > box.right + 1 || r.left < box.left - 1))
                                out.push([sec.id, el.tagName, el.id || el.className, el.scrollWidth, el.clientWidth, sec.clientWidth]);
                        }
                    }
                    return out;
                }"""
            )
            assert wide == [], wide[:10]
            ARTIFACTS.mkdir(exist_ok=True)
            pg.evaluate("window.scrollTo(0, 0)")
            pg.screenshot(path=str(ARTIFACTS / f"report-{name}-{w}x{h}.png"), full_page=True)
        assert page.problems == [] and page.offsite() == [] and page.dialogs == []
    finally:
        page.close()


@pytest.mark.parametrize("name", ["demo", "real"])
def test_never_seen_seeds_and_victims_are_collapsed_behind_toggles(browser: Any, reports: dict, name: str) -> None:
    path, doc = reports[name]
    page = open_page(browser, path)
    pg = page.page
    try:
        unseen, victims = never_seen(doc), len(doc["victims"])
        assert unseen or victims, "the report has nothing to collapse"
        ARTIFACTS.mkdir(exist_ok=True)
        pg.locator("#graph").screenshot(path=str(ARTIFACTS / f"report-{name}-graph.png"))  # as it opens
        total = all_nodes(doc)
        assert shown_nodes(pg) == pg.evaluate("window.fpCy.nodes().length") == total - unseen - victims
        seed_rows = len(doc["seeds"]) - unseen
        assert pg.evaluate("Chart.getChart('tl-seeds').scales.y.ticks.length") == seed_rows
        for box, n in (("#show-unseen", unseen), ("#show-victims", victims)):
            if not n:
                assert pg.locator(box).count() == 0
                continue
            before = shown_nodes(pg)
            pg.locator(box).check()
            assert shown_nodes(pg) == before + n
            pg.locator(box).uncheck()
            assert shown_nodes(pg) == before, page.problems
        if unseen:
            pg.locator("#tl-show-unseen").check()
            assert pg.evaluate("Chart.getChart('tl-seeds').scales.y.ticks.length") == len(doc["seeds"])
            pg.locator("#tl-show-unseen").uncheck()
            assert pg.evaluate("Chart.getChart('tl-seeds').scales.y.ticks.length") == seed_rows
        note = pg.locator("#graph-note").inner_text()
        assert f"Showing {total - unseen - victims:,} of {total:,} nodes; {unseen + victims:,} collapsed" in note
        for box in ("#show-unseen", "#show-victims"):
            if pg.locator(box).count():
                pg.locator(box).check()
        assert shown_nodes(pg) == total
        assert pg.locator("#graph-note").inner_text() == f"Showing all {total:,} nodes."
        assert page.problems == []
    finally:
        page.close()


def positions(browser: Any, path: Path) -> dict[str, tuple[float, float]]:
    page = open_page(browser, path)
    try:
        return {
            k: tuple(v)
            for k, v in page.page.evaluate(
                "Object.fromEntries(window.fpCy.nodes().filter((n) => n.visible()).map((n) => [n.id(), [n.position('x'), n.position('y')]]))"
            ).items()
        }
    finally:
        page.close()


def test_the_graph_lays_out_the_same_on_every_load(browser: Any, reports: dict) -> None:
    path, doc = reports["demo"]
    first, second = positions(browser, path), positions(browser, path)
    assert len(first) > len(doc["clusters"]) and first == second
    # and not because everything sits on one spot
    assert len({(round(x), round(y)) for x, y in first.values()}) > len(first) // 2


@pytest.mark.parametrize("name", ["demo", "real"])
def test_legend_names_the_colours_the_graph_draws(browser: Any, reports: dict, name: str) -> None:
    path, doc = reports[name]
    page = open_page(browser, path)
    pg = page.page
    try:
        for box in ("#show-unseen", "#show-victims"):
            if pg.locator(box).count():
                pg.locator(box).check()
        drawn = set(pg.evaluate("window.fpCy.nodes().map((n) => n.style('background-color'))"))
        legend = pg.evaluate(
            "Array.from(document.querySelectorAll('#graph .legend i')).map((i) => getComputedStyle(i).backgroundColor)"
        )
        norm = lambda c: c.replace(" ", "")  # noqa: E731  (Cytoscape writes rgb(1,2,3), CSS rgb(1, 2, 3))
        assert len(legend) == len(set(legend))
        assert {norm(c) for c in legend} == {norm(c) for c in drawn}
        # each cluster's box has the colour of its own legend entry
        for c in doc["clusters"]:
            node = pg.evaluate(f"window.fpCy.getElementById('cluster:{c['id']}').style('background-color')")
            entry = pg.locator("#graph .legend span", has_text=f"cluster {c['id']}").locator("i")
            assert entry.evaluate("(i) => getComputedStyle(i).backgroundColor").replace(" ", "") == node.replace(
                " ", ""
            )
    finally:
        page.close()


@pytest.mark.parametrize("name", ["demo", "real"])
def test_navigation_bar_does_not_cover_the_heading_it_jumps_to(browser: Any, reports: dict, name: str) -> None:
    path, _doc = reports[name]
    page = open_page(browser, path)
    pg = page.page
    try:
        links = pg.locator("nav a")
        for i in range(links.count()):
            target = links.nth(i).get_attribute("href")
            links.nth(i).click()
            geo = pg.evaluate(
                """(id) => { const h = document.querySelector(id + ' h2'), n = document.querySelector('nav');
                    return [h.getBoundingClientRect().top, n.getBoundingClientRect().bottom, window.innerHeight]; }""",
                target,
            )
            top, nav_bottom, height = geo
            assert nav_bottom <= top < height, (target, geo)
    finally:
        page.close()

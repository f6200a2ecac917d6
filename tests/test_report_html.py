"""The HTML report in real headless Chromium (Debian's chromium through Playwright): it renders offline,
fetches nothing, logs no error, its graph, timeline and tables work, and hostile values stay text.

A screenshot is kept in tests/artifacts/report.png (CI keeps that folder).
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tool

from flowpivot.report import render_html
from flowpivot.report.text import defang

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "hunt_result.json"
HOSTILE = HERE / "fixtures" / "hunt_result_hostile.json"
ARTIFACTS = HERE / "artifacts"
NOW = datetime(2024, 5, 2, 8, 0, tzinfo=UTC)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL = ("file:", "data:", "blob:", "about:")


def load(p: Path) -> dict:
    return json.loads(p.read_text())


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Tags()
    p.feed(html)
    return p.tags


# ---- the file itself ------------------------------------------------------------------------------------


def test_page_is_self_contained_and_locked_down() -> None:
    html = render_html(load(FIXTURE), now=NOW, actor="FIN7")
    t = tags(html)
    scripts = [a for n, a in t if n == "script"]
    # the data block plus three inline scripts (cytoscape, chart.js, the report's own); none loaded
    assert [s.get("type") for s in scripts] == ["application/json", None, None, None]
    assert not any("src" in s for s in scripts)
    for name, attrs in t:
        for key in ("src", "href", "action", "poster", "srcset"):
            v = attrs.get(key)
            assert v is None or v.startswith("#") or v.startswith("data:"), (name, key, v)
    assert not re.search(r"<link\b", html, flags=re.I)
    csp = next(a["content"] for n, a in t if n == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert (
        "default-src 'none'" in csp
        and "connect-src 'none'" in csp
        and "'unsafe-inline'" not in csp.split("style-src")[0]
    )
    assert "sourceMappingURL" not in html
    # the vendored libraries really are inside
    assert "Cytoscape Consortium" in html and "Chart.js v4" in html


def test_hostile_values_cannot_break_out_of_the_markup() -> None:
    html = render_html(load(HOSTILE), now=NOW, actor="</script><script>alert(9)</script>")
    t = tags(html)
    assert [a.get("type") for n, a in t if n == "script"] == ["application/json", None, None, None]
    # the same elements as the benign twin of this fixture: nothing injected became an element
    # (up to the provenance section, which lists the hostile fixture's one unusable whois field)
    benign_html = render_html(load(FIXTURE), now=NOW, actor="FIN7")
    cut = '<section id="provenance">'
    assert Counter(n for n, _ in tags(html.split(cut)[0])) == Counter(n for n, _ in tags(benign_html.split(cut)[0]))
    assert not any(n in ("img", "svg", "iframe", "textarea") for n, _ in t)
    assert not any(k.startswith("on") for _, a in t for k in a)  # no event handler attributes at all
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    data = html.split('<script type="application/json" id="fp-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data
    assert json.loads(data)["clusters"][0]["as_name"] == "<script>alert(1)</script>"


# ---- in Chromium ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = need_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A page opened from a file, recording console problems, page errors, dialogs and every request."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.ctx.grant_permissions(["clipboard-read", "clipboard-write"])
        self.page = self.ctx.new_page()
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        pg = self.page
        pg.on(
            "console", lambda m: self.problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
        )
        pg.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        pg.on("request", lambda r: self.requests.append(r.url))
        pg.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))
        pg.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        pg.goto(path.resolve().as_uri())
        pg.wait_for_selector("body[data-ready='1']", timeout=20000)

    def close(self) -> None:
        self.ctx.close()

    def offsite(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL)]


def write(tmp_path: Path, name: str, doc: dict, **kw: Any) -> Path:
    p = tmp_path / name
    p.write_text(render_html(doc, now=NOW, **kw), encoding="utf-8")
    return p


def node_point(pg: Any, node_id: str) -> tuple[float, float] | None:
    """A page point on the node that no other node covers (the force layout is random, so another node
    may sit on the centre or, rarely, hide a small node), as a person would pick a visible part of it."""
    return pg.evaluate(
        """(id) => {
            const cy = window.fpCy, n = cy.getElementById(id), bb = n.renderedBoundingBox({ includeLabels: false });
            const c = document.getElementById('cy').getBoundingClientRect();
            const others = cy.nodes().filter((m) => m.id() !== id).map((m) => m.renderedBoundingBox({ includeLabels: false }));
            const free = (x, y) => !others.some((o) => x >= o.x1 && x <= o.x2 && y >= o.y1 && y <= o.y2);
            const steps = [0.5, 0.4, 0.6, 0.3, 0.7];
            for (const fy of steps) for (const fx of steps) {
                if (Math.abs(fx - 0.5) + Math.abs(fy - 0.5) > 0.25) continue;  // inside any shape (diamond, star)
                const x = bb.x1 + fx * bb.w, y = bb.y1 + fy * bb.h;
                if (free(x, y)) return [x + c.left, y + c.top];
            }
            return null;
        }""",
        node_id,
    )


def scroll_to_graph(pg: Any) -> None:
    """Scroll the graph into view and let the page handle the scroll event (two animation frames):
    Cytoscape maps a click through the container position it caches until a scroll event arrives."""
    pg.evaluate(
        """() => new Promise((done) => { document.getElementById('graph').scrollIntoView();
              requestAnimationFrame(() => requestAnimationFrame(done)); })"""
    )


def first_visible(pg: Any, node_ids: list[str]) -> tuple[str, tuple[float, float]]:
    for nid in node_ids:
        pt = node_point(pg, nid)
        if pt is not None:
            return nid, pt
    raise AssertionError(f"every one of {node_ids} is covered by other nodes")


@pytest.mark.tools
def test_report_renders_and_works_in_chromium(browser: Any, tmp_path: Path) -> None:
    doc = load(FIXTURE)
    page = Page(browser, write(tmp_path, "report.html", doc, actor="FIN7"))
    pg = page.page
    from playwright.sync_api import expect

    try:
        # graph: one node per cluster, member, seed, new host and victim (never-seen seeds and victims
        # once their toggles show them)
        ips = {m for c in doc["clusters"] for m in c["members"]} | {s["ip"] for s in doc["seeds"]}
        ips |= {e["ip"] for e in doc["expansion"]} | {v["ip"] for v in doc["victims"]}
        pg.locator("#show-unseen").check()
        pg.locator("#show-victims").check()
        assert pg.evaluate("window.fpCy.nodes().length") == len(doc["clusters"]) + len(ips)
        assert pg.evaluate("window.fpCy.edges().length") > 0
        assert pg.locator("#cy canvas").count() >= 1
        # timeline: both charts drawn with data; dark seeds marked
        assert pg.evaluate("Chart.getChart('tl-clusters').data.datasets.length") == len(doc["clusters"])
        assert pg.evaluate("Chart.getChart('tl-seeds').data.datasets.reduce((n, d) => n + d.data.length, 0)") > 0
        n_dark = sum(s["status"] == "dark" for s in doc["seeds"])
        assert pg.evaluate("Chart.getChart('tl-seeds').options.plugins.darkMarks.points.length") == n_dark
        # tables have rows, with defanged addresses and copy buttons
        assert pg.locator("#clusters-table tbody tr").count() == len(doc["clusters"])
        n_hosts = len({m for c in doc["clusters"] for m in c["members"]}) + len(doc["expansion"]) + len(doc["seeds"])
        assert pg.locator("#hosts-table tbody tr").count() == n_hosts
        assert pg.locator("#hosts-table button.copy").count() == n_hosts
        first_ip = pg.locator("#hosts-table tbody tr td[data-ip]").first.get_attribute("data-ip")
        assert "[.]" in first_ip or "[:]" in first_ip
        # sorting: the Flows column, both ways
        flows_col = [h.inner_text().strip() for h in pg.locator("#clusters-table thead th").all()].index("Flows")
        header = pg.locator("#clusters-table thead th").nth(flows_col).locator("button")

        def flows() -> list[float]:
            cells = pg.locator(f"#clusters-table tbody tr td:nth-child({flows_col + 1})")
            return [float(c.get_attribute("data-v")) for c in cells.all()]

        header.click()
        assert flows() == sorted(c["flows"] for c in doc["clusters"])
        header.click()
        assert flows() == sorted((c["flows"] for c in doc["clusters"]), reverse=True)
        # clicking a cluster node in the graph shows its details
        scroll_to_graph(pg)
        order = [doc["clusters"][1], doc["clusters"][0]]
        nid, (x, y) = first_visible(pg, [f"cluster:{c['id']}" for c in order])
        c2 = next(c for c in order if nid == f"cluster:{c['id']}")
        pg.mouse.click(x, y)
        details = pg.locator("#details")
        assert details.get_attribute("data-id") == c2["id"]
        text = details.inner_text()
        provider = c2["allocations"][0]["org_name"]
        assert provider in text and all(defang(m) in text for m in c2["members"])
        assert "...AP.SF" in text
        # and so does clicking a row of the cluster table
        pg.locator("#clusters-table tbody tr[data-cluster='C1']").click()
        assert details.get_attribute("data-id") == "C1" and "Post Ltd" in details.inner_text()
        # hovering a node shows a tooltip
        scroll_to_graph(pg)
        hosts = [e["ip"] for e in doc["expansion"]] + [m for c in doc["clusters"] for m in c["members"]]
        nid, (x, y) = first_visible(pg, [f"ip:{ip}" for ip in hosts])
        pg.mouse.move(x, y)
        pg.wait_for_selector("#tooltip", state="visible")
        assert defang(nid.removeprefix("ip:")) in pg.locator("#tooltip").inner_text()
        # copy button puts the defanged address on the clipboard
        btn = pg.locator("#hosts-table tbody tr button.copy").first
        btn.click()
        # (polled through the locator: a string predicate would be eval'd in the page, which the CSP forbids)
        expect(btn).to_have_attribute("data-copied", first_ip)
        assert pg.evaluate("navigator.clipboard.readText()") == first_ip
        # keep a picture of the top of the report
        pg.mouse.move(1, 1)
        pg.evaluate("window.scrollTo(0, 0)")
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        assert page.offsite() == [], page.offsite()
        assert page.problems == [] and page.dialogs == []
    finally:
        page.close()


@pytest.mark.tools
def test_hostile_values_show_as_text_in_chromium(browser: Any, tmp_path: Path) -> None:
    page = Page(browser, write(tmp_path, "hostile.html", load(HOSTILE), actor="<img src=x onerror=alert(8)>"))
    pg = page.page
    try:
        assert page.dialogs == [] and page.problems == [] and page.offsite() == []
        assert pg.locator("#clusters-table").get_by_text("<script>alert(1)</script>", exact=True).count() == 1
        assert pg.locator("img, iframe, svg").count() == 0
        assert pg.locator("script").count() == 4
        pg.locator("#clusters-table tbody tr[data-cluster='C1']").click()
        assert "<script>alert(1)</script>" in pg.locator("#details").inner_text()
        pg.locator("#clusters-table tbody tr[data-cluster='C2']").click()
        assert page.dialogs == [] and page.problems == []
    finally:
        page.close()


@pytest.mark.tools
def test_report_without_timeline_data_falls_back_to_spans(browser: Any, tmp_path: Path) -> None:
    doc = copy.deepcopy(load(FIXTURE))
    for c in doc["clusters"]:
        c.pop("timeline", None)
    for s in doc["seeds"]:
        s.pop("daily", None)
    doc.pop("provenance", None)
    doc["overlaps"] = []
    doc["victims"] = []
    page = Page(browser, write(tmp_path, "plain.html", doc))
    pg = page.page
    try:
        assert pg.evaluate("Chart.getChart('tl-clusters').config.type") == "bar"
        assert pg.evaluate("Chart.getChart('tl-seeds').config.type") == "bar"
        assert page.problems == [] and page.offsite() == []
        assert "Not recorded by the hunt." in pg.locator("#provenance").inner_text()
    finally:
        page.close()


# ---- what the tables and the evidence say (the values come from the fixture, by hand) --------------------


class _Cells(HTMLParser):
    """The text of every cell of every table, by table id: {id: [[cell text, ...] per body row]}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or "?"
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.tables[self._table].append([])
        elif tag == "td" and self._in_body:
            self._cell = []
        elif tag == "button" and self._cell is not None:
            self._cell.append("\0")  # a copy button's label is not the cell's value

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).split("\0")[0].strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def cells(html: str) -> dict[str, list[list[str]]]:
    p = _Cells()
    p.feed(html)
    return p.tables


def test_ports_have_no_thousands_separator_and_intervals_keep_their_precision() -> None:
    doc = copy.deepcopy(load(FIXTURE))
    doc["clusters"][0]["services"][0]["port"] = 8443
    doc["victims"][0]["port"] = 10443
    doc["victims"][0]["interval_s"] = 0.25
    doc["victims"][1]["interval_s"] = 12.34
    doc["probes"][0]["span_s"] = 0.004
    t = cells(render_html(doc, now=NOW))
    assert [r[1] for r in t["svc-C1"]] == ["8443", "443"]
    victims = {r[0]: r for r in t["victims-table"]}
    assert victims[defang(doc["victims"][0]["ip"])][3] == "10443"
    assert victims[defang(doc["victims"][0]["ip"])][9] == "0.25 s"
    assert victims[defang(doc["victims"][1]["ip"])][9] == "12.3 s"
    assert t["probes-table"][0][7] == "0.004 s"
    assert t["probes-table"][1][7] == "55.0 s"


def test_evidence_shows_score_values_not_the_formula_nor_json() -> None:
    doc = copy.deepcopy(load(FIXTURE))
    c = doc["clusters"][0]
    c["evidence"]["score"] = "specificity x share of member-seed pairs established x (1 - 2^-(seeds - 1))"
    c["evidence"]["initiator_pairs"] = {"members": 39, "seeds": 2}
    html = render_html(doc, now=NOW)
    article = html.split('id="ev-C1"', 1)[1].split("</article>", 1)[0]
    facts = dict(re.findall(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>", article))
    assert facts["score"] == "0.94"  # the cluster's score in the fixture
    assert facts["initiator pairs"] == "members 39; seeds 2"
    assert "specificity x share" not in html and "&#34;members&#34;" not in html
    data = json.loads(html.split('<script type="application/json" id="fp-data">', 1)[1].split("</script>", 1)[0])
    pane = dict(data["clusters"][0]["facts"])
    assert pane["score"] == "0.94" and pane["initiator pairs"] == "members 39; seeds 2"


def test_excluded_hosts_name_their_network_and_new_hosts_have_their_own_table() -> None:
    doc = copy.deepcopy(load(FIXTURE))
    doc["excluded"][2].update(asn=49870, as_name="Alsycon B.V.", country="NL")
    doc["excluded"].append({"ip": "192.168.1.107", "reason": "scanner", "detail": "14 distinct peers"})
    e = doc["expansion"][0]
    e["services"] = [{"proto": 6, "port": 8443, "flows": 12}]
    t = cells(render_html(doc, now=NOW))
    excluded = {r[0]: r for r in t["excluded-table"]}
    assert excluded[defang("185.224.128.17")][1] == "Alsycon B.V. (AS49870, NL)"
    assert excluded[defang("8.8.8.8")][1] == "unknown provider"  # global, but the fixture gives no AS
    assert excluded[defang("192.168.1.107")][1] == "private or reserved address"  # RFC 1918, no AS
    rows = {r[0]: r for r in t["new-hosts-table"]}
    assert len(t["new-hosts-table"]) == len(doc["expansion"])
    r = rows[defang(e["ip"])]
    assert r[4] == "tcp/8443 (12 flows)"
    assert (r[5], r[6]) == ("2024-04-07 04:48 UTC", "2024-04-28 10:46 UTC")  # the fixture's first/last seen

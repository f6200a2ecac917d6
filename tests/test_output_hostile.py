"""Outputs carry no hostile text: report addresses, spreadsheet cells, terminal text.

The hostile inputs are built from the real report fixture (``tests/fixtures/hunt_result.json``) and from a
store written with hand-made records:

- a hand-edited result whose addresses carry an IPv6 scope id that is a STIX clause
  (``fe80::6%' OR ipv4-addr:value = '8.8.8.8``) or terminal commands, and whose names, whois fields,
  comments, evidence and provenance carry ESC, BEL, backticks and bidi overrides;
- a store whose exporter names are terminal commands and spreadsheet formulas (``=cmd|' /C calc'!A0``),
  and whose end times lie outside any calendar (±2^62 ms, as stores written before the time checks may hold).

Oracles: stix2-patterns (the OASIS pattern grammar) parses every indicator's pattern back; markdown-it (a
CommonMark parser) reads the Markdown; Python's html.parser reads the HTML; Python's csv module reads the
CSV back; the expected values are the hand-made inputs.
"""

from __future__ import annotations

import copy
import csv
import io
import ipaddress
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from rich.console import Console
from stix2patterns.v21.pattern import Pattern
from stix2patterns.validator import run_validator
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.cli.hunt import print_summary
from flowpivot.report import (
    build_misp_event,
    build_stix_bundle,
    misp_json,
    read_result,
    render_abuse_letters,
    render_html,
    render_markdown,
    stix_json,
)
from flowpivot.report.text import canonical_ip, defang, md_code
from flowpivot.schema import from_output
from flowpivot.store import Store
from flowpivot.store.export import neutralise_csv, time_text
from flowpivot.textsafe import csv_cell, visible

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "hunt_result.json"
NOW = datetime(2024, 5, 2, 8, 0, tzinfo=UTC)

INJECTION = "fe80::6%' OR ipv4-addr:value = '8.8.8.8"
TERMINAL = "fe80::1%\x1b[2J\x07"
EVIL = "\x1b[2J\x1b]0;pwned\x07 ``x`` \u202eevil"
# every raw control a format must not carry: C0 but LF and TAB (JSON and scripts may have them), DEL, C1,
# and the bidi overrides
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _poison(o: Any, path: str = "") -> Any:
    """Append EVIL to every free-text string of the result (not addresses, times, ids or enums)."""
    if isinstance(o, dict):
        return {k: _poison(v, f"{path}.{k}") for k, v in o.items()}
    if isinstance(o, list):
        return [_poison(v, path) for v in o]
    if not isinstance(o, str) or path.endswith((".format", ".status", ".state", ".id", ".kind", ".reason")):
        return o
    try:
        ipaddress.ip_address(o)
        return o
    except ValueError:
        pass
    if re.match(r"\d{4}-\d\d-\d\d", o):
        return o
    return o + EVIL


def hostile_doc() -> dict[str, Any]:
    doc = _poison(json.loads(FIXTURE.read_text()))
    doc["clusters"][0]["members"] += [INJECTION, TERMINAL]
    doc["expansion"][0]["ip"] = INJECTION
    doc["victims"][0]["seeds"].append(TERMINAL)
    doc["clusters"][0]["evidence"]["links"] = [{"members": [INJECTION, doc["clusters"][0]["members"][0]]}]
    return doc


@pytest.fixture(scope="module")
def hostile() -> dict[str, Any]:
    return hostile_doc()


@pytest.fixture(scope="module")
def outputs(hostile: dict[str, Any]) -> dict[str, str]:
    rep = read_result(copy.deepcopy(hostile))
    out = {
        "html": render_html(rep, now=NOW),
        "md": render_markdown(rep, now=NOW),
        "stix": stix_json(build_stix_bundle(rep, now=NOW)),
        "misp": misp_json(build_misp_event(rep, now=NOW)),
    }
    out.update({f"abuse:{k}": v for k, v in render_abuse_letters(rep, now=NOW).items()})
    return out


# ---- report addresses ------------------------------------------------------------------------------------


def test_scope_ids_are_refused_with_the_field_path_and_the_rest_is_kept(hostile: dict[str, Any]) -> None:
    benign = read_result(json.loads(FIXTURE.read_text()))
    rep = read_result(copy.deepcopy(hostile))
    bad = {p.where: p.reason for p in rep.problems}
    n = len(benign.clusters[0].members)
    assert bad[f"clusters[0].members[{n}]"].startswith("IPv6 scope id refused")
    assert bad[f"clusters[0].members[{n + 1}]"].startswith("IPv6 scope id refused")
    assert bad["expansion[0].ip"].startswith("IPv6 scope id refused")
    assert any(w.startswith("victims[0].seeds[") for w in bad)
    # the good addresses around them are all kept
    assert rep.clusters[0].members == benign.clusters[0].members
    assert [e.ip for e in rep.expansion] == [e.ip for e in benign.expansion[1:]]
    assert rep.victims[0].seeds == benign.victims[0].seeds
    # the problem text itself carries no raw control character
    assert not any(RAW_CONTROL.search(str(p)) for p in rep.problems)


@pytest.mark.parametrize("value", ["fe80::1%eth0", INJECTION, TERMINAL, "1.2.3.4%x", "::ffff:1.2.3.4%1"])
def test_canonical_ip_refuses_scope_ids(value: str) -> None:
    with pytest.raises(ValueError):
        canonical_ip(value)


def test_canonical_ip_gives_the_canonical_text() -> None:
    assert canonical_ip(" 2001:DB8:0:0::1 ") == "2001:db8::1"
    assert canonical_ip("fe80::6") == "fe80::6"


def test_stix_patterns_parse_back_to_the_cluster_addresses_only(hostile: dict[str, Any]) -> None:
    rep = read_result(copy.deepcopy(hostile))
    bundle = json.loads(stix_json(build_stix_bundle(rep, now=NOW)))
    expected = {f"Hosts of cluster {c.id}": set(c.members) for c in rep.clusters}
    expected.update({f"New host {defang(e.ip)}": {e.ip} for e in rep.expansion})
    indicators = [o for o in bundle["objects"] if o["type"] == "indicator"]
    assert len(indicators) == len(rep.clusters) + len(rep.expansion)
    for ind in indicators:
        assert run_validator(ind["pattern"]) == [], ind["pattern"]
        comparisons = Pattern(ind["pattern"]).inspect().comparisons
        values = []
        for kind, terms in comparisons.items():
            assert kind in ("ipv4-addr", "ipv6-addr")
            for path, op, literal in terms:
                assert (path, op) == (["value"], "=")
                values.append(literal.strip("'"))
                assert ipaddress.ip_address(values[-1]).version == (6 if kind == "ipv6-addr" else 4)
        key = next(k for k in expected if ind["name"].startswith(k))
        assert sorted(values) == sorted(expected[key])  # one clause per address, no other clause
    assert "8.8.8.8" not in json.dumps(bundle) and "%" not in "".join(i["pattern"] for i in indicators)


def test_no_format_carries_a_raw_control_character(outputs: dict[str, str]) -> None:
    assert len(outputs) >= 5
    for kind, text in outputs.items():
        m = RAW_CONTROL.search(text)
        assert m is None, f"{kind}: raw {m.group()!r} at {m.start()}"
    # ... and what was there is shown: the analyst sees that the value held ESC
    assert "\\x1b[2J" in outputs["html"]
    assert "\\x1b[2J" in MarkdownIt("commonmark").render(outputs["md"])
    assert any("\\x1b[2J" in v for k, v in outputs.items() if k.startswith("abuse:"))


def test_markdown_has_no_markup_from_values_and_code_spans_hold_addresses_only(outputs: dict[str, str]) -> None:
    tokens = MarkdownIt("commonmark").enable("table").parse(outputs["md"])
    inline = [c for t in tokens if t.children for c in t.children]
    kinds = {t.type for t in tokens} | {c.type for c in inline}
    assert not kinds & {"html_block", "html_inline", "link_open", "image"}
    assert "table_open" in kinds
    defanged = re.compile(r"^[0-9a-f\[\]:.]+$")
    for c in inline:
        if c.type == "code_inline":
            if c.content in ("[.]", ".", "[:]", ":"):  # the line that explains defanging
                continue
            assert defanged.match(c.content) or c.content.startswith("FP-"), c.content
            if defanged.match(c.content):
                canonical_ip(c.content.replace("[.]", ".").replace("[:]", ":"))
    # every table row keeps the header's number of cells
    rows: list[int] = []
    for t in tokens:
        if t.type == "tr_open":
            rows.append(0)
        elif t.type in ("th_open", "td_open"):
            rows[-1] += 1
        elif t.type == "table_close":
            assert len(set(rows)) == 1, rows
            rows = []


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.scripts = 0
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "script":
            self.scripts += 1
        for name, _ in attrs:
            assert not name.startswith("on"), f"event handler attribute {name} on <{tag}>"
        if tag not in ("meta", "br", "hr", "img", "input", "link"):
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if not self._in or self._in[-1] not in ("script", "style"):
            self.text.append(data)


def test_html_values_stay_text(outputs: dict[str, str]) -> None:
    benign = render_html(read_result(json.loads(FIXTURE.read_text())), now=NOW)
    page, twin = _Page(), _Page()
    page.feed(outputs["html"])
    twin.feed(benign)
    assert page.scripts == twin.scripts == 4  # the data block and the three inlined scripts
    assert set(page.tags) == set(twin.tags)  # no element the benign page does not have
    text = "".join(page.text)
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in text  # the poisoned names are shown, escapes visible
    assert "``x``" in text
    assert not RAW_CONTROL.search(text)


def test_markdown_code_spans_hold_any_backticks() -> None:
    md = MarkdownIt("commonmark")
    for s in ["a`b", "``x", "x`", "`", "plain", "a``b```c"]:
        tokens = md.parseInline(md_code(s))[0].children or []
        assert [t.type for t in tokens] == ["code_inline"], s
        assert tokens[0].content == s


def test_cli_report_warns_by_default_and_strict_refuses(tmp_path: Path, hostile: dict[str, Any]) -> None:
    src = tmp_path / "result.json"
    src.write_text(json.dumps(hostile))
    runner = CliRunner()
    r = runner.invoke(app, ["report", str(src), "--md", str(tmp_path / "r.md"), "--stix", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert "clusters[0].members[4]: IPv6 scope id refused" in r.output
    assert not RAW_CONTROL.search(r.output)
    assert (tmp_path / "r.md").exists() and (tmp_path / "s.json").exists()
    r = runner.invoke(app, ["report", str(src), "--md", str(tmp_path / "strict.md"), "--strict"])
    assert r.exit_code == 2
    assert "--strict" in r.output and not (tmp_path / "strict.md").exists()


def test_hunt_summary_shows_controls_visibly(hostile: dict[str, Any]) -> None:
    doc = copy.deepcopy(hostile)
    doc["clusters"][0]["as_name"] = "[bold]x[/] \x1b]0;title\x07"
    buf = io.StringIO()
    print_summary(doc, Console(file=buf, width=200, color_system=None))
    text = buf.getvalue()
    assert not RAW_CONTROL.search(text)
    assert "\\x1b]0;title\\x07" in text and "[bold]x[/]" in text


# ---- spreadsheet cells and terminal text from the store ------------------------------------------------

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
EXPORTERS = ["\x1b[2J\x1b]0;owned\x07", "=cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "+1", "-5", "plain"]
ENDS = [T0 + 500, 2**62, T0 + 2500, -(2**62), T0 + 4500, T0 + 5500, T0 + 6500]


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    n = len(EXPORTERS)
    t = pa.table(
        {
            "start": pa.array([T0 + 1000 * i for i in range(n)], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "end": pa.array(ENDS, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "src_addr": [f"192.0.2.{i + 1}" for i in range(n)],
            "dst_addr": ["198.51.100.1"] * n,
            "dst_port": pa.array([22] * n, pa.uint16()),
            "exporter": EXPORTERS,
            "conn_state": ["SF", "\tS0", None, "\rREJ", "SF", "SF", "SF"],
        }
    )
    # written as a store from before the time checks: no check_times on this path
    Store(root).write(pa.Table.from_batches([from_output(t)]), key="hostile")
    return root


def _flows(store: Path, *args: str) -> str:
    r = CliRunner().invoke(app, ["flows", "--store", str(store), *args])
    assert r.exit_code == 0, r.output
    return r.stdout


def test_flows_csv_neutralises_formulas_and_keeps_out_of_range_times(hostile_store: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_flows(hostile_store, "--output", "csv"))))
    assert len(rows) == len(EXPORTERS)  # the whole store, not an error
    assert [r["exporter"] for r in rows] == [
        "\\x1b[2J\\x1b]0;owned\\x07",
        "'=cmd|' /C calc'!A0",
        "'@SUM(1+1)",
        "'-2+3",
        "+1",  # plain numbers are numbers in a spreadsheet too
        "-5",
        "plain",
    ]
    assert [r["conn_state"] for r in rows] == ["SF", "\\tS0", "", "\\rREJ", "SF", "SF", "SF"]
    assert rows[0]["end"] == "2024-05-01T00:00:00.500Z"
    assert rows[1]["end"] == str(2**62) and rows[3]["end"] == str(-(2**62))
    assert rows[1]["start"] == "2024-05-01T00:00:01.000Z"
    for r in rows:  # no cell a spreadsheet would run
        for v in r.values():
            assert not v or v[0] not in "=@\t\r" and (v[0] not in "+-" or re.fullmatch(r"[+-]\d+", v)), v


def test_flows_csv_raw_keeps_the_cells(hostile_store: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_flows(hostile_store, "--output", "csv", "--raw"))))
    assert [r["exporter"] for r in rows] == EXPORTERS
    assert rows[3]["conn_state"] == "\rREJ"


def test_flows_filters_and_jsonl_on_a_store_duckdb_cannot_read(hostile_store: Path) -> None:
    lines = [json.loads(x) for x in _flows(hostile_store, "--output", "jsonl", "--ip", "192.0.2.2").splitlines()]
    assert len(lines) == 1 and lines[0]["exporter"] == EXPORTERS[1] and lines[0]["end"] == str(2**62)
    since = _flows(hostile_store, "--output", "jsonl", "--since", "2024-05-01T00:00:04Z", "--limit", "2")
    got = [json.loads(x)["src_addr"] for x in since.splitlines()]
    # end >= since: rows 1 (end 2^62), 4 and 5 (ends at +4.5 s and +5.5 s); ordered by start, first two
    assert got == ["192.0.2.2", "192.0.2.5"]


def test_stats_shows_exporter_names_visibly(hostile_store: Path) -> None:
    r = CliRunner().invoke(app, ["stats", "--store", str(hostile_store)])
    assert r.exit_code == 0, r.output
    assert not RAW_CONTROL.search(r.stdout)
    assert "\\x1b[2J\\x1b]0;owned\\x07" in r.stdout
    assert f"{len(EXPORTERS)} flows" in r.stdout


def test_time_text_writes_iso_or_the_raw_number() -> None:
    got = time_text(pa.array([0, 253_402_300_799_999, 253_402_300_800_000, None, -1], pa.int64())).to_pylist()
    assert got == [
        "1970-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
        "253402300800000",
        None,
        "1969-12-31T23:59:59.999Z",
    ]


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-5", "-5"),
        ("+3.25e2", "+3.25e2"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_csv_cell_follows_owasp(cell: str, safe: str) -> None:
    assert csv_cell(cell) == safe
    assert csv_cell(cell, raw=True) == cell


@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), min_size=1, max_size=20))
def test_vectorised_csv_rule_matches_the_cell_rule(cells: list[str | None]) -> None:
    t = neutralise_csv(pa.table({"c": pa.array(cells, pa.string())}))
    assert t.column("c").to_pylist() == [None if c is None else csv_cell(visible(c)) for c in cells]


def test_visible() -> None:
    assert visible("a\x1b[2Jb\x07\x9b\u202e\n\t") == "a\\x1b[2Jb\\x07\\x9b\\u202e\\n\\t"
    assert visible("line\nline", keep="\n") == "line\nline"
    assert visible("Zürich ünïcode") == "Zürich ünïcode"
    assert visible(None) == ""


# ---- STIX patterns read back with the grammar (seeds) ------------------------------------------------------


def test_seed_patterns_are_read_with_the_stix_grammar(tmp_path: Path) -> None:
    import stix2

    from flowpivot.hunt.seeds import read_seeds, stix_pattern_addresses

    assert stix_pattern_addresses("[ipv4-addr:value IN ('192.0.2.1', '192.0.2.2')]") == ["192.0.2.1", "192.0.2.2"]
    assert stix_pattern_addresses("[ipv4-addr:value != '192.0.2.9' AND ipv4-addr:value NOT = '192.0.2.8']") == []
    assert stix_pattern_addresses("[network-traffic:dst_ref.value ISSUBSET '198.51.100.0/30'] WITHIN 5 SECONDS") == [
        "198.51.100.0/30"
    ]
    with pytest.raises(ValueError, match="1:"):
        stix_pattern_addresses("[ipv4-addr:value = '192.0.2.1'")
    # a bundle with a broken pattern between two good ones: a problem with its place, the others kept
    good = [
        stix2.Indicator(pattern=f"[ipv4-addr:value = '192.0.2.{i}']", pattern_type="stix", valid_from=NOW)
        for i in (1, 2)
    ]
    objs = [json.loads(good[0].serialize()), {**json.loads(good[1].serialize()), "id": "indicator--x"}]
    objs.insert(1, {**objs[0], "id": "indicator--broken", "pattern": "[ipv4-addr:value = '192.0.2.3'"})
    p = tmp_path / "bundle.json"
    p.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": objs}))
    s = read_seeds(p)
    assert sorted(s.ips()) == ["192.0.2.1", "192.0.2.2"]
    assert [(x.where, x.reason.split(":")[0]) for x in s.problems] == [
        ("object 1 (indicator--broken)", "not a STIX 2.1 pattern")
    ]


def test_the_reports_own_bundle_reads_back_as_its_addresses(tmp_path: Path, hostile: dict[str, Any]) -> None:
    from flowpivot.hunt.seeds import read_seeds

    rep = read_result(copy.deepcopy(hostile))
    p = tmp_path / "bundle.json"
    p.write_text(stix_json(build_stix_bundle(rep, now=NOW)))
    got = set(read_seeds(p).ips())
    want = {ip for c in rep.clusters for ip in c.members + c.seeds} | {e.ip for e in rep.expansion}
    want |= {s.ip for s in rep.seeds}
    assert got == want


def test_an_actor_name_from_the_caller_carries_no_control_either() -> None:
    doc = json.loads(FIXTURE.read_text())
    actor = "FIN\x1b[2J7"
    texts = [render_markdown(doc, now=NOW, actor=actor), render_html(doc, now=NOW, actor=actor)]
    texts += list(render_abuse_letters(doc, now=NOW, actor=actor).values())
    for text in texts:
        assert not RAW_CONTROL.search(text)
    assert "FIN\\x1b[2J7" in texts[1]


# ---- the Arrow path agrees with DuckDB's on a store both can read -----------------------------------------


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plain")
    n = 60
    t = pa.table(
        {
            "start": pa.array([T0 + 3_600_000 * 13 * i for i in range(n)], pa.int64()).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            "end": pa.array([T0 + 3_600_000 * 13 * i + 7_000 * (i % 5) for i in range(n)], pa.int64()).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            "src_addr": [f"192.0.2.{i % 7}" if i % 3 else f"2001:db8::{i % 4}" for i in range(n)],
            "dst_addr": [f"198.51.100.{i % 5}" for i in range(n)],
            "src_port": pa.array([40000 + i for i in range(n)], pa.uint16()),
            "dst_port": pa.array([(22, 443, 53)[i % 3] for i in range(n)], pa.uint16()),
            "sampling_rate": pa.array([(1, 1000)[i % 2] for i in range(n)], pa.uint32()),
            "exporter": [f"192.0.2.25{i % 3}" for i in range(n)],
        }
    )
    st = Store(root)
    st.write(pa.Table.from_batches([from_output(t.slice(0, 25))]), key="a")
    st.write(pa.Table.from_batches([from_output(t.slice(25))]), key="b")
    return root


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"ip": "192.0.2.0/30"},
        {"ip": "2001:db8::2"},
        {"port": 443, "limit": 5},
        {"since": T0 + 86_400_000 * 3, "until": T0 + 86_400_000 * 20},
    ],
)
def test_reading_file_by_file_gives_what_duckdb_gives(plain_store: Path, filters: dict[str, Any]) -> None:
    from flowpivot.store.export import _read_by_file

    st = Store(plain_store)
    want = st.query(**filters)
    got = _read_by_file(st, *(filters.get(k) for k in ("since", "until", "ip", "port", "limit")))
    assert want.num_rows > 0
    assert got.equals(want)


def test_stats_by_file_gives_what_duckdb_gives(plain_store: Path) -> None:
    from flowpivot.store.export import _stats_by_file

    st = Store(plain_store)
    want, got = st.stats(), _stats_by_file(st)
    key = lambda r: sorted(r.items())  # noqa: E731
    for k in ("exporters", "sampling_rates", "days"):
        assert sorted(got.pop(k), key=key) == sorted(want.pop(k), key=key), k
    assert got == want

"""Markdown summary and abuse letters: golden files (frozen clock and ids), hostile values, bad input.

Regenerate the golden files after an intended change with FLOWPIVOT_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import copy
import json
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.report import (
    read_result,
    render_abuse_letters,
    render_markdown,
    write_reports,
)
from flowpivot.report.text import clean, defang, md

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "hunt_result.json"
HOSTILE = HERE / "fixtures" / "hunt_result_hostile.json"
GOLDEN = HERE / "golden"
NOW = datetime(2024, 5, 2, 8, 0, tzinfo=UTC)
NS = uuid.UUID("00000000-0000-4000-8000-00000000f1f7")
UPDATE = os.environ.get("FLOWPIVOT_UPDATE_GOLDEN") == "1"
IPV4 = re.compile(r"(?<![\d.\[])(?:\d{1,3}\.){3}\d{1,3}(?![\d\]])")


def load(p: Path) -> dict:
    return json.loads(p.read_text())


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"golden file {path} missing; run with FLOWPIVOT_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


# ---- golden files ----------------------------------------------------------------------------------


def test_markdown_golden() -> None:
    golden("report.md", render_markdown(load(FIXTURE), tlp="amber", actor="FIN7", now=NOW, namespace=NS))


def test_markdown_hostile_golden() -> None:
    golden("hostile/report.md", render_markdown(load(HOSTILE), tlp="red", now=NOW, namespace=NS))


def test_abuse_letters_golden() -> None:
    letters = render_abuse_letters(
        load(FIXTURE), tlp="amber", actor="FIN7", now=NOW, namespace=NS, reporter="CERT Example"
    )
    assert sorted(letters) == ["AS12494", "AS62212"]
    for key, text in letters.items():
        golden(f"abuse/abuse-{key}.txt", text)


def test_abuse_letters_hostile_golden() -> None:
    for key, text in render_abuse_letters(load(HOSTILE), tlp="amber", now=NOW, namespace=NS).items():
        golden(f"hostile/abuse-{key}.txt", text)


def test_frozen_clock_and_ids_make_identical_output_and_a_new_clock_a_new_reference() -> None:
    doc = load(FIXTURE)
    a = render_markdown(doc, now=NOW, namespace=NS)
    assert a == render_markdown(copy.deepcopy(doc), now=NOW, namespace=NS)
    b = render_markdown(doc, now=datetime(2024, 5, 3, tzinfo=UTC), namespace=NS)
    ref = re.compile(r"reference `(FP-[0-9A-F]{10})`")
    assert ref.search(a).group(1) != ref.search(b).group(1)


# ---- Markdown content, read back through a CommonMark parser ----------------------------------------


def _tokens(text: str) -> list:
    return MarkdownIt("commonmark").enable("table").parse(text)


def _flat(tokens: list) -> list:
    out = []
    for t in tokens:
        out.append(t)
        out.extend(_flat(t.children or []))
    return out


def test_markdown_says_what_the_hunt_found() -> None:
    doc = load(FIXTURE)
    text = render_markdown(doc, tlp="amber", now=NOW)
    summary = text.split("## Summary", 1)[1].split("##", 1)[0]
    # the threat-report sentence, with numbers taken from the fixture
    c1, c2 = doc["clusters"]
    shared = len(set(c1["seeds"]) & set(c2["seeds"]))
    assert (
        f"{len(c1['members'])} IPs assigned to Post Ltd (AS12494, RU) established connections with "
        f"{len(c1['seeds'])} seed hosts over 30 days; {len(c2['members'])} IPs at SmartApe OU (AS62212, EE) "
        f"with {len(c2['seeds'])}; {shared} seed hosts were seen in both clusters." in summary
    )
    dark = [s for s in doc["seeds"] if s["status"] == "dark"]
    assert f"{len(dark)} at STARK-INDUSTRIES (AS44477) went dark" in summary
    assert "**TLP:AMBER**" in text
    # every address appears defanged and none in clear, whois ranges included
    for ip in c1["members"] + c2["members"] + [e["ip"] for e in doc["expansion"]]:
        assert defang(ip) in text
    # (the provenance section names the user's own exporters, which are not indicators)
    assert not IPV4.findall(text.split("## Parameters and provenance")[0])


def test_markdown_tables_keep_their_shape_and_hostile_values_stay_text() -> None:
    doc = load(HOSTILE)
    text = render_markdown(doc, now=NOW, actor="<b>FIN7</b>")
    toks = _flat(_tokens(text))
    kinds = {t.type for t in toks}
    assert "html_inline" not in kinds and "html_block" not in kinds  # no raw HTML got through
    assert "link_open" not in kinds and "image" not in kinds  # no link or image was made from a value
    assert not any(t.type == "heading_open" and t.tag == "h1" for t in toks[1:])  # only the title is h1
    # every table row has as many cells as its header
    html = MarkdownIt("commonmark").enable("table").render(text)
    for table in re.findall(r"<table>.*?</table>", html, flags=re.S):
        head = len(re.findall(r"<th[\s>]", table.split("</thead>")[0]))
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], flags=re.S):
            assert len(re.findall(r"<td", row)) == head
    # the hostile AS name is shown, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html and "<img" not in html and "<iframe" not in html


def test_hostile_clean_and_md_helpers() -> None:
    assert clean("a\r\nBcc: x\x1b[31m\u202e") == "a\\r\\nBcc: x\\x1b[31m\\u202e"
    assert clean(None) is None
    assert md("<b>|x|</b>") == "\\<b\\>\\|x\\|\\</b\\>"
    assert defang("2001:db8::1") == "2001[:]db8[:][:]1"
    assert defang("192.0.2.1") == "192[.]0[.]2[.]1"


# ---- abuse letters ----------------------------------------------------------------------------------


def test_abuse_letter_lists_hosts_evidence_window_and_contact() -> None:
    doc = load(FIXTURE)
    letters = render_abuse_letters(doc, tlp="amber", now=NOW)
    post = letters["AS12494"]
    c1 = doc["clusters"][0]
    assert post.startswith(f"To: {c1['allocations'][0]['abuse_mailbox']}\n")
    for ip in c1["members"] + c1["seeds"]:
        assert defang(ip) in post
    for e in doc["expansion"]:
        if e["asn"] == 12494:
            assert defang(e["ip"]) in post
    assert "2024-04-01 00:00 UTC to 2024-05-01 00:00 UTC" in post
    assert "tcp/22 (1,844 flows)" in post and "...AP.SF" in post
    assert "TLP:AMBER" in post
    assert not IPV4.findall(post)  # nothing in clear, whois ranges included
    # victims are never reported to a provider
    for v in doc["victims"]:
        assert defang(v["ip"]) not in "".join(letters.values())


def test_hostile_whois_cannot_add_mail_headers() -> None:
    letters = render_abuse_letters(load(HOSTILE), now=NOW)
    post = letters["AS12494"]
    header = post.split("\n\n", 1)[0].splitlines()
    assert [h.split(":", 1)[0] for h in header] == ["To", "Subject", "Date", "Our reference"]
    # the hostile abuse-mailbox (with CR LF Bcc) is refused; the next whois object's one is used
    assert header[0] == "To: abuse@postltd.example"
    assert not any(line.startswith("Bcc") for line in post.splitlines())
    assert "\x1b" not in post and "\r" not in post


def test_provider_without_whois_contact_says_where_to_look() -> None:
    doc = load(FIXTURE)
    for c in doc["clusters"]:
        c["allocations"] = []
        c["allocation"] = None
    text = render_abuse_letters(doc, now=NOW)["AS62212"]
    assert text.startswith("To: (no abuse contact in the whois data; look up the abuse-c of AS62212")


def test_dark_seeds_and_small_clusters_get_no_letter() -> None:
    doc = load(FIXTURE)
    doc["clusters"].append(
        {
            "id": "C3",
            "asn": 7922,
            "as_name": "COMCAST-7922",
            "country": "US",
            "members": ["198.51.100.200"],
            "seeds": doc["clusters"][0]["seeds"][:2],
            "established": True,
        }
    )
    letters = render_abuse_letters(doc, now=NOW)
    assert "AS7922" not in letters  # one host: below the hunt's min_members
    assert "AS44477" not in letters  # every Stark seed is dark
    doc["seeds"][0]["status"] = "active"
    assert "AS44477" in render_abuse_letters(doc, now=NOW)


# ---- bad input ----------------------------------------------------------------------------------------


def test_bad_entries_are_counted_with_their_place_and_the_rest_kept() -> None:
    doc = load(FIXTURE)
    doc["clusters"][0]["members"].append("not-an-ip")
    doc["seeds"][3]["first_seen"] = "yesterday"
    doc["expansion"].append({"ip": 12})
    doc["victims"].append("oops")
    rep = read_result(doc)
    where = {p.where for p in rep.problems}
    assert {"clusters[0].members[4]", "seeds[3].first_seen", "expansion[5].ip", "victims[4]"} <= where
    assert len(rep.clusters[0].members) == 4 and len(rep.expansion) == 5 and len(rep.seeds) == len(doc["seeds"])
    assert "could not be read" in render_markdown(rep, now=NOW)


def test_cli_writes_every_format_and_rejects_a_bad_file(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app,
        [
            "report",
            str(FIXTURE),
            "--html",
            str(tmp_path / "r.html"),
            "--md",
            str(tmp_path / "r.md"),
            "--stix",
            str(tmp_path / "s.json"),
            "--misp",
            str(tmp_path / "m.json"),
            "--abuse",
            str(tmp_path / "abuse"),
            "--tlp",
            "green",
            "--actor",
            "FIN7",
        ],
    )
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "abuse").iterdir()) == ["abuse-AS12494.txt", "abuse-AS62212.txt"]
    assert "**TLP:GREEN**" in (tmp_path / "r.md").read_text()
    assert json.loads((tmp_path / "s.json").read_text())["type"] == "bundle"
    (tmp_path / "bad.json").write_text('{"format": "something-else"}')
    r = CliRunner().invoke(app, ["report", str(tmp_path / "bad.json"), "--md", str(tmp_path / "x.md")])
    assert r.exit_code == 2 and "flowpivot-hunt/1" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["report", str(FIXTURE), "--tlp", "clear"])  # no output option: Markdown on stdout
    assert r.exit_code == 0 and r.stdout.startswith("# flowpivot hunt report") and "**TLP:CLEAR**" in r.stdout
    r = CliRunner().invoke(app, ["report", str(FIXTURE), "--tlp", "purple"])
    assert r.exit_code == 2 and "unknown TLP" in " ".join(r.output.split())


def test_write_reports_returns_each_path(tmp_path: Path) -> None:
    out = write_reports(load(FIXTURE), md=tmp_path / "a" / "r.md", abuse_dir=tmp_path / "ab", now=NOW)
    assert set(out) == {"md", "abuse:AS12494", "abuse:AS62212"}
    assert all(p.exists() for p in out.values())
    with pytest.raises(ValueError, match="unknown TLP"):
        write_reports(load(FIXTURE), md=tmp_path / "r.md", tlp="white-ish")

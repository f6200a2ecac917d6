"""Actors attributed per seed set (--actor NAME=SET), and letters that claim no more than the flows show.

The fixture's seed sets: fin7-stark (21 Stark seeds), partner (the 4 seeds only cluster C2 contacted) and
maltrail-fin7 (two unseen seeds and one Stark seed also in fin7-stark). With FIN7=partner, FIN7 is
attributed C2, the new hosts found from C2, and nothing of C1.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_string
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.report import (
    Actor,
    build_misp_event,
    build_stix_bundle,
    parse_actors,
    read_result,
    render_abuse_letters,
    render_html,
    render_markdown,
    stix_json,
)
from flowpivot.report.attribution import attribute
from flowpivot.report.text import defang

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "hunt_result.json"
HOSTILE = HERE / "fixtures" / "hunt_result_hostile.json"
NOW = datetime(2024, 5, 2, 8, 0, tzinfo=UTC)
ACTIVE_WORDS = re.compile(r"\b(active|still active|live|still answer\w*)\b", re.I)


def load(p: Path = FIXTURE) -> dict:
    return json.loads(p.read_text())


def c2_side(doc: dict) -> tuple[set[str], set[str]]:
    """(C2's members, the new hosts found from C2) of the fixture."""
    c2 = next(c for c in doc["clusters"] if c["id"] == "C2")
    return set(c2["members"]), {e["ip"] for e in doc["expansion"] if "C2" in e["clusters"]}


# ---- parsing and the attribution itself ----------------------------------------------------------------


def test_actor_specs() -> None:
    assert parse_actors("FIN7") == [Actor("FIN7", None)]
    assert parse_actors(["FIN7=a,b", "FIN7=c", "APT29"]) == [Actor("FIN7", ("a", "b", "c")), Actor("APT29", None)]
    assert parse_actors(["FIN7=a", "FIN7"]) == [Actor("FIN7", None)]  # named once without sets: every set
    # what follows the last '=' must be set names; otherwise the whole text is the name
    assert parse_actors("<img src=x onerror=alert(8)>") == [Actor("<img src=x onerror=alert(8)>", None)]
    assert parse_actors("a=b=c") == [Actor("a=b", ("c",))]
    assert parse_actors(None) == [] and parse_actors([]) == []


def test_attribution_follows_the_seed_sets() -> None:
    doc = load()
    rep = read_result(doc)
    [a] = attribute(rep, parse_actors("FIN7=partner"))
    partner = {s["ip"] for s in doc["seeds"] if "partner" in s["sets"]}
    assert a.seeds == partner and len(partner) == 4
    assert a.clusters == {"C2"} and not a.complete
    members, new = c2_side(doc)
    assert a.members == members and a.expansion == new
    # a cluster is attributed when one of its seeds is in the sets: fin7-stark reaches both clusters
    [b] = attribute(rep, parse_actors("X=fin7-stark"))
    assert b.clusters == {"C1", "C2"} and not b.complete  # the partner and maltrail seeds are not its
    [everything] = attribute(rep, parse_actors("FIN7"))
    assert everything.complete and everything.seeds == {s["ip"] for s in doc["seeds"]}
    with pytest.raises(ValueError, match="no seed set 'nope'.*fin7-stark"):
        attribute(rep, parse_actors("FIN7=nope"))


def test_results_without_sets_take_the_seed_files_stem() -> None:
    doc = load()
    for s in doc["seeds"]:
        s.pop("sets")
        s["source"].pop("set")
    doc.pop("seed_input")
    rep = read_result(doc)
    assert set(rep.seed_sets) == {"fin7-stark", "partner-share", "fin7"}
    assert rep.seed_sets["partner-share"] == {"files": ["seeds/partner-share.csv"], "count": 4}
    [a] = attribute(rep, parse_actors("FIN7=partner-share"))
    assert a.clusters == {"C2"}


# ---- STIX -----------------------------------------------------------------------------------------------


def _rels(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["type"] == "relationship" and o["relationship_type"] == kind]


def test_stix_intrusion_set_only_for_the_actors_sets() -> None:
    doc = load()
    text = stix_json(build_stix_bundle(doc, actor=["FIN7=partner", "Stark=fin7-stark"], now=NOW))
    res = validate_string(text, ValidationOptions(version="2.1", strict=False))
    assert res.is_valid, [str(e) for e in res.errors]
    objs = json.loads(text)["objects"]
    by_id = {o["id"]: o for o in objs}
    sets = {o["name"]: o for o in objs if o["type"] == "intrusion-set"}
    assert set(sets) == {"FIN7", "Stark"}
    assert "partner" in sets["FIN7"]["description"]

    def used(actor: str) -> set[str]:
        return {by_id[r["target_ref"]]["name"] for r in _rels(objs, "uses") if r["source_ref"] == sets[actor]["id"]}

    def indicated(actor: str) -> set[str]:
        return {
            by_id[r["source_ref"]]["name"] for r in _rels(objs, "indicates") if r["target_ref"] == sets[actor]["id"]
        }

    _, new = c2_side(doc)
    fin7 = used("FIN7")
    assert any(n.endswith("cluster C2") for n in fin7) and not any(n.endswith("cluster C1") for n in fin7)
    assert {n for n in fin7 if n.startswith("New host")} == {f"New host {defang(ip)}" + _as(doc, ip) for ip in new}
    assert indicated("FIN7") == {"Hosts of cluster C2 at SmartApe OU (AS62212, EE)"} | {
        f"New host {defang(ip)}" for ip in new
    }
    # the other set's actor gets both clusters (fin7-stark seeds are in each) and every new host
    assert sum(n.startswith("New host") for n in used("Stark")) == len(doc["expansion"])
    # no relationship of an actor points anywhere else
    for r in objs:
        if r["type"] == "relationship" and sets["FIN7"]["id"] in (r["source_ref"], r["target_ref"]):
            assert r["relationship_type"] in ("uses", "indicates")


def _as(doc: dict, ip: str) -> str:
    e = next(e for e in doc["expansion"] if e["ip"] == ip)
    return f" (AS{e['asn']})" if e["asn"] is not None else " (unknown AS)"


def test_stix_actor_without_sets_uses_everything_as_before() -> None:
    doc = load()
    objs = json.loads(stix_json(build_stix_bundle(doc, actor="FIN7", now=NOW)))["objects"]
    [iset] = [o for o in objs if o["type"] == "intrusion-set"]
    uses = [r for r in _rels(objs, "uses") if r["source_ref"] == iset["id"]]
    assert len(uses) == len(doc["clusters"]) + len(doc["expansion"])


# ---- MISP -----------------------------------------------------------------------------------------------


def _tagged(ev: MISPEvent, tag: str) -> set[str]:
    return {a.value for o in ev.objects for a in o.attributes if tag in {t.name for t in a.tags}}


def test_misp_tags_only_the_actors_attributes() -> None:
    doc = load()
    ev = build_misp_event(doc, actor="FIN7=partner", now=NOW)
    tag = 'misp-galaxy:threat-actor="FIN7"'
    assert tag not in {t.name for t in ev.tags}  # not everything is FIN7's: no event-level tag
    members, new = c2_side(doc)
    partner = {s["ip"] for s in doc["seeds"] if "partner" in s["sets"]}
    c1 = set(doc["clusters"][0]["members"])
    tagged = _tagged(ev, tag)
    assert members | new | partner <= tagged
    assert not tagged & c1  # C1 rests on other sets' seeds
    others = {s["ip"] for s in doc["seeds"]} - partner
    # a seed of another set is tagged only as the far end of one of FIN7's member-seed pairs: never here
    assert not tagged & others
    # it loads back
    again = MISPEvent()
    again.load(json.dumps({"Event": json.loads(ev.to_json())}))
    assert _tagged(again, tag) == tagged


def test_misp_event_tag_when_everything_is_attributed() -> None:
    ev = build_misp_event(load(), actor="FIN7", now=NOW)
    tag = 'misp-galaxy:threat-actor="FIN7"'
    assert tag in {t.name for t in ev.tags}
    assert not _tagged(ev, tag)  # the event's tag covers its attributes


# ---- Markdown and HTML ------------------------------------------------------------------------------------


def test_markdown_says_which_sets_each_actor_covers() -> None:
    text = render_markdown(load(), actor=["FIN7=partner", "APT-X"], now=NOW)
    assert "Actor: FIN7 (seed sets partner: 4 seeds, clusters C2, 3 new hosts)" in text
    assert "Actor: APT-X (every seed set: everything in this report)" in text
    summary = text.split("## Summary", 1)[1].split("## Clusters", 1)[0]
    assert "Infrastructure attributed to APT-X:" in summary
    assert "Attributed to FIN7 (seed sets partner): 4 seed hosts, 1 cluster (C2 at SmartApe OU" in summary
    c1 = text.split("### C1", 1)[1].split("### C2", 1)[0]
    c2 = text.split("### C2", 1)[1].split("## ", 1)[0]
    assert "- Attributed to: APT-X\n" in c1 and "- Attributed to: FIN7, APT-X\n" in c2
    sets = text.split("## Seed sets", 1)[1].split("## Seeds", 1)[0]
    assert "| partner | seeds/partner-share.csv | 4 | FIN7, APT-X |" in sets
    assert "| fin7-stark | seeds/fin7-stark.txt | 21 | APT-X |" in sets


def test_html_names_the_actor_with_its_sets() -> None:
    html = render_html(load(), actor="FIN7=partner", now=NOW)
    assert "actor <b>FIN7 (seed sets partner: 4 seeds, clusters C2, 3 new hosts)</b>" in html
    assert 'id="seed-sets-table"' in html and 'id="probes-table"' in html and 'id="near-misses-table"' in html


# ---- abuse letters ----------------------------------------------------------------------------------------


def _active(doc: dict, ip: str) -> None:
    s = next(s for s in doc["seeds"] if s["ip"] == ip)
    s.update(status="active", last_answered="2024-04-30T22:10:00Z", last_seen="2024-04-30T23:00:00Z")


def _block(letter: str, ip: str) -> str:
    """A host's entry in a letter: its line and the indented lines under it."""
    lines = letter.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.strip() == defang(ip))
    out = [lines[i]]
    for ln in lines[i + 1 :]:
        if not ln.startswith("      "):
            break
        out.append(ln)
    return "\n".join(out)


def test_letters_name_the_actor_only_for_hosts_of_its_sets() -> None:
    doc = load()
    letters = render_abuse_letters(doc, actor="FIN7=partner", now=NOW)
    assert "FIN7" not in letters["AS12494"]  # Post Ltd hosts C1, found from other sets' seeds only
    assert "public reporting attributes to FIN7" in letters["AS62212"]
    # a seed of another set still answering in the same provider as one of FIN7's: only FIN7's is named
    stark, partner = "86.104.74.54", "86.104.73.162"
    _active(doc, stark)
    _active(doc, partner)
    letter = render_abuse_letters(doc, actor="FIN7=partner", now=NOW)["AS44477"]
    assert "FIN7" not in letter.split("\n\n", 3)[2]  # the opening paragraph names no actor
    assert "FIN7" not in _block(letter, stark)
    assert "attributes to FIN7" in _block(letter, partner)
    # with FIN7 over every set the whole letter is FIN7's
    assert (
        "working with infrastructure that public reporting attributes to FIN7"
        in (render_abuse_letters(doc, actor="FIN7", now=NOW)["AS44477"])
    )


@pytest.mark.parametrize("fixture", [FIXTURE, HOSTILE])
def test_letters_never_call_a_dark_or_unanswered_seed_active(fixture: Path) -> None:
    doc = load(fixture)
    # the unanswered seed even claims a recent answer, and a dark seed a late one: the status decides
    for s in doc["seeds"]:
        if s["status"] in ("dark", "unanswered"):
            s["last_answered"] = "2024-04-30T23:30:00Z" if s["status"] == "unanswered" else s["last_answered"]
    # and C1's members also tried the unanswered seed, so its letter lists it among the servers contacted
    unanswered = next(s["ip"] for s in doc["seeds"] if s["status"] == "unanswered")
    doc["clusters"][0]["seeds"].append(unanswered)
    letters = render_abuse_letters(doc, actor="FIN7", now=NOW)
    assert defang(unanswered) in letters["AS12494"]
    quiet = [s for s in doc["seeds"] if s["status"] in ("dark", "unanswered")]
    assert quiet
    for text in letters.values():
        for s in quiet:
            for line in text.splitlines():
                if defang(s["ip"]) in line:
                    assert not ACTIVE_WORDS.search(line), line
                    want = "stopped answering at" if s["status"] == "dark" else "never answered in the window"
                    assert want in line, line
    assert "AS44477" not in letters  # no seed there answers: nothing to act on


def test_letters_show_each_hosts_evidence_and_an_answering_seed_as_active() -> None:
    doc = load()
    _active(doc, "86.104.74.54")
    letters = render_abuse_letters(doc, now=NOW)
    block = _block(letters["AS44477"], "86.104.74.54")
    assert "active: still answering at the end of the window (last answer 2024-04-30 22:10 UTC)" in block
    post = letters["AS12494"]
    m = "5.133.76.41"
    pairs = [p for p in doc["pairs"] if p["peer"] == m and p["established"]]
    assert (
        f"established sessions with {len({p['seed'] for p in pairs})} servers ({sum(p['flows'] for p in pairs):,} flows)"
        in _block(post, m)
    )
    assert "first seen 2024-04-01 02:14 UTC, last seen" in _block(post, m)
    # an old result (no last_answered): a dark seed went dark at its last flow, still never "active"
    old = load()
    for s in old["seeds"]:
        for k in ("last_answered", "unanswered_after", "answered_flows", "last_attempt"):
            s.pop(k, None)
    text = render_abuse_letters(old, now=NOW)["AS12494"]
    assert "went dark: no flow after 2024-04-28 09:19 UTC" in text
    assert not ACTIVE_WORDS.search(text)


def test_cli_report_takes_repeated_actors_and_rejects_an_unknown_set(tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    r = CliRunner().invoke(
        app, ["report", str(FIXTURE), "--md", str(out), "--actor", "FIN7=partner", "--actor", "Other=fin7-stark"]
    )
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "Actor: FIN7 (seed sets partner" in text and "Actor: Other (seed sets fin7-stark" in text
    r = CliRunner().invoke(app, ["report", str(FIXTURE), "--md", str(out), "--actor", "FIN7=nope"])
    assert r.exit_code == 2 and "no seed set 'nope'" in " ".join(r.output.split())


def test_a_result_without_the_new_keys_still_renders() -> None:
    doc = load()
    for k in ("probes", "near_misses", "near_misses_total", "seed_input"):
        doc.pop(k)
    for v in doc["victims"]:
        for k in ("state", "connections", "established_flows", "rejected_flows", "unanswered_flows"):
            v.pop(k)
    bare = copy.deepcopy(doc)
    rep = read_result(bare)
    assert rep.problems == [] and rep.probes == [] and rep.near_misses_total == 0
    text = render_markdown(bare, actor="FIN7", now=NOW)
    assert "## Probes" not in text and "## Near misses" not in text
    assert "| `198[.]51[.]100[.]23` |" in text


def test_a_new_hosts_letter_entry_shows_its_sessions_and_no_unknown_times() -> None:
    doc = load()
    e = doc["expansion"][0]
    e.pop("first_seen")
    e.pop("last_seen")
    e["evidence"] = {"established_with": 2, "p_value": 1e-9}
    block = _block(render_abuse_letters(doc, now=NOW)["AS12494"], e["ip"])
    assert "established sessions with 2 cluster hosts; confidence 0.82" in block
    assert "first seen" not in block and "–" not in block

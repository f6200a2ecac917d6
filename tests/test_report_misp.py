"""MISP event: pymisp loads it back (with MISP's own JSON schema check), objects, attributes and tags."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pymisp
import pytest
from pymisp import MISPEvent

from flowpivot.report import build_misp_event, write_reports

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "hunt_result.json"
HOSTILE = HERE / "fixtures" / "hunt_result_hostile.json"
NOW = datetime(2024, 5, 2, 8, 0, tzinfo=UTC)


def load(p: Path) -> dict:
    return json.loads(p.read_text())


# MISP's event JSON schema as pymisp ships it (the strict one predates objects; the lax one knows them)
SCHEMA = json.loads((Path(pymisp.__file__).parent / "data" / "schema-lax.json").read_text())


def written(doc: dict, tmp_path: Path, **kw) -> MISPEvent:
    path = write_reports(doc, misp=tmp_path / "event.json", now=NOW, **kw)["misp"]
    text = path.read_text()
    jsonschema.validate(json.loads(text), SCHEMA)
    ev = MISPEvent()
    ev.load(text)
    return ev


def test_event_loads_back_with_the_hunts_objects(tmp_path: Path) -> None:
    doc = load(FIXTURE)
    ev = written(doc, tmp_path, actor="FIN7")
    kinds = Counter(o.name for o in ev.objects)
    members = [m for c in doc["clusters"] for m in c["members"]]
    assert kinds["ip-port"] == len(members) + len(doc["expansion"]) + len(doc["seeds"])
    assert kinds["netflow"] == len(doc["pairs"])
    # the cluster members are flagged for detection (to_ids), dark seeds are not
    ids = {
        a.value
        for o in ev.objects
        if o.name == "ip-port"
        for a in o.attributes
        if a.object_relation == "ip" and a.to_ids
    }
    assert set(members) | {e["ip"] for e in doc["expansion"]} == ids
    # netflow objects carry the pair: source, destination, port, flags, flow count
    flows = [o for o in ev.objects if o.name == "netflow"]
    pairs = {(p["peer"], p["seed"]): p for p in doc["pairs"]}
    for o in flows:
        a = {x.object_relation: x.value for x in o.attributes}
        p = pairs[(a["ip-src"], a["ip-dst"])]
        assert int(a["dst-port"]) == p["services"][0]["port"]
        assert int(a["flow-count"]) == p["flows"]
        assert a["protocol"] == "TCP" and a["src-as"] == "AS" + str(
            next(c["asn"] for c in doc["clusters"] if p["peer"] in c["members"])
        )
    assert sorted(t.name for t in ev.tags) == sorted(["tlp:amber", "PAP:AMBER", 'misp-galaxy:threat-actor="FIN7"'])
    assert ev.distribution == 0
    # victims are not shared
    values = {a.value for o in ev.objects for a in o.attributes}
    assert not values & {v["ip"] for v in doc["victims"]}


@pytest.mark.parametrize(
    "tlp,tag,pap", [("clear", "tlp:clear", "PAP:CLEAR"), ("amber+strict", "tlp:amber+strict", "PAP:AMBER")]
)
def test_tlp_and_pap_tags(tmp_path: Path, tlp: str, tag: str, pap: str) -> None:
    ev = written(load(FIXTURE), tmp_path, tlp=tlp)
    assert {t.name for t in ev.tags} == {tag, pap}


def test_uuids_are_stable_for_the_same_hunt_and_clock() -> None:
    a = build_misp_event(load(FIXTURE), now=NOW)
    b = build_misp_event(load(FIXTURE), now=NOW)
    assert a.uuid == b.uuid
    assert [o.uuid for o in a.objects] == [o.uuid for o in b.objects]
    assert json.loads(a.to_json()) == json.loads(b.to_json())


def test_hostile_values_load_back_unchanged_as_text(tmp_path: Path) -> None:
    ev = written(load(HOSTILE), tmp_path, actor="<img src=x>")
    texts = [a.value for o in ev.objects for a in o.attributes if a.object_relation == "text"]
    assert any("</script><img src=x onerror=alert(2)>" in t for t in texts)
    assert 'misp-galaxy:threat-actor="<img src=x>"' in {t.name for t in ev.tags}


def test_actor_with_a_quote_keeps_the_machine_tag_well_formed() -> None:
    ev = build_misp_event(load(FIXTURE), now=NOW, actor='FIN7" or "x\r\n')
    tag = next(t.name for t in ev.tags if t.name.startswith("misp-galaxy:"))
    assert tag == "misp-galaxy:threat-actor=\"FIN7' or 'x\\r\\n\""
    assert tag.count('"') == 2

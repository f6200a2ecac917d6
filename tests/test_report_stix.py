"""STIX 2.1 bundle: the OASIS validator (stix2-validator) finds no error, stix2.parse round-trips it,
and the objects say what the hunt found."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import stix2
from stix2patterns.validator import run_validator
from stix2validator import ValidationOptions, validate_string

from flowpivot.report import build_stix_bundle, stix_json

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "hunt_result.json"
HOSTILE = HERE / "fixtures" / "hunt_result_hostile.json"
NOW = datetime(2024, 5, 2, 8, 0, tzinfo=UTC)
TLP_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
TLP_RED = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"


def load(p: Path) -> dict:
    return json.loads(p.read_text())


def bundle_json(doc: dict, **kw) -> str:
    kw.setdefault("now", NOW)
    return stix_json(build_stix_bundle(doc, **kw))


def validate(text: str):
    return validate_string(text, ValidationOptions(version="2.1", strict=False))


def test_validator_is_a_real_oracle() -> None:
    # Some stix2-validator wheels ship without their JSON schemas and then reject everything;
    # and a validator that accepts a broken indicator would prove nothing.
    text = bundle_json(load(FIXTURE))
    doc = json.loads(text)
    ind = next(o for o in doc["objects"] if o["type"] == "indicator")
    del ind["pattern"]
    assert not validate(json.dumps(doc)).is_valid


@pytest.mark.parametrize("fixture,actor", [(FIXTURE, "FIN7"), (FIXTURE, None), (HOSTILE, "<script>x</script>")])
def test_bundle_passes_the_oasis_validator_and_round_trips(fixture: Path, actor: str | None) -> None:
    text = bundle_json(load(fixture), actor=actor)
    res = validate(text)
    assert res.is_valid, [str(e) for e in res.errors]
    assert not res.errors
    parsed = stix2.parse(text, allow_custom=False)
    again = json.loads(parsed.serialize())
    assert {o["id"] for o in again["objects"]} == {o["id"] for o in json.loads(text)["objects"]}


def test_bundle_holds_what_the_hunt_found() -> None:
    doc = load(FIXTURE)
    objs = json.loads(bundle_json(doc, actor="FIN7"))["objects"]
    by_type = Counter(o["type"] for o in objs)
    by_id = {o["id"]: o for o in objs}
    # producer, actor, one infrastructure per cluster and per new host
    ident = [o for o in objs if o["type"] == "identity"]
    assert len(ident) == 1 and ident[0]["name"] == "flowpivot"
    assert [o["name"] for o in objs if o["type"] == "intrusion-set"] == ["FIN7"]
    infra = [o for o in objs if o["type"] == "infrastructure"]
    assert len(infra) == len(doc["clusters"]) + len(doc["expansion"])
    assert sum(o["infrastructure_types"] == ["command-and-control"] for o in infra) == len(doc["clusters"])
    # every member, seed and new host as an address object; the IPv6 new host as ipv6-addr
    values = {o["value"] for o in objs if o["type"] in ("ipv4-addr", "ipv6-addr")}
    members = {ip for c in doc["clusters"] for ip in c["members"]}
    assert members | {s["ip"] for s in doc["seeds"]} | {e["ip"] for e in doc["expansion"]} == values
    assert {o["value"] for o in objs if o["type"] == "ipv6-addr"} == {"2001:db8:4f2::15"}
    # victims are not shared
    assert not values & {v["ip"] for v in doc["victims"]}
    # autonomous systems joined to addresses by belongs-to
    asns = {o["number"]: o for o in objs if o["type"] == "autonomous-system"}
    assert set(asns) == {12494, 62212, 44477}
    rels = [o for o in objs if o["type"] == "relationship"]
    kinds = Counter(r["relationship_type"] for r in rels)
    assert {"belongs-to", "consists-of", "communicates-with", "uses", "indicates", "based-on"} <= set(kinds)
    for r in rels:
        assert r["source_ref"] in by_id and r["target_ref"] in by_id
    member_as = {
        by_id[r["source_ref"]]["value"]: by_id[r["target_ref"]]["number"]
        for r in rels
        if r["relationship_type"] == "belongs-to"
    }
    for c in doc["clusters"]:
        assert all(member_as[m] == c["asn"] for m in c["members"])
    # consists-of: each cluster's infrastructure holds exactly its members
    for c in doc["clusters"]:
        inf = next(o for o in infra if o["name"].endswith(f"cluster {c['id']}"))
        held = {
            by_id[r["target_ref"]]["value"]
            for r in rels
            if r["relationship_type"] == "consists-of" and r["source_ref"] == inf["id"]
        }
        assert held == set(c["members"])
        talks = {
            by_id[r["target_ref"]].get("value")
            for r in rels
            if r["relationship_type"] == "communicates-with" and r["source_ref"] == inf["id"]
        }
        assert set(c["seeds"]) <= talks
    # indicators: valid STIX patterns naming the cluster's members
    inds = [o for o in objs if o["type"] == "indicator"]
    assert len(inds) == len(doc["clusters"]) + len(doc["expansion"])
    for ind in inds:
        assert run_validator(ind["pattern"]) == []
    c1 = next(i for i in inds if "cluster C1" in i["name"])
    assert all(f"'{m}'" in c1["pattern"] for m in doc["clusters"][0]["members"])
    # observed-data with network-traffic and the TCP flags of the fixture's pairs (...AP.SF = 0x1b)
    ods = [o for o in objs if o["type"] == "observed-data"]
    assert len(ods) == len(doc["clusters"])
    traffic = [by_id[r] for od in ods for r in od["object_refs"] if r.startswith("network-traffic--")]
    assert len(traffic) == len(doc["pairs"])
    flags = Counter(t["extensions"]["tcp-ext"]["src_flags_hex"] for t in traffic)
    expect = Counter({"...AP.SF": "1b", "...APRS.": "1e"}[p["peer_to_seed"]["tcp_flags"]] for p in doc["pairs"])
    assert flags == expect
    assert {t["dst_port"] for t in traffic} == {22}
    # everything marked TLP 2.0 amber, made by the producer
    assert by_type["marking-definition"] == 1 and TLP_AMBER in by_id
    assert (
        by_id[TLP_AMBER]["extensions"]["extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"]["tlp_2_0"]
        == "amber"
    )
    for o in objs:
        if o["type"] not in ("marking-definition",):
            assert o.get("object_marking_refs") == [TLP_AMBER], o["id"]
        if o["type"] in ("infrastructure", "indicator", "relationship", "observed-data", "intrusion-set"):
            assert o["created_by_ref"] == ident[0]["id"]


def test_ids_are_stable_and_tlp_changes_the_marking() -> None:
    doc = load(FIXTURE)
    a = bundle_json(doc, actor="FIN7")
    b = bundle_json(doc, actor="FIN7")
    ids = lambda t: sorted(o["id"] for o in json.loads(t)["objects"])  # noqa: E731
    assert ids(a) == ids(b)
    later = bundle_json(doc, actor="FIN7", now=datetime(2024, 6, 1, tzinfo=UTC))
    assert ids(a) == ids(later)  # re-running updates the same objects
    red = json.loads(bundle_json(doc, tlp="red"))["objects"]
    assert {o["id"] for o in red if o["type"] == "marking-definition"} == {TLP_RED}


def test_hostile_names_travel_as_data() -> None:
    doc = load(HOSTILE)
    objs = json.loads(bundle_json(doc))["objects"]
    names = {o["number"]: o.get("name") for o in objs if o["type"] == "autonomous-system"}
    assert names[12494] == "<script>alert(1)</script>"
    infra = next(o for o in objs if o["type"] == "infrastructure" and o["name"].endswith("cluster C1"))
    assert "Post </script><img src=x onerror=alert(2)> Ltd" in infra["name"]

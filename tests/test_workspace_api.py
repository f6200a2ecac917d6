"""The workspace's HTTP API, against `flowpivot serve` running on the FIN7 scenario's store.

Oracles: the store's own Parquet files read with pyarrow (flows, statistics, activity: not DuckDB,
which the API uses), the scenario's asn.tsv read by hand (enrich), the published JSON schema of the
result and a hunt run by the library in the test (hunts), the OASIS STIX validator and PyMISP's
own loader (exports), and the SQLite store of investigations read back through its library.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from workspace_server import Scenario, Server, fin7, running, wait_hunt

from flowpivot.hunt import hunt, validate_result
from flowpivot.workspace.jobs import STAGES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scen(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return fin7(tmp_path_factory.mktemp("ws-api"), flows=120_000)


@pytest.fixture(scope="module")
def server(scen: Scenario) -> Iterator[Server]:
    with running(scen.store, scen.dir / "ws", "--asn-db", str(scen.asn)) as s:
        yield s


@pytest.fixture(scope="module")
def flows(scen: Scenario) -> pa.Table:
    return ds.dataset(str(scen.store / "flows"), format="parquet", partitioning="hive").to_table()


@pytest.fixture(scope="module")
def done_hunt(server: Server, scen: Scenario) -> dict[str, Any]:
    with server.client() as c:
        r = c.post("/api/hunts", json={"seeds": scen.seeds.read_text(), "name": "fin7"})
        assert r.status_code == 202, r.text
        return wait_hunt(c, r.json()["id"])


def v4(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


def test_openapi_describes_every_api_route(server: Server) -> None:
    with server.client() as c:
        doc = c.get("/openapi.json").json()
    paths = set(doc["paths"])
    for p in ("/api/ip/{addr}", "/api/flows", "/api/stats", "/api/enrich", "/api/hunts", "/api/hunts/upload",
              "/api/hunts/{hunt_id}/events", "/api/hunts/{hunt_id}/result", "/api/hunts/{hunt_id}/exports",
              "/api/investigations", "/api/investigations/{ref}/diff"):  # fmt: skip
        assert p in paths, p
    assert not any(not p.startswith("/api/") for p in paths), "pages stay out of the API description"


def test_flows_with_a_filter_are_the_matching_records(server: Server, flows: pa.Table) -> None:
    with server.client() as c:
        r = c.get("/api/flows", params={"filter": "proto tcp and dst port 8443", "limit": 10000})
    assert r.status_code == 200, r.text
    got = r.json()
    want = flows.filter(pc.and_(pc.equal(flows["protocol"], 6), pc.equal(flows["dst_port"], 8443)))
    assert 0 < want.num_rows <= 10000
    assert got["count"] == want.num_rows
    assert Counter(f["src_addr"] for f in got["flows"]) == Counter(
        str(ipaddress.IPv4Address(x)) for x in want["src_addr_v4"].to_pylist()
    )
    assert all(f["dst_port"] == 8443 and f["protocol"] == 6 for f in got["flows"])


def test_top_n_statistics_match_a_group_by_of_the_files(server: Server, flows: pa.Table) -> None:
    with server.client() as c:
        r = c.get("/api/stats", params={"stat": "dstport/flows", "top": 5, "filter": "proto udp"})
    assert r.status_code == 200, r.text
    (s,) = r.json()["stats"]
    udp = flows.filter(pc.equal(flows["protocol"], 17))
    g = udp.group_by("dst_port").aggregate([("dst_port", "count")]).to_pylist()
    want = sorted(((x["dst_port_count"], x["dst_port"]) for x in g), key=lambda t: (-t[0], t[1]))[:5]
    assert [(x["flows"], x["value"]) for x in s["rows"]] == want
    assert s["totals"]["flows"] == udp.num_rows


def test_bad_filter_and_bad_statistic_are_400_with_the_reason(server: Server) -> None:
    with server.client() as c:
        r = c.get("/api/flows", params={"filter": "dst port and and"})
        assert r.status_code == 400 and r.json()["detail"]
        r = c.get("/api/stats", params={"stat": "colour/bytes"})
        assert r.status_code == 400 and "colour" in r.json()["detail"]
        assert c.get("/api/ip/not-an-address").status_code == 400


def test_ip_profile_counts_what_the_files_hold(server: Server, flows: pa.Table, scen: Scenario) -> None:
    member = next(iter(scen.truth["clusters"][0]["members"]))
    member = member if isinstance(member, str) else member["address"]
    with server.client() as c:
        p = c.get(f"/api/ip/{member}").json()
    x = v4(member)
    mine = flows.filter(pc.or_(pc.equal(flows["src_addr_v4"], x), pc.equal(flows["dst_addr_v4"], x)))
    assert p["format"] == "flowpivot-ip/1" and p["ip"] == member
    assert p["activity"]["flows"] == mine.num_rows
    days = {str(d)[:10] for d in pc.unique(pc.strftime(mine["start"], "%Y-%m-%d")).to_pylist()}
    assert {d["day"] for d in p["activity"]["days"]} == days
    assert p["owner"]["asn"] == scen.truth["clusters"][0]["provider"]["asn"]


def test_enrich_answers_from_the_workspace_database(server: Server, scen: Scenario) -> None:
    ip = "87.236.146.32"
    want = None
    for line in scen.asn.read_text().splitlines():
        lo, hi, asn, cc, name = line.split("\t", 4)
        if ":" not in lo and v4(lo) <= v4(ip) <= v4(hi):
            want = (int(asn), cc, name)
    assert want is not None
    with server.client() as c:
        (a,) = c.get("/api/enrich", params={"ip": ip}).json()
    assert (a["asn"], a["country"], a["as_name"]) == want


def test_hunt_streams_its_stages_and_gives_the_library_result(
    server: Server, scen: Scenario, done_hunt: dict[str, Any]
) -> None:
    assert done_hunt["status"] == "done", done_hunt
    with server.client() as c:
        with c.stream("GET", f"/api/hunts/{done_hunt['id']}/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            text = "".join(r.iter_text())
        result = c.get(f"/api/hunts/{done_hunt['id']}/result").json()
    events = [blk for blk in text.split("\n\n") if blk.strip()]
    stages = [json.loads(b.split("data: ", 1)[1])["stage"] for b in events if b.startswith("event: stage")]
    assert stages == list(STAGES)
    assert events[-1].startswith("event: end") and '"done"' in events[-1]
    validate_result(result)
    mine = hunt(scen.store, [str(scen.seeds)], asn_dbs=[str(scen.asn)])
    assert sorted(sorted(c["members"]) for c in result["clusters"]) == sorted(
        sorted(c["members"]) for c in mine["clusters"]
    )
    assert {e["ip"] for e in result["expansion"]} == {e["ip"] for e in mine["expansion"]}
    planted = {m if isinstance(m, str) else m["address"] for c in scen.truth["clusters"] for m in c["members"]}
    assert {m for c in result["clusters"] for m in c["members"]} <= planted


def test_hunt_from_an_uploaded_file_with_the_form_token(server: Server, scen: Scenario) -> None:
    with server.client() as c:
        page = c.get("/").text
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = c.post(
            "/api/hunts/upload",
            files={"files": ("fin7.txt", scen.seeds.read_bytes(), "text/plain")},
            data={"csrf_token": token, "days": "20"},
        )
        assert r.status_code == 202, r.text
        h = wait_hunt(c, r.json()["id"])
    assert h["status"] == "done" and h["params"] == {"days": 20}
    listed = {ln.split("#")[0].strip() for ln in scen.seeds.read_text().splitlines()} - {""}
    assert h["summary"]["seeds"] == len(listed) == len(scen.truth["seeds"])


def test_unknown_hunt_and_empty_seeds(server: Server) -> None:
    with server.client() as c:
        assert c.get("/api/hunts/nope/result").status_code == 404
        assert c.get("/api/hunts/nope/events").status_code == 404
        # Unicode digits are no investigation id (schemathesis found them making a 500)
        assert c.get("/api/investigations/\u00b2").status_code == 404
        assert c.post("/api/investigations/\u00b2/notes", json={"text": "x"}).status_code == 404
        r = c.post("/api/hunts", json={"seeds": "example.com\nnot an address"})
        assert r.status_code == 400 and "no seed address" in r.json()["detail"]


def test_exports_are_valid_documents_in_the_exports_folder(server: Server, done_hunt: dict[str, Any]) -> None:
    from pymisp import MISPEvent
    from stix2validator import ValidationOptions, validate_string

    hid = done_hunt["id"]
    with server.client() as c:
        for fmt, name in (("stix", "fin7-stix.json"), ("misp", "fin7-misp.json"), ("markdown", "fin7.md"),
                          ("html", "fin7.html"), ("abuse", "letters")):  # fmt: skip
            r = c.post(f"/api/hunts/{hid}/exports", json={"format": fmt, "name": name, "actor": "FIN7"})
            assert r.status_code == 201, r.text
        again = c.post(f"/api/hunts/{hid}/exports", json={"format": "stix", "name": "fin7-stix.json"})
        assert again.status_code == 400 and "exists" in again.json()["detail"]
        listed = c.get("/api/exports").json()
        stix = c.get("/api/exports/fin7-stix.json")
        misp = c.get("/api/exports/fin7-misp.json").text
        letter = c.get("/api/exports/letters", params={"part": next(x for x in listed if x.startswith("letters/"))[8:]})
    assert {"fin7-stix.json", "fin7-misp.json", "fin7.md", "fin7.html"} <= set(listed)
    assert stix.headers["content-disposition"].startswith("attachment")
    assert validate_string(stix.text, ValidationOptions(version="2.1", strict=False)).is_valid
    ev = MISPEvent()
    ev.load(json.loads(misp))
    assert ev.attributes or ev.objects
    assert letter.status_code == 200 and "AS" in letter.text
    files = sorted(p.name for p in (server.workspace / "exports").iterdir())
    assert files == sorted({x.split("/")[0] for x in listed})


def test_investigation_saved_rerun_and_compared(server: Server, done_hunt: dict[str, Any]) -> None:
    from flowpivot.workspace.investigations import Investigations

    with server.client() as c:
        r = c.post("/api/investigations", json={"name": "fin7-api", "hunt": done_hunt["id"], "notes": "first"})
        assert r.status_code == 201, r.text
        iid = r.json()["id"]
        assert c.post("/api/investigations", json={"name": "fin7-api", "hunt": done_hunt["id"]}).status_code == 400
        h = c.post(f"/api/investigations/{iid}/runs", json={})
        assert h.status_code == 202, h.text
        assert wait_hunt(c, h.json()["id"])["status"] == "done"
        detail = c.get(f"/api/investigations/{iid}").json()
        d = c.get(f"/api/investigations/{iid}/diff").json()
        c.post(f"/api/investigations/{iid}/notes", json={"text": "reported to AS44477"})
        assert (
            c.put(f"/api/investigations/{iid}/disclosed", json={"disclosed": "2024-04-29T12:00:00Z"}).status_code == 200
        )
        t = c.get(f"/api/investigations/{iid}/takedown").json()
        run1 = c.get(f"/api/investigations/{iid}/runs/{detail['runs'][0]['id']}/result").json()
    assert len(detail["runs"]) == 2
    assert d["diff"]["format"] == "flowpivot-hunt-diff/1"
    assert d["diff"]["changed"] is False, d["diff"]["events"]  # same store, same seeds: nothing changed
    it = Investigations(server.workspace).get("fin7-api")
    assert it.disclosed and it.disclosed.startswith("2024-04-29T12:00")
    assert "reported to AS44477" in it.notes and it.runs == 2
    assert t["format"] == "flowpivot-takedown/1"
    assert {h["ip"] for h in t["hosts"]} == {s["ip"] for s in run1["seeds"]}  # every seed of the run is judged


def test_an_investigation_saved_here_runs_from_the_command_line(server: Server, done_hunt: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from flowpivot.cli import app

    with server.client() as c:
        assert c.post("/api/investigations", json={"name": "fin7-cli", "hunt": done_hunt["id"]}).status_code == 201
        res = CliRunner().invoke(app, ["investigation", "run", "fin7-cli", "--workspace", str(server.workspace)])
        assert res.exit_code == 0, res.output
        runs = c.get("/api/investigations/fin7-cli").json()["runs"]
        d = c.get("/api/investigations/fin7-cli/diff").json()
    assert len(runs) == 2  # the run `flowpivot investigation run` recorded is the workspace's too
    assert d["diff"]["changed"] is False


def test_a_full_queue_refuses_more_hunts(scen: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowpivot.workspace import jobs
    from flowpivot.workspace.config import Settings

    monkeypatch.setattr(jobs, "MAX_WAITING", 1)
    q = jobs.HuntJobs(Settings(store=scen.store, workspace=tmp_path / "ws", asn_dbs=[scen.asn]))
    seeds = [("fin7.txt", scen.seeds.read_bytes())]
    try:
        h = q.start(seeds, {})
        with pytest.raises(jobs.Busy, match="1 hunts are queued or running"):
            q.start(seeds, {})
        while h.status in ("queued", "running"):
            q.wait(h, len(h.stages), timeout=1)
        assert h.status == "done"
        assert q.start(seeds, {}).status in ("queued", "running", "done")  # room again
    finally:
        q.close()


def test_pages_of_a_hunt_whose_seeds_the_flows_never_saw(server: Server, shared_data: Path) -> None:
    """The published FIN7 list (maltrail) over the simulated store: no seed in the flows, no cluster,
    seeds without counts. Every page of it renders."""
    iocs = shared_data / "iocs" / "maltrail-fin7.txt"
    with server.client() as c:
        ft = c.get("/").text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = c.post("/api/hunts/upload", files={"files": (iocs.name, iocs.read_bytes())}, data={"csrf_token": ft})
        assert r.status_code == 202, r.text
        h = wait_hunt(c, r.json()["id"])
        result = c.get(f"/api/hunts/{h['id']}/result").json()
        assert h["status"] == "done" and not result["clusters"]
        assert {s["status"] for s in result["seeds"]} == {"unseen"}
        seed = result["seeds"][0]["ip"]
        for p in (f"/hunts/{h['id']}", f"/ip/{seed}?hunt={h['id']}", "/"):
            page = c.get(p)
            assert page.status_code == 200, (p, page.text[:300])
        assert "unseen" in c.get(f"/hunts/{h['id']}").text

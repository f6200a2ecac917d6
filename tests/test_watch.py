"""``flowpivot watch``, run diffs and takedown verification (flowpivot/watch/, flowpivot/cli/watch.py).

Hand-made results check the diff and the takedown rules one by one (the expected changes are read
off the inputs). The FIN7 scenario checks them on real hunts against the simulator's ground truth
(truth.json: when each seed went dark): the store holds the days before the suspension, the
investigation is watched, the post-suspension days are ingested, and the next look must show
every seed gone dark, with the alerts delivered to a file, a syslog receiver and a webhook
receiver on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.hunt import validate_result
from flowpivot.ingest import ingest_paths
from flowpivot.simulate import Scenario, simulate
from flowpivot.store import Store
from flowpivot.watch import FileSink, SyslogSink, Watcher, WebhookSink, diff_results, store_state, takedown
from flowpivot.watch.alerts import send_all
from flowpivot.workspace.investigations import Investigations, seed_sets_from_files

REPO = Path(__file__).resolve().parents[1]
T0 = dt.datetime(2024, 4, 1, tzinfo=dt.UTC)


def at(hours: float) -> str:
    """A time ``hours`` after 2024-04-01T00:00Z, as the result writes it."""
    d = T0 + dt.timedelta(hours=hours)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def seed(ip: str, status: str, last_answered: float | None = None, **kw: Any) -> dict[str, Any]:
    s = {"ip": ip, "asn": 64500, "as_name": "EXAMPLE", "country": "NL", "first_seen": at(0), "last_seen": at(1),
         "status": status, "last_answered": None if last_answered is None else at(last_answered)}  # fmt: skip
    s.update(kw)
    return s


def cluster(cid: str, members: list[str], seeds: list[str]) -> dict[str, Any]:
    return {"id": cid, "asn": 64501, "as_name": "HOSTER", "country": "NL", "allocation": None, "members": members,
            "seeds": seeds, "established": True, "initiator": "members", "services": [], "flows": 1,
            "packets_est": 1, "bytes_est": 1, "first_seen": at(0), "last_seen": at(1), "score": 0.5,
            "evidence": {}}  # fmt: skip


def pair(s: str, peer: str, first: float = 0, last: float = 1, established: bool = True) -> dict[str, Any]:
    return {"seed": s, "peer": peer, "session": "established" if established else "attempt",
            "established": established, "flows": 3, "first_seen": at(first), "last_seen": at(last)}  # fmt: skip


def victim(ip: str, seeds: list[str], last: float, interval_s: float = 600) -> dict[str, Any]:
    return {"ip": ip, "seeds": seeds, "port": 443, "interval_s": interval_s, "asn": None, "as_name": None,
            "state": "established", "first_seen": at(0), "last_seen": at(last)}  # fmt: skip


def expansion(ip: str, by: list[str]) -> dict[str, Any]:
    return {"ip": ip, "asn": 64501, "as_name": "HOSTER", "country": "NL", "contacted_by": by, "clusters": ["C1"],
            "score": 0.5}  # fmt: skip


def result(end: float, **parts: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "format": "flowpivot-hunt/1",
        "window": {"start": at(end - 720), "end": at(end)},
        "parameters": {},
        "seeds": [],
        "clusters": [],
        "overlaps": [],
        "expansion": [],
        "victims": [],
        "probes": [],
        "excluded": [],
        "pairs": [],
    }
    r.update(parts)
    validate_result(r)  # the library's own validator: the hand-made results are valid results
    return r


# ---- the diff, on hand-made results ---------------------------------------------------------------


def test_diff_of_a_result_with_itself_is_empty() -> None:
    r = result(
        100,
        seeds=[seed("10.0.0.1", "active", 99)],
        clusters=[cluster("C1", ["20.0.0.1", "20.0.0.2"], ["10.0.0.1"])],
        pairs=[pair("10.0.0.1", "20.0.0.1")],
        victims=[victim("30.0.0.1", ["10.0.0.1"], 99)],
    )
    d = diff_results(r, json.loads(json.dumps(r)))
    assert d["changed"] is False and d["events"] == []
    assert d["format"] == "flowpivot-hunt-diff/1"


def test_diff_finds_every_kind_of_change() -> None:
    a, b, c, d_, e = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"
    m1, m2, m3, m5, m9 = "20.0.0.1", "20.0.0.2", "20.0.0.3", "20.0.0.5", "20.0.0.9"
    old = result(
        100,
        seeds=[seed(a, "active", 99), seed(b, "dark", 10), seed(c, "active", 98), seed(d_, "active", 97)],
        clusters=[cluster("C1", [m1, m2], [a, b]), cluster("C2", [m5], [a, c])],
        pairs=[pair(a, m1), pair(b, m2), pair(a, m5), pair(c, m5)],
        expansion=[expansion("40.0.0.1", [m1, m2])],
        victims=[victim("30.0.0.1", [a], 99.5), victim("30.0.0.2", [c], 99), victim("30.0.0.4", [c], 50)],
        probes=[{"ip": "50.0.0.1", "seed": a, "port": 22, "proto": 6, "kind": "burst"}],
    )
    new = result(
        200,
        # a went dark, b came back, c fell out of the window, d stays, e is a seed no one saw before
        seeds=[
            seed(a, "dark", 120),
            seed(b, "active", 199),
            seed(c, "unseen"),
            seed(d_, "active", 198),
            seed(e, "active", 190),
        ],  # fmt: skip
        # renumbered: the old C2 is now C1 (same members: no change); the old C1 grew a member
        # and a seed; C3 is new
        clusters=[cluster("C1", [m5], [a, c]), cluster("C2", [m1, m2, m3], [a, b, d_]), cluster("C3", [m9], [e])],
        pairs=[pair(a, m1), pair(b, m2), pair(a, m5), pair(c, m5), pair(d_, m3), pair(d_, m1), pair(e, m9)],
        expansion=[expansion("40.0.0.2", [m1, m3])],
        # 30.0.0.1 last seen 80 h before the end: stopped; 30.0.0.2 is gone from the list: stopped;
        # 30.0.0.4 was quiet for 50 h at the old end and contacts again: resumed; 30.0.0.3 is new
        victims=[victim("30.0.0.1", [a], 120), victim("30.0.0.3", [d_], 199), victim("30.0.0.4", [c], 199)],
        probes=[
            {"ip": "50.0.0.1", "seed": a, "port": 22, "proto": 6, "kind": "burst"},
            {"ip": "50.0.0.7", "seed": b, "port": 443, "proto": 6, "kind": "syn-flood"},
        ],  # fmt: skip
    )
    d = diff_results(old, new)
    assert [m["ip"] for m in d["members"]["new"]] == [m3, m9] and d["members"]["gone"] == []
    assert [s["seed"] for s in d["seeds_contacted"]["new"]] == [d_, e]
    assert {(c_["member"], c_["seed"]) for c_ in d["contacts"]["new"]} == {(m3, d_), (m1, d_), (m9, e)}
    assert [x["ip"] for x in d["expansion"]["new"]] == ["40.0.0.2"]
    assert [x["ip"] for x in d["expansion"]["gone"]] == ["40.0.0.1"]
    assert [v["ip"] for v in d["victims"]["appeared"]] == ["30.0.0.3"]
    assert [(v["ip"], v["listed"]) for v in d["victims"]["stopped"]] == [("30.0.0.1", True), ("30.0.0.2", False)]
    assert [v["ip"] for v in d["victims"]["resumed"]] == ["30.0.0.4"]
    assert [(s["ip"], s["was"]) for s in d["seeds"]["dark"]] == [(a, "active")]
    assert d["seeds"]["dark"][0]["last_answered"] == at(120)
    assert [(s["ip"], s["was"]) for s in d["seeds"]["back"]] == [(b, "dark")]
    assert [(s["ip"], s["was"], s["status"]) for s in d["seeds"]["status_changed"]] == [(c, "active", "unseen")]
    assert [x["id"] for x in d["clusters"]["appeared"]] == ["C3"] and d["clusters"]["gone"] == []
    (ch,) = d["clusters"]["changed"]
    assert (ch["id"], ch["was"], ch["members_added"], ch["seeds_added"]) == ("C2", ["C1"], [m3], [d_])
    assert [(p["ip"], p["kind"]) for p in d["probes"]["new"]] == [("50.0.0.7", "syn-flood")]
    kinds = [ev["kind"] for ev in d["events"]]
    assert kinds[:3] == ["seed-dark", "seed-back", "seed-status"]  # what went dark first
    for k, n in {"new-member": 2, "new-expansion": 1, "expansion-gone": 1, "victim-stopped": 2, "victim-appeared": 1,
                 "victim-resumed": 1, "cluster-appeared": 1, "cluster-changed": 1, "new-seed-contacted": 2,
                 "new-contact": 3, "new-probe": 1}.items():  # fmt: skip
        assert kinds.count(k) == n, k
    assert d["changed"] is True


def test_diff_clusters_gone_and_merged() -> None:
    old = result(100, clusters=[cluster("C1", ["20.0.0.1"], ["10.0.0.1"]), cluster("C2", ["20.0.0.2"], ["10.0.0.1"]),
                                cluster("C3", ["20.0.0.3"], ["10.0.0.9"])])  # fmt: skip
    new = result(200, clusters=[cluster("C1", ["20.0.0.1", "20.0.0.2"], ["10.0.0.1"])])
    d = diff_results(old, new)
    assert [c["id"] for c in d["clusters"]["gone"]] == ["C3"]
    (ch,) = d["clusters"]["changed"]
    assert ch["was"] == ["C1", "C2"] and ch["members_added"] == ch["members_removed"] == []
    assert any(e["kind"] == "cluster-changed" and "joins C1, C2" in e["message"] for e in d["events"])
    assert [m["ip"] for m in d["members"]["gone"]] == ["20.0.0.3"]


def test_a_victim_with_a_long_beacon_is_not_stopped_by_a_day_of_quiet() -> None:
    # beacons every 12 h: 30 h of quiet is under three intervals (36 h), so it still contacts
    old = result(100, victims=[victim("30.0.0.1", ["10.0.0.1"], 99, interval_s=12 * 3600)])
    new = result(200, victims=[victim("30.0.0.1", ["10.0.0.1"], 170, interval_s=12 * 3600)])
    assert diff_results(old, new)["victims"]["stopped"] == []
    gone = result(200, victims=[victim("30.0.0.1", ["10.0.0.1"], 160, interval_s=12 * 3600)])
    assert [v["ip"] for v in diff_results(old, gone)["victims"]["stopped"]] == ["30.0.0.1"]


# ---- takedown verification, on hand-made results ---------------------------------------------------


def test_takedown_verdicts_and_evidence() -> None:
    disclosed = at(100)
    s1, s2, s3, s4, s5 = (f"10.0.1.{i}" for i in range(1, 6))
    before = result(
        101,
        seeds=[
            seed(s1, "active", 100.5),
            seed(s2, "dark", 95),
            seed(s3, "active", 101),
            seed(s4, "active", 99),
            seed(s5, "unseen"),
        ],  # fmt: skip
    )
    after = result(
        200,
        seeds=[
            seed(s1, "dark", 102, unanswered_after=7, last_attempt=at(150), silent_hours=98.0, dark_chance=1e-9),
            seed(s2, "dark", 95),
            seed(s3, "active", 199),
            seed(s4, "active", 99),
            seed(s5, "unseen"),
        ],
        # 30.0.0.3's session ends a minute after the last answer: its closing packets, no knock
        pairs=[pair(s1, "30.0.0.1", 50, 102), pair(s1, "30.0.0.9", 10, 60), pair(s1, "30.0.0.3", 90, 102 + 1 / 60),
               pair(s1, "30.0.0.2", 103, 150, established=False)],  # fmt: skip
        victims=[victim("30.0.0.1", [s1], 140)],
        probes=[{"ip": "50.0.0.1", "seed": s1, "port": 22, "proto": 6, "kind": "syn-flood", "last_seen": at(110)},
                {"ip": "50.0.0.2", "seed": s1, "port": 22, "proto": 6, "kind": "burst", "last_seen": at(101)}],
    )  # fmt: skip
    t = takedown([({"run": 1}, before), ({"run": 2}, after)], disclosed, [s1, s2, s3, s4, s5, "10.9.9.9"])
    v = {h["ip"]: h for h in t["hosts"]}
    assert [v[x]["verdict"] for x in (s1, s2, s3, s4, s5, "10.9.9.9")] == [
        "dark-after-disclosure", "dark-before-disclosure", "still-answering", "silent", "no-answers", "not-a-seed",
    ]  # fmt: skip
    h = v[s1]
    assert h["went_dark"] == at(102) and h["hours_after_disclosure"] == 2.0
    assert h["confirmed_by"] == {"run": 2, "window_end": at(200)}
    ev = h["evidence"]
    assert ev["unanswered_after"] == 7 and ev["last_attempt"] == at(150)
    # the session that held its last answer; the pair that ended before it does not
    assert [s["peer"] for s in ev["last_sessions"]] == ["30.0.0.1", "30.0.0.3"]
    # knocks after the last answer: the victim, the attempting peer, the flood; not the burst before it
    assert [(k["peer"], k["as"]) for k in ev["knocks_after"]] == [
        ("30.0.0.2", "peer"), ("30.0.0.1", "victim"), ("50.0.0.1", "probe")
    ]  # fmt: skip
    assert [e["event"] for e in h["timeline"]] == [
        "disclosed", "last-answer", "unanswered", "unanswered", "unanswered", "last-unanswered-attempt", "confirmed-dark",
    ]  # fmt: skip
    assert [r["status"] for r in h["runs"]] == ["active", "dark"]
    assert t["summary"] == {"dark-after-disclosure": 1, "dark-before-disclosure": 1, "still-answering": 1,
                            "silent": 1, "no-answers": 1, "not-a-seed": 1}  # fmt: skip


def test_takedown_counts_only_darkness_that_lasts() -> None:
    s = "10.0.1.1"
    runs = [
        ({"run": 1}, result(110, seeds=[seed(s, "dark", 101)])),
        ({"run": 2}, result(150, seeds=[seed(s, "active", 149)])),  # back: the first darkness did not last
        ({"run": 3}, result(250, seeds=[seed(s, "dark", 160)])),
    ]
    (h,) = takedown(runs, at(100))["hosts"]
    assert h["confirmed_by"]["run"] == 3 and h["went_dark"] == at(160)
    with pytest.raises(ValueError):
        takedown(runs, "")


# ---- the store's state ------------------------------------------------------------------------------


def test_store_state_changes_with_visible_files_only(tmp_path: Path) -> None:
    empty = store_state(tmp_path / "nothing")
    assert empty["files"] == 0 and empty["last_day"] is None
    day = tmp_path / "s" / "flows" / "day=2024-04-01"
    day.mkdir(parents=True)
    s0 = store_state(tmp_path / "s")
    (day / ".tmp-x-abc.parquet.partial").write_bytes(b"x" * 10)  # a writer's temporary file
    assert store_state(tmp_path / "s")["fingerprint"] == s0["fingerprint"]
    (day / "k.parquet").write_bytes(b"x" * 10)
    s1 = store_state(Store(tmp_path / "s"))  # a Store or its path: the same
    assert s1 == store_state(str(tmp_path / "s")) and s1["fingerprint"] != s0["fingerprint"]
    assert (s1["files"], s1["bytes"], s1["first_day"]) == (1, 10, "2024-04-01")
    (day / "k.parquet").write_bytes(b"x" * 11)
    assert store_state(tmp_path / "s")["fingerprint"] != s1["fingerprint"]


# ---- receivers on 127.0.0.1 ----------------------------------------------------------------------------


class Receivers:
    """A syslog (UDP) and a webhook (HTTP) receiver on 127.0.0.1, each in a thread."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append((self.path, dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._recv, daemon=True),
            threading.Thread(target=self.http.serve_forever, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                self.datagrams.append(self.udp.recv(65535))
            except TimeoutError:
                continue
            except OSError:
                return

    @property
    def syslog(self) -> str:
        return f"127.0.0.1:{self.udp.getsockname()[1]}"

    @property
    def webhook(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/hook/secret-token"

    def close(self) -> None:
        self._stop.set()
        self.http.shutdown()
        self.http.server_close()
        self.udp.close()


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    r = Receivers()
    yield r
    r.close()


def test_a_sink_that_fails_is_a_problem_and_the_others_still_get_the_alerts(
    tmp_path: Path, receivers: Receivers
) -> None:
    with socket.socket() as s:  # a TCP port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    alerts = [{"format": "flowpivot-alert/1", "run": 2, "kind": "seed-dark", "ip": "10.0.0.1", "message": "m",
               "investigation": "x"}]  # fmt: skip
    sinks = [WebhookSink(f"http://127.0.0.1:{closed}/"), FileSink(tmp_path), FileSink(tmp_path / "ok.jsonl"),
             SyslogSink(receivers.syslog)]  # fmt: skip
    problems = send_all(sinks, alerts)
    for sink in sinks:
        sink.close()
    assert [p.source for p in problems] == [f"webhook http://127.0.0.1:{closed}", f"file {tmp_path}"]
    assert all(p.where == "run 2" and p.reason.startswith("not sent: ") for p in problems)
    assert [json.loads(x) for x in (tmp_path / "ok.jsonl").read_text().splitlines()] == alerts
    with pytest.raises(ValueError):
        WebhookSink("file:///etc/passwd")
    with pytest.raises(ValueError):
        SyslogSink("127.0.0.1:99999")


# ---- real hunts: the FIN7 scenario before and after its suspension ------------------------------------


@pytest.fixture(scope="module")
def fin7(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fin7")
    simulate(Scenario(flows=200_000), out)
    truth = json.loads((out / "truth.json").read_text())
    suspension = truth["period"]["suspension"]
    day = dt.datetime.fromisoformat(suspension.replace("Z", "+00:00")).date()
    start = dt.date.fromisoformat(truth["period"]["start"][:10])
    cut = (day - start).days  # day-NN.pcap holds day NN (1-based): the files before the suspension's day
    exports = sorted((out / "exports").glob("day-*.pcap"))
    return {"dir": out, "truth": truth, "before": exports[:cut], "after": exports[cut:]}


def _ms(t: str) -> int:
    return int(dt.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000)


def test_watch_fin7_shows_the_seeds_gone_dark_after_the_suspension(
    fin7: dict[str, Any], tmp_path: Path, receivers: Receivers
) -> None:
    scen, truth = fin7["dir"], fin7["truth"]
    store = Store(tmp_path / "store")
    ingest_paths(fin7["before"], store)
    inv = Investigations(tmp_path / "ws")
    sets, _ = seed_sets_from_files([f"fin7={scen / 'seeds.txt'}"])
    inv.create("fin7", seeds=sets, sources={"store": store.root, "asn_dbs": [scen / "asn.tsv"]})
    sinks = [FileSink(tmp_path / "alerts.jsonl"), SyslogSink(receivers.syslog), WebhookSink(receivers.webhook)]
    w = Watcher(inv, "fin7", sinks=sinks)

    first = w.check()
    assert first.ran and first.reason == "first run" and first.alerts == []
    r1 = inv.run_result(first.run.id)
    validate_result(r1)
    assert {s["status"] for s in r1["seeds"]} == {"active"}  # before the suspension every seed answers
    assert w.check().reason == "unchanged" and len(inv.runs("fin7")) == 1

    ingest_paths(fin7["after"], store)
    second = w.check()
    assert second.ran and second.reason == "store changed" and second.previous.id == first.run.id
    r2 = inv.run_result(second.run.id)
    d = second.diff
    # the oracle: truth.json's moment each seed went dark; dark here needs 24 h of silence before the
    # newer window's end, and each seed answered until then in the older window
    end1, end2 = _ms(r1["window"]["end"]), _ms(r2["window"]["end"])
    expected = {s["address"] for s in truth["seeds"] if end1 < _ms(s["dark_at"]) <= end2 - 24 * 3_600_000}
    assert len(expected) == len(truth["seeds"])
    assert {s["ip"] for s in d["seeds"]["dark"]} == expected
    for s in d["seeds"]["dark"]:  # it cannot have answered after the simulator took it down
        dark_at = next(t["dark_at"] for t in truth["seeds"] if t["address"] == s["ip"])
        assert end1 < _ms(s["last_answered"]) <= _ms(dark_at)
    # the actor's clusters are the same before and after: nothing appeared, nothing is gone
    assert d["clusters"]["appeared"] == d["clusters"]["gone"] == d["members"]["new"] == d["members"]["gone"] == []
    assert d["seeds"]["back"] == [] and d["expansion"]["new"] == []
    # the victims that stopped are the simulator's beaconing victims, whose C2 seeds went dark
    stopped = {v["ip"] for v in d["victims"]["stopped"]}
    assert stopped and stopped <= {v["address"] for v in truth["victims"]}

    # the alerts: one per event, the same in the file, on syslog and in the webhook's POST
    assert [a["kind"] for a in second.alerts] == [e["kind"] for e in d["events"]]
    assert second.problems == []
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert lines == json.loads(json.dumps(second.alerts))
    assert all(a["investigation"] == "fin7" and a["run"] == second.run.id for a in lines)
    ((path, headers, body),) = receivers.posts
    assert path == "/hook/secret-token" and headers["Content-Type"] == "application/json"
    posted = json.loads(body)
    assert posted["alerts"] == lines and posted["text"].startswith("flowpivot watch fin7, run 2: 25 seed-dark")
    import time

    deadline = time.monotonic() + 5
    while len(receivers.datagrams) < len(lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    msgs = [x.decode() for x in receivers.datagrams]
    assert len(msgs) == len(lines)
    assert all(m.startswith("<12>flowpivot: {") for m in msgs)  # facility user (1) * 8 + warning (4)
    assert [json.loads(m.split("flowpivot: ", 1)[1].rstrip("\0"))["kind"] for m in msgs] == [a["kind"] for a in lines]

    w.close()

    # takedown: reported a day before the suspension, every seed went dark after it, confirmed by run 2
    disclosed = dt.datetime.fromtimestamp(_ms(truth["period"]["suspension"]) / 1000 - 86400, dt.UTC).isoformat()
    inv.set_disclosed("fin7", disclosed)
    runs = [({"run": r.id}, inv.run_result(r.id)) for r in inv.runs("fin7")]
    t = takedown(runs, inv.get("fin7").disclosed)
    assert t["summary"] == {"dark-after-disclosure": len(truth["seeds"])}
    for h in t["hosts"]:
        assert h["confirmed_by"]["run"] == second.run.id and h["runs"][0]["status"] == "active"
        assert 0 < h["hours_after_disclosure"] <= 24 + 4  # dark within the suspension's hours (truth: 09:00 + 0-4 h)


def test_cli_investigation_and_watch_once(fin7: dict[str, Any], tmp_path: Path) -> None:
    scen = fin7["dir"]
    store = tmp_path / "store"
    ingest_paths(fin7["before"], Store(store))
    run = CliRunner().invoke
    ws = ["--store", str(store)]
    res = run(app, ["investigation", "new", "fin7", *ws, "--seeds", f"fin7={scen / 'seeds.txt'}",
                    "--asn-db", str(scen / "asn.tsv"), "--param", "days=30", "--note", "vendor report", "--run"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "investigation fin7 (id 1): 25 seeds in 1 set(s)" in res.stdout and "run 1: 2 clusters" in res.stdout
    assert (tmp_path / "store-workspace" / "investigations.sqlite").exists()  # beside the store, as serve's
    res = run(app, ["investigation", "diff", "fin7", *ws])
    assert res.exit_code == 3, res.output  # one run: nothing to compare
    res = run(app, ["watch", "fin7", *ws, "--once"])
    assert res.exit_code == 0 and "fin7: unchanged" in res.output
    res = run(app, ["watch", "fin7", *ws, "--once", "--json"])
    look = json.loads(res.stdout)
    assert (look["ran"], look["reason"], look["run"], look["previous_run"], look["alerts"]) == (
        False, "unchanged", None, 1, []
    )  # fmt: skip
    ingest_paths(fin7["after"], Store(store))
    alerts = tmp_path / "alerts.jsonl"
    res = run(app, ["watch", "fin7", *ws, "--once", "--alerts-file", str(alerts)])
    assert res.exit_code == 0, res.output
    assert "run 2 (store changed)" in res.stdout and "run 1 -> run 2: 25 seed-dark" in res.stdout
    assert sum(1 for x in alerts.read_text().splitlines() if json.loads(x)["kind"] == "seed-dark") == 25
    res = run(app, ["investigation", "diff", "fin7", "1", "2", *ws, "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["diff"]["seeds"]["dark"]) == 25
    res = run(app, ["investigation", "takedown", "fin7", *ws])
    assert res.exit_code == 2 and "no disclosure date" in res.output
    assert run(app, ["investigation", "disclosed", "fin7", "2024-04-29", *ws]).exit_code == 0
    res = run(app, ["investigation", "takedown", "fin7", *ws, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["summary"] == {"dark-after-disclosure": 25}
    first = json.loads(res.stdout)["hosts"][0]
    res = run(app, ["investigation", "takedown", "fin7", *ws, "--host", first["ip"], "--timeline"])
    assert res.exit_code == 0
    assert f"{first['ip']}  dark-after-disclosure" in res.stdout
    assert "2024-04-29T00:00:00.000Z  disclosed" in res.stdout and "confirmed dark by run 2" in res.stdout
    assert f"{first['evidence']['last_answered']}  last answer" in res.stdout
    assert run(app, ["investigation", "note", "fin7", "abuse desk answered", *ws]).exit_code == 0
    # the reported cluster members become a seed set, to follow their takedown too
    reported = tmp_path / "reported.txt"
    reported.write_text("\n".join(fin7["truth"]["clusters"][0]["members"]) + "\nnot-an-ip\n")
    res = run(app, ["investigation", "seeds", "fin7", *ws, "--seeds", f"reported={reported}"])
    n_members = len(fin7["truth"]["clusters"][0]["members"])
    assert res.exit_code == 0 and f"seed set reported: {n_members} addresses" in res.stdout
    assert "line " in res.output  # the bad line is reported with where it was
    res = run(app, ["investigation", "seeds", "fin7", *ws, "--remove", "nope"])
    assert res.exit_code == 2 and "no seed set 'nope'" in res.output
    assert "reported" not in run(app, ["investigation", "seeds", "fin7", *ws, "--remove", "reported"]).stdout
    res = run(app, ["watch", "fin7", *ws, "--no-on-change"])
    assert res.exit_code == 2 and "needs --every" in res.output
    res = run(app, ["investigation", "show", "fin7", *ws, "--json"])
    shown = json.loads(res.stdout)
    assert [r["id"] for r in shown["runs"]] == [1, 2] and shown["investigation"]["params"] == {"days": 30}
    assert shown["investigation"]["notes"].startswith("vendor report\n") and "abuse desk answered" in res.stdout
    res = run(app, ["investigation", "list", *ws, "--json"])
    assert [i["name"] for i in json.loads(res.stdout)] == ["fin7"]
    res = run(app, ["investigation", "diff", "fin7", "1", "7", *ws])
    assert res.exit_code == 2 and "run 7 is not a run of fin7" in res.output
    res = run(app, ["investigation", "new", "../x", *ws, "--seeds", str(scen / "seeds.txt")])
    assert res.exit_code == 2 and "investigation name" in res.output
    assert run(app, ["investigation", "delete", "fin7", *ws, "--yes"]).exit_code == 0
    assert json.loads(run(app, ["investigation", "list", *ws, "--json"]).stdout) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_watch_ends_cleanly_on_ctrl_c_and_sigterm(tmp_path: Path, sig: signal.Signals) -> None:
    store = tmp_path / "store"
    (store / "flows").mkdir(parents=True)
    inv = Investigations(tmp_path / "ws")
    inv.create("x", seeds={"s": ["10.0.0.1"]}, sources={"store": store})
    # a run that saw the store as it is: the loop only looks, it has nothing to hunt
    inv.record_run("x", result(100), store_state=store_state(store))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import sys; sys.argv[0] = 'flowpivot'; from flowpivot.cli import main; main()"
    p = subprocess.Popen(
        [sys.executable, "-c", code, "watch", "x", "--workspace", str(tmp_path / "ws"), "--poll", "1s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stderr is not None
        line = p.stderr.readline()
        assert line.startswith("watching x"), line
        assert "unchanged" in p.stderr.readline()  # it looked once
        p.send_signal(sig)
        _, rest = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, rest
    assert "watch stopped" in rest and "Traceback" not in rest
    assert len(inv.runs("x")) == 1


def test_a_changing_store_is_hunted_once_it_settles_and_the_schedule_reruns(
    fin7: dict[str, Any], tmp_path: Path
) -> None:
    import time

    scen = fin7["dir"]
    store = Store(tmp_path / "store")
    ingest_paths(fin7["before"][:1], store)
    inv = Investigations(tmp_path / "ws")
    sets, _ = seed_sets_from_files([scen / "seeds.txt"])
    inv.create("x", seeds=sets, sources={"store": store.root})
    w = Watcher(inv, "x", every_s=3600)
    assert w.check(settle=True).reason == "first run"  # nothing to compare: no settling
    assert w.check(settle=True).reason == "not due"
    ingest_paths(fin7["before"][1:2], store)  # new data lands
    first_look = w.check(settle=True)
    assert (first_look.ran, first_look.reason) == (False, "settling")
    second_look = w.check(settle=True)  # the same state twice: hunt it
    assert (second_look.ran, second_look.reason) == (True, "store changed")
    assert (
        second_look.run.store_state == store_state(store)
        and second_look.run.store_state["files"] > inv.run(1).store_state["files"]
    )
    # an hour later the schedule re-runs an unchanged store; the diff of equal data is empty
    later = w.check(now=time.time() + 3601)
    assert (later.ran, later.reason) == (True, "schedule") and later.alerts == [] and later.diff["changed"] is False
    assert [r.id for r in inv.runs("x")] == [1, 2, 3]
    assert w.check(force=True).reason == "forced"


def test_the_watch_loop_alerts_when_the_post_suspension_days_land(
    fin7: dict[str, Any], tmp_path: Path, receivers: Receivers
) -> None:
    """As an analyst runs it: `flowpivot watch` in the background, an ingest, a webhook alert."""
    import time

    scen = fin7["dir"]
    store = Store(tmp_path / "store")
    ingest_paths(fin7["before"], store)
    inv = Investigations(tmp_path / "ws")
    sets, _ = seed_sets_from_files([f"fin7={scen / 'seeds.txt'}"])
    inv.create("fin7", seeds=sets, sources={"store": store.root, "asn_dbs": [scen / "asn.tsv"]})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import sys; sys.argv[0] = 'flowpivot'; from flowpivot.cli import main; main()"
    # two looks 2 s apart must agree before a hunt: the four files of the ingest land well within that
    argv = ["watch", "fin7", "--workspace", str(tmp_path / "ws"), "--poll", "2s", "--webhook", receivers.webhook]
    p = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(inv.runs("fin7")) < 1 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert len(inv.runs("fin7")) == 1 and receivers.posts == []  # the first run alerts nothing
        ingest_paths(fin7["after"], store)
        while not receivers.posts and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, stderr
    ((_, _, body),) = receivers.posts  # one ingest of four files: one run, one POST
    posted = json.loads(body)
    assert posted["run"] == 2 and posted["previous_run"] == 1
    dark = {a["ip"] for a in posted["alerts"] if a["kind"] == "seed-dark"}
    assert dark == {s["address"] for s in fin7["truth"]["seeds"]}
    assert "run 2 (store changed)" in stdout and "watch stopped" in stderr
    assert len(inv.runs("fin7")) == 2


def test_a_failed_hunt_is_reported_and_the_loop_goes_on(tmp_path: Path) -> None:
    store = tmp_path / "store"
    day = store / "flows" / "day=2024-04-01"
    day.mkdir(parents=True)
    (day / "broken.parquet").write_bytes(b"PAR1 this is no parquet file PAR1")
    inv = Investigations(tmp_path / "ws")
    inv.create("x", seeds={"s": ["10.0.0.1"]}, sources={"store": store})
    seen: list[Any] = []
    stop = threading.Event()

    def on_check(res: Any) -> None:
        seen.append(res)
        if len(seen) == 2:
            stop.set()

    Watcher(inv, "x", poll_s=0.05).run(stop, on_check)
    assert [(r.ran, r.reason) for r in seen] == [(False, "failed"), (False, "failed")]  # it tried again
    (p,) = seen[0].problems
    assert p.source == str(store) and p.reason.startswith("failed: ")
    assert inv.runs("x") == []


def test_seeds_going_dark_on_different_days_are_reported_as_each_goes_dark(tmp_path: Path) -> None:
    """The scenario library's seed-churn world (three seeds taken down on different days, one
    seed that appears mid-window), ingested a day at a time with a look after each day from the
    third: the oracle is truth.json's ``dark_at`` of each seed."""
    scen = tmp_path / "scen"
    res = CliRunner().invoke(app, ["simulate", "library", "seed-churn", "--draw", "0", "--out", str(scen)])
    assert res.exit_code == 0, res.output
    truth = json.loads((scen / "truth.json").read_text())
    dark_at = {s["ip"]: _ms(s["dark_at"]) for s in truth["seeds"] if s["dark_at"]}
    assert len(dark_at) == 3
    store = Store(tmp_path / "store")
    inv = Investigations(tmp_path / "ws")
    sets, _ = seed_sets_from_files([scen / "seeds.txt", scen / "seeds-2.txt"])
    inv.create("churn", seeds=sets, sources={"store": store.root, "asn_dbs": [scen / "asn.tsv"]})
    w = Watcher(inv, "churn")
    days = sorted((scen / "exports" / "border").glob("day-*.pcap"))
    ingest_paths(days[:2], store)
    reported: dict[str, int] = {}  # seed -> the window end of the run whose diff said it went dark
    for day in days[2:]:
        ingest_paths([day], store)
        look = w.check()
        assert look.ran
        r = inv.run_result(look.run.id)
        end = _ms(r["window"]["end"])
        dark = {s["ip"] for s in r["seeds"] if s["status"] == "dark"}
        # never dark before the simulator took it down; dark once a day and a half of silence followed
        assert dark <= {ip for ip, t in dark_at.items() if t < end}
        assert dark >= {ip for ip, t in dark_at.items() if t + 36 * 3_600_000 <= end}
        for e in (look.diff or {}).get("events", []):
            if e["kind"] == "seed-dark":
                assert e["ip"] not in reported  # each seed goes dark once
                reported[e["ip"]] = end
        for ip in dark - set(reported):  # dark in the first run: no diff yet
            reported[ip] = end
    assert set(reported) == set(dark_at)
    # the takedown, reported on the first day: each went dark after it, its last answer before the
    # simulator's dark_at, confirmed by the first run that saw it dark
    runs = [({"run": x.id}, inv.run_result(x.id)) for x in inv.runs("churn")]
    t = takedown(runs, truth["window"]["start"])
    hosts = {h["ip"]: h for h in t["hosts"]}
    for ip, when in dark_at.items():
        h = hosts[ip]
        assert h["verdict"] == "dark-after-disclosure" and _ms(h["went_dark"]) <= when
        assert _ms(h["confirmed_by"]["window_end"]) == reported[ip]
    assert t["summary"]["dark-after-disclosure"] == 3

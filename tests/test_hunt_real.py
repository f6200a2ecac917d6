"""The hunt on real and simulated inputs, through the real ingest path.

* a hand-labelled Zeek conn.log (RemcosRAT C2 refusing every connection),
* real packets replayed through softflowd into the live collector (a 2 s TLS beacon),
* the simulator's FIN7 scenario and variants, compared with the simulator's ground truth.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_udp_port, need_tool, shared

from flowpivot.hunt import hunt, validate_result
from flowpivot.ingest import ingest_paths
from flowpivot.store import Store

ZEEK = "stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"


def _zeek_oracle(path: Path, seed: str) -> dict[str, int]:
    """conn_state counts toward the seed, read straight from the TSV (independent of our reader)."""
    fields: list[str] = []
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
            continue
        if line.startswith("#") or not line:
            continue
        row = dict(zip(fields, line.split("\t"), strict=False))
        if seed in (row["id.orig_h"], row["id.resp_h"]):
            counts[row["conn_state"]] = counts.get(row["conn_state"], 0) + 1
    return counts


def test_zeek_remcos_c2_rejected_attempts(tmp_path: Path) -> None:
    path = shared(ZEEK)
    oracle = _zeek_oracle(path, "66.63.168.35")
    assert oracle == {"REJ": 718, "S0": 1}
    store = Store(tmp_path / "store")
    [rep] = ingest_paths([path], store)
    assert rep.bad == 0
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("66.63.168.35\n")
    r = hunt(store, [seeds])
    validate_result(r)
    [pair] = [p for p in r["pairs"] if p["seed"] == "66.63.168.35"]
    assert pair["peer"] == "192.168.1.107"
    assert pair["session"] == "rejected" and pair["established"] is False
    assert pair["rejected_flows"] == oracle["REJ"]
    assert pair["attempt_flows"] == oracle["REJ"] + oracle["S0"]
    assert pair["initiator"] == "peer" and pair["services"][0]["port"] == 5888
    [seed] = r["seeds"]
    assert seed["established_peers"] == 0 and seed["rejected_flows"] == 718
    assert r["clusters"] == [] and r["expansion"] == []
    # the infected host keeps retrying its refusing C2 for 8 minutes: a victim, rejected, with
    # every attempt counted (the oracle's REJ and S0 lines), never a probe
    [v] = r["victims"]
    assert v["ip"] == "192.168.1.107" and v["state"] == "rejected" and v["port"] == 5888
    assert v["connections"] == oracle["REJ"] + oracle["S0"]
    assert v["rejected_flows"] == oracle["REJ"] and v["unanswered_flows"] == oracle["S0"]
    assert r["probes"] == []
    # the C2 never answered: not "active", and no answered session to report
    assert seed["status"] == "unanswered" and seed["last_answered"] is None


def zeek_log_in_1970(tmp_path: Path) -> Path:
    """The labelled Zeek log with its times made relative to its first record (+0.25 s), as CTU's
    logs carry them: dated in 1970."""
    lines = shared(ZEEK).read_text().splitlines()
    first = min(float(ln.split("\t")[0]) for ln in lines if ln and not ln.startswith("#"))
    out = []
    for ln in lines:
        if ln and not ln.startswith("#"):
            ts, rest = ln.split("\t", 1)
            ln = f"{float(ts) - first + 0.25:.6f}\t{rest}"
        out.append(ln)
    log = tmp_path / "conn.log"
    log.write_text("\n".join(out) + "\n")
    return log


def test_zeek_log_dated_in_1970_hunts(tmp_path: Path) -> None:
    """CTU's Zeek logs carry times relative to the capture start: the same log, shifted so."""
    log = zeek_log_in_1970(tmp_path)
    store = Store(tmp_path / "store")
    [rep] = ingest_paths([log], store)
    assert rep.bad == 0 and rep.records == 766
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("66.63.168.35\n")
    r = hunt(store, [seeds])  # the default window, 30 days back from 1970-01-01T00:08
    validate_result(r)
    assert r["window"]["end"].startswith("1970-01-01T00:08:")
    assert r["window"]["start"].startswith("1969-12-02")
    assert r["provenance"]["flows_in_window"] == 766
    [v] = r["victims"]
    assert v["state"] == "rejected" and v["connections"] == 719
    assert v["first_seen"].startswith("1970-01-01T00:00:00")


def test_nfdump_burst_is_a_probe_not_a_victim(tmp_path: Path) -> None:
    """2,305 SYNs in 33 s to port 902, each answered by a reset (counted by nfdump itself)."""
    nfdump = need_tool("nfdump")
    path = shared("stratosphere/test1-malicious.nfdump")
    summary = subprocess.run(
        [nfdump, "-r", str(path), "-q", "-o", "fmt:%ts|%flg", "src host 147.32.80.119 and dst host 147.32.82.62 and dst port 902"],
        check=True, capture_output=True, text=True,
    ).stdout.split("\n")  # fmt: skip
    rows = [ln.split("|") for ln in summary if ln.strip()]
    assert len(rows) == 2305 and all(f.strip().endswith("S.") for _, f in rows)
    store = Store(tmp_path / "store")
    ingest_paths([path], store)
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("147.32.82.62\n")
    r = hunt(store, [seeds], days=3650)
    validate_result(r)
    assert "147.32.80.119" not in {v["ip"] for v in r["victims"]}
    [pr] = [p for p in r["probes"] if p["ip"] == "147.32.80.119"]
    assert pr["seed"] == "147.32.82.62" and pr["port"] == 902 and pr["proto"] == 6
    assert pr["attempts"] == len(rows) and pr["state"] == "rejected" and pr["kind"] == "retry-storm"
    assert 30 <= pr["span_s"] <= 34 and pr["rate_per_s"] > 60


@pytest.mark.tools
def test_softflowd_replay_of_a_tls_beacon(tmp_path: Path) -> None:
    softflowd = need_tool("softflowd")
    pcaps = [shared(f"stratosphere/test-cc/test-cc-capture-{i}.pcap") for i in (1, 2)]
    store_dir = tmp_path / "store"
    port = free_udp_port()
    collector = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "flowpivot"),
            "collect",
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            str(store_dir),
            "--rotate",
            "1h",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        # wait until the collector says it listens (it prints that once the socket is bound)
        assert collector.stderr is not None
        deadline = time.monotonic() + 60
        seen = ""
        while "listening on" not in seen:
            line = collector.stderr.readline()
            assert line or collector.poll() is None, f"collector exited: {seen}"
            seen += line
            assert time.monotonic() < deadline, seen
        # no control socket (-c none): with one, softflowd 1.1.0 may block in accept() before
        # reading the capture, depending on what its main loop finds in uninitialised memory
        for i, pcap in enumerate(pcaps):
            subprocess.run(
                [
                    softflowd,
                    "-r",
                    str(pcap),
                    "-n",
                    f"127.0.0.1:{port}",
                    "-v",
                    "9",
                    "-a",
                    "-d",
                    "-c",
                    "none",
                    "-p",
                    str(tmp_path / f"pid{i}"),
                ],
                check=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=120,
            )
    finally:
        collector.send_signal(signal.SIGTERM)  # drains the socket buffer, commits, exits 0
        _out, err = collector.communicate(timeout=120)
    assert collector.returncode == 0, err
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("141.193.213.21\n")
    r = hunt(store_dir, [seeds])
    validate_result(r)
    [pair] = [p for p in r["pairs"] if p["peer"] == "147.32.80.37"]
    assert pair["established"] and pair["initiator"] == "peer"
    assert pair["services"][0] == {"proto": 6, "port": 443, "side": "seed", "flows": pair["services"][0]["flows"]}
    assert pair["services"][0]["flows"] >= 290  # 297 sessions, a few cut by the capture's edges
    [v] = [v for v in r["victims"] if v["ip"] == "147.32.80.37"]
    assert v["seeds"] == ["141.193.213.21"] and v["port"] == 443
    assert v["state"] == "established" and v["connections"] >= 290 and v["rejected_flows"] == 0
    assert 1.5 <= v["interval_s"] <= 3.0  # the beacon runs every 2 s
    span = (
        time.mktime(time.strptime(v["last_seen"][:19], "%Y-%m-%dT%H:%M:%S"))
        - time.mktime(time.strptime(v["first_seen"][:19], "%Y-%m-%dT%H:%M:%S"))
    ) / 60
    assert 9 <= span <= 13  # for 11 minutes, in capture time (softflowd -a)
    assert r["clusters"] == []


# ----- the simulator's scenarios ------------------------------------------------------------------


def _simulate_and_hunt(tmp_path: Path, **kw: object) -> tuple[dict, dict]:
    from flowpivot.simulate import Scenario, scenario_from_dict, simulate

    config = kw.pop("config", None)
    sc = scenario_from_dict(config, Scenario(**kw)) if config else Scenario(**kw)  # type: ignore[arg-type]
    out = tmp_path / "sim"
    simulate(sc, out)
    store = Store(tmp_path / "store")
    reps = ingest_paths(sorted((out / "exports").glob("*.pcap")), store)
    assert sum(r.bad for r in reps) == 0
    r = hunt(store, [out / "seeds.txt"], asn_dbs=[out / "asn.tsv"])
    validate_result(r)
    return r, json.loads((out / "truth.json").read_text())


def _check_acceptance(r: dict, truth: dict) -> None:
    acc = truth["acceptance"]
    got = sorted((c["asn"], sorted(c["members"]), len(c["seeds"])) for c in r["clusters"])
    want = sorted((c["asn"], sorted(c["members"]), c["seeds"]) for c in acc["clusters"])
    assert got == want
    if len(r["clusters"]) == 2:
        [o] = r["overlaps"]
        assert o["count"] == acc["overlap"]
    assert sorted(e["ip"] for e in r["expansion"]) == sorted(acc["expansion"])
    noise = set(acc["noise_never_in_clusters_or_expansion"])
    assert not noise & {m for c in r["clusters"] for m in c["members"]}
    assert not noise & {e["ip"] for e in r["expansion"]}
    assert {s["status"] for s in r["seeds"]} == {"dark"}
    dark_at = {s["address"]: s["dark_at"] for s in truth["seeds"]}
    for s in r["seeds"]:
        assert s["last_seen"] <= dark_at[s["ip"]]
    found = {v["ip"] for v in r["victims"]}
    assert found <= {v["address"] for v in truth["victims"]}  # no false victims


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"sampling": 1},
        {"sampling": 1000},
        {"ipv6_seeds": True},
        {
            "config": {
                "seeds": 30,
                "clusters": [
                    {"provider": "hetzner", "members": 5, "seeds": 9},
                    {"provider": "ovh", "members": 2, "seeds": 11},
                    {"provider": "chinanet", "members": 3, "seeds": 7},
                ],
                "shared_seeds": 4,
                "new_infrastructure": 3,
                "days": 25,
                "dark_day": 20,
                "post_days": 5,
            }
        },
    ],
    ids=["fin7", "unsampled", "1:1000", "ipv6", "three-providers"],
)
def test_simulated_scenarios_match_the_ground_truth(tmp_path: Path, kw: dict) -> None:
    r, truth = _simulate_and_hunt(tmp_path, flows=150_000, seed=21, **kw)
    _check_acceptance(r, truth)
    if not kw:
        assert len(r["clusters"]) == 2 and r["overlaps"][0]["count"] == 12
        assert sorted(len(c["members"]) for c in r["clusters"]) == [3, 4]
        assert sorted(len(c["seeds"]) for c in r["clusters"]) == [15, 16]
        assert len(r["expansion"]) == 5

"""The hunt end to end on small worlds written straight into a store (see test_hunt_world.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_hunt_world import day, fin7_asn, fin7_like
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.hunt import FORMAT, hunt, validate_result
from flowpivot.store.check import NotAStoreError


def _world(tmp_path: Path, **kw: object) -> tuple[Path, dict, Path, Path]:
    truth = fin7_like(tmp_path / "store", **kw)  # type: ignore[arg-type]
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("# seeds\n" + "\n".join(truth["seeds"]) + "\n")
    asn = fin7_asn(tmp_path / "asn.tsv", v6=bool(kw.get("v6")))
    return tmp_path / "store", truth, seeds, asn


@pytest.mark.parametrize(("sampling", "v6"), [(1, False), (100, False), (1, True)], ids=["unsampled", "1:100", "ipv6"])
def test_two_clusters_overlap_expansion_victims_and_noise(tmp_path: Path, sampling: int, v6: bool) -> None:
    store, t, seeds, asn = _world(tmp_path, sampling=sampling, v6=v6)
    r = hunt(store, [seeds], asn_dbs=[asn])
    validate_result(r)
    assert r["format"] == FORMAT

    clusters = {c["asn"]: c for c in r["clusters"]}
    assert set(clusters) == {12494, 62212}
    a, b = clusters[12494], clusters[62212]
    assert set(a["members"]) == set(t["a_members"]) and set(a["seeds"]) == set(t["a_seeds"])
    assert set(b["members"]) == set(t["b_members"]) and set(b["seeds"]) == set(t["b_seeds"])
    assert a["initiator"] == b["initiator"] == "members"
    assert a["services"][0]["port"] == 22 and b["services"][0]["port"] == 3389
    assert a["established"] and a["as_name"] == "ASN-POSTLTD" and a["country"] == "RU"
    assert a["packets_est"] >= a["evidence"]["max_sampling_rate"] * 1  # scaled volumes

    shared = set(t["a_seeds"]) & set(t["b_seeds"])
    [o] = r["overlaps"]
    assert set(o["shared_seeds"]) == shared and o["count"] == len(shared)
    assert o["jaccard"] == pytest.approx(len(shared) / len(set(t["a_seeds"]) | set(t["b_seeds"])), abs=1e-4)

    assert {e["ip"] for e in r["expansion"]} == set(t["new"])
    for e in r["expansion"]:
        assert e["asn"] == 47583 and set(e["contacted_by"]) == set(t["a_members"]) | set(t["b_members"])
        assert set(e["clusters"]) == {a["id"], b["id"]}

    infra = {m for c in r["clusters"] for m in c["members"]} | {e["ip"] for e in r["expansion"]}
    assert not infra & set(t["noise"]) and not infra & set(t["victims"]) and not infra & set(t["background"])
    reasons = {e["ip"]: e["reason"] for e in r["excluded"]}
    scanner, research, resolver, cdn = t["noise"]
    assert reasons[scanner] == "no-session"  # SYN only
    assert reasons[resolver] == "no-session"  # UDP: never a TCP session
    assert reasons[cdn] == "shared-service"
    if sampling == 1:
        # completes handshakes and sends a probe to everyone: sessions no larger than a check
        near = {n["ip"]: n for n in r["near_misses"]}
        assert research not in reasons and near[research]["reason"] == "little-evidence"
        assert near[research]["substantial_seeds"] == 0 and near[research]["established_seeds"] >= 2

    if sampling == 1:  # at 1:100 a 6-packet beacon every 10 min for 3 days leaves too little
        assert {v["ip"] for v in r["victims"]} == set(t["victims"])
        for v in r["victims"]:
            assert v["port"] == 443 and 540 <= v["interval_s"] <= 660 and len(v["seeds"]) == 1

    # the actor stopped on day 20, the store runs to day 30
    assert {s["status"] for s in r["seeds"]} == {"dark"}
    assert all(s["last_seen"] < "2024-05-21" for s in r["seeds"])
    # timelines for the report
    assert len(a["timeline"]) == 20 and a["timeline"][0]["day"] == "2024-05-01"


def test_window_and_seed_status(tmp_path: Path) -> None:
    store, t, seeds, asn = _world(tmp_path)
    # a window that ends while the actor is still up: seeds active, same clusters
    r = hunt(store, [seeds], asn_dbs=[asn], since="2024-05-01T00:00:00Z", until="2024-05-15T00:00:00Z")
    assert r["window"] == {"start": "2024-05-01T00:00:00.000Z", "end": "2024-05-15T00:00:00.000Z"}
    assert {s["status"] for s in r["seeds"]} == {"active"}
    assert len(r["clusters"]) == 2
    # the last 5 days only: nothing of the actor is left
    r = hunt(store, [seeds], days=5)
    assert {s["status"] for s in r["seeds"]} == {"unseen"}
    assert r["clusters"] == [] and r["expansion"] == []


def test_parameters_min_seeds_and_hops(tmp_path: Path) -> None:
    store, t, seeds, asn = _world(tmp_path)
    r = hunt(store, [seeds], asn_dbs=[asn], hops=0)
    assert len(r["clusters"]) == 2 and r["expansion"] == []
    r = hunt(store, [seeds], asn_dbs=[asn], min_seeds=len(t["a_seeds"]) + 1)
    assert r["clusters"] == []
    assert r["parameters"]["min_seeds"] == len(t["a_seeds"]) + 1


def test_without_asn_database_clusters_split_by_address_block(tmp_path: Path) -> None:
    store, t, seeds, _ = _world(tmp_path)
    r = hunt(store, [seeds])
    assert sorted(sorted(c["members"]) for c in r["clusters"]) == sorted(
        [sorted(t["a_members"]), sorted(t["b_members"])]
    )
    assert all(c["asn"] is None for c in r["clusters"])


def test_allowlist_by_cidr_and_asn(tmp_path: Path) -> None:
    store, t, seeds, asn = _world(tmp_path)
    allow = tmp_path / "allow.txt"
    allow.write_text(
        "# entries that are not the actor\n"
        f"{t['a_members'][0]}/32  our own red team box\n"
        "AS62212, a partner's jump hosts\n"
        "not-a-network  whatever\n"
        "192.0.2.0/24\n"
    )
    r = hunt(store, [seeds], asn_dbs=[asn], allowlist=allow)
    validate_result(r)
    ex = {e["ip"]: e for e in r["excluded"] if e["reason"] == "allowlist"}
    assert "red team" in ex[t["a_members"][0]]["detail"]
    assert {m for m in t["b_members"]} <= set(ex) and "partner" in ex[t["b_members"][0]]["detail"]
    [c] = r["clusters"]
    assert set(c["members"]) == set(t["a_members"][1:])
    probs = {p["where"]: p["reason"] for p in r["allowlist"]["problems"]}
    assert set(probs) == {"line 4", "line 5"}


def test_cli_writes_the_result_and_prints_a_summary(tmp_path: Path) -> None:
    store, t, seeds, asn = _world(tmp_path)
    more = tmp_path / "more.txt"
    more.write_text("this line is bad\n" + t["seeds"][0] + "\n")
    out = tmp_path / "result.json"
    res = CliRunner().invoke(
        app,
        ["hunt", "--store", str(store), "--seeds", str(seeds), str(more), "--asn-db", str(asn), "--output", str(out)],
    )
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    validate_result(r)
    assert len(r["clusters"]) == 2
    assert "C1" in res.output and "overlap C1/C2" in res.output
    assert r["seed_input"]["problems"][0]["where"] == "line 1"
    assert len(r["seed_input"]["sources"]) == 2


def test_cli_bad_store_or_window_is_a_clean_error(tmp_path: Path) -> None:
    seeds = tmp_path / "s.txt"
    seeds.write_text("192.0.2.1\n")
    res = CliRunner().invoke(
        app,
        [
            "hunt",
            "--store",
            str(tmp_path / "none"),
            "--seeds",
            str(seeds),
            "--since",
            "2024-05-02",
            "--until",
            "2024-05-01",
        ],
    )
    assert res.exit_code == 2 and "window" in res.output


def test_empty_store_gives_an_empty_valid_result(tmp_path: Path) -> None:
    seeds = tmp_path / "s.txt"
    seeds.write_text("192.0.2.1\n2001:db8::1\n")
    (tmp_path / "empty" / "flows").mkdir(parents=True)
    r = hunt(tmp_path / "empty", [seeds])
    validate_result(r)
    assert [s["status"] for s in r["seeds"]] == ["unseen", "unseen"]
    assert r["clusters"] == [] and r["pairs"] == []
    # a hunt on nothing says so: the result carries it, the CLI exits 3 (tests/test_cli_checks.py)
    assert [w["code"] for w in r["warnings"] if w.get("nothing")] == ["empty-store"]


def test_a_path_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    seeds = tmp_path / "s.txt"
    seeds.write_text("192.0.2.1\n")
    with pytest.raises(NotAStoreError, match="does not exist"):
        hunt(tmp_path / "missing", [seeds])
    with pytest.raises(NotAStoreError, match="not a flow store"):
        hunt(tmp_path, [seeds])


def test_result_is_json_with_times_in_utc(tmp_path: Path) -> None:
    store, _t, seeds, asn = _world(tmp_path)
    r = hunt(store, [seeds], asn_dbs=[asn])
    text = json.dumps(r)
    assert json.loads(text)["window"]["end"].endswith("Z")
    assert r["provenance"]["store"] == str(store)
    assert r["provenance"]["enrichment"]  # the databases' own provenance
    assert r["window"]["end"] >= f"2024-05-{30:02d}" and day(0) < day(30)


RPSL = """\
inetnum:        5.133.76.0 - 5.133.79.255
netname:        POSTLTD-NET
org:            ORG-PL1-RIPE
status:         ALLOCATED PA
country:        RU
source:         RIPE

inetnum:        5.133.76.8 - 5.133.76.11
netname:        CUSTOMER-A
org:            ORG-CA1-RIPE
status:         ASSIGNED PA
country:        RU
source:         RIPE

inetnum:        5.133.76.12 - 5.133.76.15
netname:        CUSTOMER-B
org:            ORG-CB1-RIPE
status:         ASSIGNED PA
country:        RU
source:         RIPE
"""


def test_whois_splits_a_provider_by_allocation(tmp_path: Path) -> None:
    store, t, seeds, asn = _world(tmp_path)
    whois = tmp_path / "ripe.db"
    whois.write_text(RPSL)
    r = hunt(store, [seeds], asn_dbs=[asn], whois=whois)
    validate_result(r)
    post = sorted((c for c in r["clusters"] if c["asn"] == 12494), key=lambda c: c["members"])
    assert [c["members"] for c in post] == [["5.133.76.10", "5.133.76.11"], ["5.133.76.12", "5.133.76.13"]]
    assert [c["allocation"]["netname"] for c in post] == ["CUSTOMER-A", "CUSTOMER-B"]
    assert all(set(c["seeds"]) == set(t["a_seeds"]) for c in post)
    # the two halves of one operator share every seed: their overlap says so
    [o] = [o for o in r["overlaps"] if set(o["clusters"]) == {post[0]["id"], post[1]["id"]}]
    assert o["jaccard"] == 1.0

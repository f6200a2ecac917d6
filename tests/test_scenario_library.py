"""Scenario library: every family's draw 0 hunted and scored exactly; score() and the generator's truth."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flowpivot.ingest import ingest_paths
from flowpivot.schema import ip_strings
from flowpivot.simulate.library import family_names, generate, input_files, load_family, score
from flowpivot.simulate.library.family import draw_params, draw_rngs
from flowpivot.store import Store

FAMILIES = family_names()


def _hunt(out: Path, truth: dict[str, Any]) -> tuple[dict[str, Any], Store]:
    from flowpivot.hunt import hunt

    files, seeds, asn = input_files(out / "sim", truth)
    store = Store(out / "store")
    ingest_paths(files, store)
    return hunt(store, seeds, asn_dbs=[asn], allowlist=_exit_list(out, truth)), store


def _thin_victims_optional(truth: dict[str, Any]) -> dict[str, Any]:
    """Victims whose beacon left fewer connection records than the beacon tests can certify a
    jittered, thinned cadence from (``beacon.STEADY_MIN_STARTS``, docs/hunt.md "What it does not
    do") are optional here: neither a miss nor a false victim. ``bench.accuracy`` still counts
    them as required, so its table shows what they cost."""
    from flowpivot.hunt.beacon import STEADY_MIN_STARTS

    t = copy.deepcopy(truth)
    exp = t["expect"]
    thin = [v for v in exp["victims"] if int(v.get("connections_seen", STEADY_MIN_STARTS)) < STEADY_MIN_STARTS]
    exp["victims"] = [v for v in exp["victims"] if v not in thin]
    exp.setdefault("optional", {}).setdefault("victims", []).extend(f"{v['ip']} {v['seed']}" for v in thin)
    return t


def _exit_list(out: Path, truth: dict[str, Any]) -> Path | None:
    """The draw's Tor and VPN exits as an allowlist, as an analyst keeps the public exit lists.

    Flows cannot tell an exit through which an operator manages seeds from the operator's own
    address (docs/hunt.md, "Why these rules and when they fail"): the documented remedy is the
    allowlist, and the hunt is held to it here. Everything else of the draw is judged as it is.
    """
    exits = sorted(ip for ip, role in truth.get("hosts", {}).items() if "exit" in role)
    if not exits:
        return None
    path = out / "exits.txt"
    path.write_text("".join(f"{ip}  public {truth['hosts'][ip]} list\n" for ip in exits))
    return path


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Draw 0 of every family at the small size, generated once for the module."""
    out = {}
    for name in FAMILIES:
        d = tmp_path_factory.mktemp(name)
        out[name] = (d, generate(name, 0, d / "sim", SIZE.get(name, "small")))
    return out


#: Families drawn at another size than small. nat-and-exits' small world (2,900 hosts) is below
#: what the enrichment test can resolve: a subscriber address carrying a dozen users reaches a
#: fifth of all hosts there, so chance alone predicts nearly two seeds among its peers and its
#: four are no evidence (docs/hunt.md, section 6). Its realistic size (1.8 M records) is not.
SIZE = {"nat-and-exits": "realistic"}


# ----- the hunt against every family ----------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_family_draw0_hunted_exactly(family: str, drawn: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    out, truth = drawn[family]
    result, _ = _hunt(out, truth)
    s = score(result, _thin_victims_optional(truth))
    misses = "\n  ".join(s["misses"])
    assert s["exact"], f"{family} draw 0: the hunt differs from what the exports show:\n  {misses}"


# ----- the generator --------------------------------------------------------------------------------


def test_families_load_and_draw_at_both_sizes() -> None:
    assert len(FAMILIES) >= 7
    for name in FAMILIES:
        fam = load_family(name)
        assert fam["description"] and fam["covers"]
        for size in ("small", "realistic"):
            p = draw_params(fam, size, draw_rngs(name, 3, size)[0])
            assert p["operations"] and p["export"]["vantages"] and p["days"] >= 1


def test_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="mesh-operators"):
        load_family("no-such-family")


def test_same_draw_same_files(tmp_path: Path, drawn: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    out, truth = drawn["victims-probes"]
    again = generate("victims-probes", 0, tmp_path / "again", "small")
    assert again == truth
    for f in truth["files"] + truth["seed_files"] + ["asn.tsv"]:
        assert (tmp_path / "again" / f).read_bytes() == (out / "sim" / f).read_bytes(), f


def test_other_draws_differ(tmp_path: Path, drawn: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    other = generate("mesh-operators", 1, tmp_path / "d1", "small")
    assert other["params"] != drawn["mesh-operators"][1]["params"]


@pytest.mark.parametrize("family", ["mesh-operators", "chained-rotating", "thin-sampling-v6"])
def test_truth_records_match_the_store(family: str, drawn: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    """Every expected member-seed pair has exactly the ACK-bearing records the truth counted, once ingested."""
    out, truth = drawn[family]
    files, _, _ = input_files(out / "sim", truth)
    store = Store(out / "consistency")
    ingest_paths(files, store)
    for c in truth["expect"]["clusters"]:
        for member, per_seed in c["records"].items():
            t = store.query(ip=member)
            src = ip_strings(t["src_addr_v4"].combine_chunks(), t["src_addr_v6"].combine_chunks()).to_pylist()
            dst = ip_strings(t["dst_addr_v4"].combine_chunks(), t["dst_addr_v6"].combine_chunks()).to_pylist()
            rows = list(zip(src, dst, t["tcp_flags"].to_pylist(), strict=True))
            for seed, n in per_seed.items():
                got = sum(1 for a, b, f in rows if {a, b} == {member, seed} and f & 16)
                assert got == n, (family, member, seed, got, n)


def test_truth_is_consistent(drawn: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    for name, (_, t) in drawn.items():
        e = t["expect"]
        members = {m for c in e["clusters"] for m in c["members"]}
        seeds = {s["ip"] for s in t["seeds"]}
        never = set(e["never_members"])
        assert not members & never, name
        assert not set(e["expansion"]) & (never | seeds), name
        for c in e["clusters"]:
            assert set(c["seeds"]) <= seeds and len(c["members"]) >= 1, name
            assert all(len(v) >= 2 for v in c["records"].values()), name
        for o in e["overlaps"]:
            i, j = o["clusters"]
            assert o["count"] == len(set(e["clusters"][i]["seeds"]) & set(e["clusters"][j]["seeds"])) > 0
        assert {v["seed"] for v in e["victims"]} <= seeds
        assert {v["state"] for v in e["victims"]} <= {"established", "rejected", "unanswered"}
        assert set(e["dark_seeds"]) <= {s["ip"] for s in t["seeds"] if s["dark_at"]}, name
        for f in t["seed_files"]:
            assert (drawn[name][0] / "sim" / f).exists()


def test_families_cover_the_brief(drawn: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    """Across the families' draw 0: each behaviour the library promises is present in some truth."""
    t = {n: d[1] for n, d in drawn.items()}
    assert any(
        e["expect"]["victims"] and any(v["state"] == "rejected" for v in e["expect"]["victims"]) for e in t.values()
    )
    assert any(e["expect"]["probes"] for e in t.values())
    assert any(e["expect"]["dark_seeds"] for e in t.values())
    assert any(len(e["seed_files"]) > 1 for e in t.values())
    assert any(e["expect"]["expansion"] for e in t.values())
    assert any(":" in m for e in t.values() for c in e["expect"]["clusters"] for m in c["members"])
    formats = {v["format"] for e in t.values() for v in e["vantages"]}
    assert {"v9", "ipfix", "zeek", "zeek-json"} <= formats
    assert any(len({c["asn"] for c in e["expect"]["clusters"]}) < len(e["expect"]["clusters"]) for e in t.values())


def test_cli_lists_and_draws(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flowpivot.cli import app

    res = CliRunner().invoke(app, ["simulate", "library", "--list"])
    assert res.exit_code == 0 and all(name in res.output for name in FAMILIES)
    res = CliRunner().invoke(app, ["simulate", "library", "many-groups", "--draw", "2", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    truth = json.loads((tmp_path / "o" / "truth.json").read_text())
    assert truth["family"] == "many-groups" and truth["draw"] == 2 and "cluster #0: " in res.output
    bad = CliRunner().invoke(app, ["simulate", "library", "nosuch", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "known: chained-rotating" in bad.output
    bad = CliRunner().invoke(app, ["simulate", "fin7", "extra", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2


# ----- behaviours on the wire ----------------------------------------------------------------------


def _world(days: int = 3, **seeds: Any) -> Any:
    """A world with services and one operation's seeds at Stark, for behaviour tests."""
    import numpy as np

    from flowpivot.simulate.library.actor import place_seeds
    from flowpivot.simulate.library.services import make_services
    from flowpivot.simulate.library.world import World

    w = World(np.random.default_rng(5), days)
    w.truth["seed_provider"] = "stark"
    make_services(w, {"web_servers": 40, "seed_provider_customers": 10}, ["stark"])
    p = {"seeds": {"provider": "stark", "upkeep_per_day": 0, **seeds}, "operations": [{"seeds": 4}]}
    place_seeds(w, p)
    return w


def _of(w: Any, kind: str) -> dict[str, Any]:
    from flowpivot.simulate import traffic as T
    from flowpivot.simulate.library.world import KIND

    s, k, _, _ = w.sessions()
    return T.take(s, k == KIND[kind])


def test_refused_victim_is_syn_then_reset_every_half_second() -> None:
    import numpy as np

    from flowpivot.simulate.library.noise import victims

    w = _world()
    spec = {"count": 0, "refused": 1, "episode_every_s": [7200, 7200], "episode_s": [120, 120], "prefer_dark": False}
    victims(w, {"victims": spec})
    s = _of(w, "victim")
    assert len(s["a"]) > 100
    assert (s["syn0"] == 1).all() and (s["rst1"] == 1).all()
    assert not any(s[k].any() for k in ("syn1", "ack0", "ack1", "data0", "data1", "fin0", "fin1", "rst0"))
    gaps = np.diff(np.sort(s["t0"]))
    within = gaps[gaps < 60_000]
    assert 500 <= within.min() and within.max() <= 1000 and len(within) > 0.9 * len(gaps)


def test_a_seed_that_went_dark_answers_nobody() -> None:
    import numpy as np

    from flowpivot.simulate.library.noise import monitors

    w = _world(days=4, dark=2)
    monitors(w, {"monitors": {"count": 1, "interval_min": 10, "other_targets": 5}})
    s = _of(w, "monitor")
    dark = dict(zip(w.seeds.ix.tolist(), w.seeds.dark.tolist(), strict=True))
    after = np.array([t >= dark.get(b, 1 << 62) for b, t in zip(s["b"].tolist(), s["t0"].tolist(), strict=True)])
    assert after.sum() > 50
    assert not s["syn1"][after].any() and not s["ack1"][after].any() and (s["syn0"][after] >= 2).all()
    assert (s["syn1"][~after] == 1).all()


def test_a_sweep_covers_every_address_of_the_seeds_prefixes() -> None:
    import ipaddress

    from flowpivot.simulate.library.noise import sweeps

    w = _world()
    addrs, live = sweeps(w, {"sweep": {"scanners": 1, "sweeps": 1, "max_prefix": 24, "extra_prefixes": 0}})
    nets = {ipaddress.ip_network(f"{w.text(x)}/24", strict=False) for x in w.seeds.ix.tolist()}
    assert {w.text(x) for x in addrs.tolist()} == {str(ip) for n in nets for ip in n}
    s = _of(w, "sweep")
    assert len(s["a"]) == len(addrs) and set(w.seeds.ix.tolist()) <= set(addrs[live].tolist())
    answered = (s["syn1"] + s["rst1"]) > 0
    assert answered.sum() == live.sum() < len(addrs) / 4  # most of the range is unused and silent


def test_one_way_operators_leave_no_answer_in_the_exports(drawn: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    out, truth = drawn["one-asn-groups"]
    one_way = {m for op in truth["operations"] for m in op["one_way"]}
    assert one_way, "draw 0 of one-asn-groups has no one-way operator"
    files, _, _ = input_files(out / "sim", truth)
    store = Store(out / "one-way")
    ingest_paths(files, store)
    seeds = {s["ip"] for s in truth["seeds"]}
    for m in one_way:
        t = store.query(ip=m)
        src = ip_strings(t["src_addr_v4"].combine_chunks(), t["src_addr_v6"].combine_chunks()).to_pylist()
        dst = ip_strings(t["dst_addr_v4"].combine_chunks(), t["dst_addr_v6"].combine_chunks()).to_pylist()
        assert any(a == m and b in seeds for a, b in zip(src, dst, strict=True))
        assert not any(a in seeds and b == m for a, b in zip(src, dst, strict=True))


# ----- score() --------------------------------------------------------------------------------------


def _truth() -> dict[str, Any]:
    return {
        "family": "unit",
        "draw": 0,
        "hosts": {"9.9.9.9": "research scanner"},
        "expect": {
            "clusters": [
                {"members": ["1.0.0.1", "1.0.0.2"], "seeds": ["5.0.0.1", "5.0.0.2", "5.0.0.3"], "asn": 1},
                {"members": ["2.0.0.1"], "seeds": ["5.0.0.3", "5.0.0.4"], "asn": 2, "optional_seeds": ["5.0.0.5"]},
            ],
            "overlaps": [{"clusters": [0, 1], "count": 1}],
            "expansion": ["6.0.0.1"],
            "victims": [{"ip": "7.0.0.1", "seed": "5.0.0.1", "state": "established"}],
            "probes": [{"ip": "8.0.0.1", "seed": "5.0.0.2"}],
            "dark_seeds": ["5.0.0.4"],
            "quiet_seeds": ["5.0.0.2"],
            "never_members": ["9.9.9.9", "7.0.0.1", "8.0.0.1"],
            "optional": {"members": ["1.0.0.9"], "expansion": [], "victims": ["7.0.0.9 5.0.0.2"]},
        },
    }


def _result() -> dict[str, Any]:
    return {
        "clusters": [
            {"id": "C2", "members": ["2.0.0.1"], "seeds": ["5.0.0.3", "5.0.0.4"], "asn": 2},
            {"id": "C1", "members": ["1.0.0.1", "1.0.0.2"], "seeds": ["5.0.0.1", "5.0.0.2", "5.0.0.3"], "asn": 1},
        ],
        "overlaps": [{"clusters": ["C1", "C2"], "count": 1}],
        "expansion": [{"ip": "6.0.0.1"}],
        "victims": [{"ip": "7.0.0.1", "seeds": ["5.0.0.1"], "state": "established"}],
        "probes": [{"ip": "8.0.0.1", "seed": "5.0.0.2", "kind": "burst", "state": "rejected"}],
        "seeds": [{"ip": "5.0.0.4", "status": "dark"}, {"ip": "5.0.0.1", "status": "active"}],
    }


def test_score_exact_match_whatever_the_cluster_order() -> None:
    s = score(_result(), _truth())
    assert s["exact"], s["misses"]
    assert s["categories"]["members"] == {"tp": 3, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0}
    assert s["categories"]["overlaps"]["tp"] == 1


def test_score_counts_misses_and_noise() -> None:
    r = _result()
    r["clusters"][1]["members"] = ["1.0.0.1", "9.9.9.9"]  # one member missed, a scanner reported
    r["expansion"] = []
    r["victims"][0]["state"] = "rejected"
    r["probes"] = []
    r["seeds"][0]["status"] = "active"
    s = score(r, _truth())
    c = s["categories"]
    assert not s["exact"]
    assert (c["members"]["tp"], c["members"]["fp"], c["members"]["fn"]) == (2, 1, 1)
    assert c["expansion"]["fn"] == 1 and c["probes"]["fn"] == 1 and c["dark_seeds"]["fn"] == 1
    assert c["victim_state"]["fn"] == 1
    text = "\n".join(s["misses"])
    assert "9.9.9.9 (research scanner)" in text and "noise reported as actor infrastructure" in text
    assert "expected 'established'" in text


def test_score_ignores_optional_and_quiet() -> None:
    r = _result()
    r["clusters"][1]["members"].append("1.0.0.9")  # optional member
    r["clusters"][0]["seeds"].append("5.0.0.5")  # optional seed of that cluster
    r["victims"].append({"ip": "7.0.0.9", "seeds": ["5.0.0.2"], "state": "established"})
    r["seeds"].append({"ip": "5.0.0.2", "status": "dark"})  # quiet: undecidable from the records
    assert score(r, _truth())["exact"]
    r["victims"][-1]["seeds"].append("5.0.0.3")  # optional is per victim and seed, not per victim
    assert score(r, _truth())["categories"]["victims"]["fp"] == 1


def test_score_unmatched_and_split_clusters() -> None:
    r = _result()
    r["clusters"].append({"id": "C3", "members": ["3.3.3.3"], "seeds": ["5.0.0.1", "5.0.0.2"], "asn": 3})
    r["clusters"][1]["members"] = ["1.0.0.1"]
    r["clusters"].append({"id": "C4", "members": ["1.0.0.2"], "seeds": ["5.0.0.1"], "asn": 1})
    r["overlaps"].append({"clusters": ["C3", "C1"], "count": 2})
    r["overlaps"].append({"clusters": ["C4", "C1"], "count": 0})  # links without shared seeds are not overlaps
    s = score(r, _truth())
    c = s["categories"]
    assert c["members"]["fp"] == 2 and c["members"]["fn"] == 1
    assert c["overlaps"] == {"tp": 1, "fp": 1, "fn": 0, "precision": 0.5, "recall": 1.0}
    assert any("matches no expected cluster" in m for m in s["misses"])


def test_score_missing_cluster() -> None:
    r = _result()
    del r["clusters"][0]
    r["overlaps"] = []
    s = score(r, _truth())
    assert s["categories"]["members"]["fn"] == 1 and s["categories"]["seeds"]["fn"] == 2
    assert s["categories"]["overlaps"]["fn"] == 1
    assert any("not found" in m for m in s["misses"])


def test_score_takes_truth_json_as_written(drawn: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    out, truth = drawn["mesh-operators"]
    on_disk = json.loads((out / "sim" / "truth.json").read_text())
    perfect = {
        "clusters": [{"id": f"C{i}", **copy.deepcopy(c)} for i, c in enumerate(on_disk["expect"]["clusters"])],
        "overlaps": [
            {"clusters": [f"C{i}" for i in o["clusters"]], "count": o["count"]} for o in on_disk["expect"]["overlaps"]
        ],
        "expansion": [{"ip": x} for x in on_disk["expect"]["expansion"]],
        "victims": [{"ip": v["ip"], "seeds": [v["seed"]], "state": v["state"]} for v in on_disk["expect"]["victims"]],
        "probes": on_disk["expect"]["probes"],
        "seeds": [{"ip": s, "status": "dark"} for s in on_disk["expect"]["dark_seeds"]],
    }
    assert score(perfect, on_disk)["exact"]

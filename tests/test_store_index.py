"""The address index: what it holds is the store, and a hunt through it gives the store's result.

Oracles: the store itself (every flow, by content), and the same hunt with the index turned off.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.hunt import hunt
from flowpivot.ingest import ingest_paths
from flowpivot.simulate import Scenario, simulate
from flowpivot.store import Store
from flowpivot.store.index import INDEX_COLUMNS, INDEX_SCHEMA, _order_key, build_index, index_plan, index_status

_CONTENT = "count(*), sum(hash(src_addr_v4, src_addr_v6, dst_addr_v4, dst_addr_v6, src_port, dst_port, start, bytes))"


def _sim_store(tmp: Path, **kw: Any) -> tuple[Store, Path, Path]:
    simulate(dataclasses.replace(Scenario(flows=200_000), sampling=100, seed=5, **kw), tmp / "sim")
    store = Store(tmp / "store")
    ingest_paths(sorted((tmp / "sim" / "exports").glob("*.pcap")), store)
    return store, tmp / "sim" / "seeds.txt", tmp / "sim" / "asn.tsv"


@pytest.fixture(scope="module")
def v4_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path, Path]:
    return _sim_store(tmp_path_factory.mktemp("index4"))


@pytest.fixture(scope="module")
def v6_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path, Path]:
    return _sim_store(tmp_path_factory.mktemp("index6"), ipv6_seeds=True)


def _copy(store: Store, to: Path) -> Store:
    shutil.copytree(store.root, to)
    return Store(to)


_BOUND_KEYS = ("detail", "degree", "fan_out", "fan_in", "noise_peers", "specificity")
_BOUND_KEYS += ("degree_bound", "bound_span", "bound_day", "bound_side", "known_bound", "p_global", "p_local")
_REACH = {"scanner", "shared-service"}
_P_BOUND_KEYS = ("p_value", "p_adjusted", "p_adjusted_bound", "confidence", "p_bound", "draws", "draws_bound")


def _comparable(r: dict[str, Any]) -> str:
    r = {k: v for k, v in r.items() if k not in ("parameters", "provenance")}
    return json.dumps(r, sort_keys=True, default=str)


def _same_hunt(indexed: dict[str, Any], scan: dict[str, Any]) -> None:
    """The same result, with the same verdicts.

    A host condemned by the reach rule from a lower bound (the index's host-day table, or the
    scan's pass over the window's last eighth) states that bound where the other path may have
    counted: the bound is at most the count. Its label (``scanner`` when it opened more of the
    sessions counted, else ``shared-service``) comes from the part counted, so between the two
    it may differ. Where both counted exactly, every measurement is the same.
    """
    strip = lambda r: {**r, "excluded": None}  # noqa: E731
    assert _comparable(strip(indexed)) == _comparable(strip(scan))
    theirs = {e["ip"]: e for e in scan["excluded"]}
    assert sorted(theirs) == sorted(e["ip"] for e in indexed["excluded"])
    for e in indexed["excluded"]:
        o = theirs[e["ip"]]
        # decided from bounds of its managed draws (the index's host-peer table): its p-values
        # are lower bounds of the scan's, which counted (docs/hunt.md, "Managed draws from a bound")
        drop = _P_BOUND_KEYS if e.get("p_bound") or e.get("p_adjusted_bound") else ()
        if drop:
            assert e["p_adjusted"] <= o["p_adjusted"] and e["p_value"] <= o["p_value"], e["ip"]
        skip = set(_BOUND_KEYS + drop) | {"reason"}
        assert {k: v for k, v in e.items() if k not in skip} == {k: v for k, v in o.items() if k not in skip}, e["ip"]
        if e.get("degree_bound") is None and o.get("degree_bound") is None:
            assert e["reason"] == o["reason"], e["ip"]
            same = [k for k in _BOUND_KEYS if not (drop and k == "detail")]  # "at least" an adjusted p
            assert {k: e.get(k) for k in same} == {k: o.get(k) for k in same}, e["ip"]
        else:
            assert e["reason"] == o["reason"] or {e["reason"], o["reason"]} <= _REACH, e["ip"]
            if o.get("degree_bound") is None:
                assert e["degree"] <= o["degree"], e["ip"]


def _arrow(path: Path) -> Any:
    import pyarrow as pa

    with pa.memory_map(str(path)) as f:
        return pa.ipc.open_file(f).read_all()


def _ordered(con: duckdb.DuckDBPyConnection, path: Path, side: str) -> bool:
    """Every row's address is at least the previous one's (IPv4 first, then IPv6, then none)."""
    bad = con.sql(
        f"""SELECT count(*) FROM (
              SELECT {side}_addr_v4 AS a, {side}_addr_v6 AS b,
                     lag({side}_addr_v4) OVER () AS pa, lag({side}_addr_v6) OVER () AS pb,
                     row_number() OVER () AS n
              FROM copy)
            WHERE n > 1 AND NOT (
              (a IS NOT NULL AND pa IS NOT NULL AND a >= pa) OR (a IS NULL AND pa IS NOT NULL)
              OR (a IS NULL AND pa IS NULL AND (b IS NULL OR (pb IS NOT NULL AND b >= pb))))"""
    ).fetchall()[0][0]
    return bad == 0


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_index_holds_every_flow_in_address_order(
    family: str, v4_store: Any, v6_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _copy((v4_store if family == "v4" else v6_store)[0], tmp_path / "store")
    import flowpivot.store.index as ix

    monkeypatch.setattr(ix, "_SORT_ROWS", 50_000)  # several ranges, as on a big store
    m = build_index(store, batch_rows=1000)
    con = duckdb.connect()
    want = con.sql(f"SELECT {_CONTENT} FROM read_parquet('{store.glob}')").fetchall()
    gen = (store.root / "index" / "CURRENT").read_text().strip()
    assert m["rows"] == want[0][0] and m["files"] == len(store.files())
    for side in ("src", "dst"):
        path = store.root / "index" / gen / f"{side}.arrow"
        copy = _arrow(path)
        # the columns no flow has a value in are not stored; they are read as nulls
        assert copy.schema.names == [c for c in INDEX_COLUMNS if c not in m["null_columns"]]
        for c in m["null_columns"]:
            copy = copy.append_column(INDEX_SCHEMA.field(c), pa.nulls(copy.num_rows, INDEX_SCHEMA.field(c).type))
        con.register("copy", copy)
        assert con.sql(f"SELECT {_CONTENT} FROM copy").fetchall() == want
        assert _ordered(con, path, side)
        # the keys file bounds every batch: each batch's addresses lie between its first and last key
        keys = np.load(path.with_suffix(".keys.npy"))
        with pa.memory_map(str(path)) as f:
            r = pa.ipc.open_file(f)
            assert r.num_record_batches == len(keys) and r.get_batch(0).num_rows == 1000
            for i in range(r.num_record_batches):
                k = _order_key(r.get_batch(i), side)
                assert keys[i, 0] == k.min() == k[0] and keys[i, 1] == k.max() == k[-1]
        con.unregister("copy")
    if family == "v6":
        n6 = con.sql(f"SELECT count(*) FROM read_parquet('{store.glob}') WHERE src_addr_v6 IS NOT NULL").fetchall()
        assert n6[0][0] > 0
    s = index_status(store)
    assert s is not None and s["stale_files"] == 0 and s["unindexed_files"] == 0
    # the columns no indexed flow has a value in are read as constants (NetFlow v9: no Zeek state)
    for c in INDEX_COLUMNS:
        empty = con.sql(f"SELECT count(\"{c}\") = 0 FROM read_parquet('{store.glob}')").fetchall()[0][0]
        assert (c in s["null_columns"]) == empty, c
    assert "conn_state" in s["null_columns"]


def test_host_day_table_counts_each_busy_hosts_peers(v4_store: Any, tmp_path: Path) -> None:
    """Oracle: the same counts made in Python from the store's flows."""
    from collections import defaultdict

    store = _copy(v4_store[0], tmp_path / "store")
    m = build_index(store, host_day_min_flows=200)
    gen = (store.root / "index" / "CURRENT").read_text().strip()
    got = pq.read_table(store.root / "index" / gen / "hosts.parquet").to_pylist()
    assert m["host_days"] == len(got) > 0
    cols = ["src_addr_v4", "src_addr_v6", "dst_addr_v4", "dst_addr_v6", "src_port", "dst_port", "protocol", "start"]
    import pyarrow.dataset as ds

    rows = ds.dataset([str(p) for p in store.files()], format="parquet").to_table(columns=cols).to_pylist()
    per: dict[tuple[Any, int, str], dict[Any, list[bool]]] = defaultdict(dict)
    count: dict[tuple[Any, int, str], int] = defaultdict(int)
    for r in rows:
        day = int(r["start"].timestamp() // 86400)
        for side, other in (("src", "dst"), ("dst", "src")):
            host = (r[f"{side}_addr_v4"], r[f"{side}_addr_v6"])
            peer = (r[f"{other}_addr_v4"], r[f"{other}_addr_v6"])
            if host == (None, None):
                continue
            ported = r["protocol"] in (6, 17, 132) and r[f"{side}_port"] is not None and r[f"{other}_port"] is not None
            client = ported and r[f"{side}_port"] > r[f"{other}_port"]
            server = ported and r[f"{other}_port"] > r[f"{side}_port"]
            k = (host, day, side)
            count[k] += 1
            was = per[k].get(peer, [False, False])
            per[k][peer] = [was[0] or client, was[1] or server]
    want = {
        k: (n, len(per[k]), sum(a and not b for a, b in per[k].values()), sum(b and not a for a, b in per[k].values()))
        for k, n in count.items()
        if n >= 200
    }
    table = {
        ((g["v4"], g["v6"]), g["day"], g["side"]): (g["flows"], g["peers"], g["fan_out"], g["fan_in"]) for g in got
    }
    assert table == want


def test_host_peer_table_holds_each_busy_hosts_peers_as_the_reach_pass_counts_them(
    v4_store: Any, tmp_path: Path
) -> None:
    """Oracle: the same sums made in Python from the store's flows, per host, side and peer, then
    added over the host's sides that hold at least the threshold of its flows."""
    from collections import defaultdict

    store = _copy(v4_store[0], tmp_path / "store")
    m = build_index(store, host_day_min_flows=200)
    gen = (store.root / "index" / "CURRENT").read_text().strip()
    got = pq.read_table(store.root / "index" / gen / "peers.parquet").to_pylist()
    assert m["host_peers"] == len(got) > 0
    import pyarrow.dataset as ds

    cols = ["src_addr_v4", "src_addr_v6", "dst_addr_v4", "dst_addr_v6", "src_port", "dst_port", "protocol", "start"]
    cols += ["packets", "rev_packets", "sampling_rate"]
    rows = ds.dataset([str(p) for p in store.files()], format="parquet").to_table(columns=cols).to_pylist()
    per: dict[tuple[Any, str, Any], list[Any]] = defaultdict(lambda: [0, 0.0, set(), None, None, False, False])
    count: dict[tuple[Any, str], int] = defaultdict(int)
    for r in rows:
        ms = int(r["start"].timestamp() * 1000)
        for side, other in (("src", "dst"), ("dst", "src")):
            host = (r[f"{side}_addr_v4"], r[f"{side}_addr_v6"])
            peer = (r[f"{other}_addr_v4"], r[f"{other}_addr_v6"])
            if host == (None, None):
                continue
            count[(host, side)] += 1
            x = per[(host, side, peer)]
            x[0] += 1
            x[1] += ((r["packets"] or 0) + (r["rev_packets"] or 0)) * max(r["sampling_rate"] or 1, 1)
            x[2].add((r["protocol"], r[f"{side}_port"] or 0, r[f"{other}_port"] or 0))
            x[3] = ms if x[3] is None else min(x[3], ms)
            x[4] = ms if x[4] is None else max(x[4], ms)
            # who was whose client, by the port rule: the client has the higher port
            if r["protocol"] in (6, 17, 132) and r[f"{side}_port"] is not None and r[f"{other}_port"] is not None:
                x[5] = x[5] or r[f"{side}_port"] > r[f"{other}_port"]
                x[6] = x[6] or r[f"{other}_port"] > r[f"{side}_port"]
    sides: dict[Any, int] = defaultdict(int)
    for (h, _side), n in count.items():
        sides[h] += n >= 200
    want: dict[tuple[Any, Any], list[Any]] = {}
    for (h, s, p), x in per.items():
        if count[(h, s)] < 200:
            continue
        w = want.setdefault((h, p), [0, 0.0, 0, x[3], x[4], sides[h], False, False])
        w[0], w[1], w[2] = w[0] + x[0], w[1] + x[1], w[2] + len(x[2])
        w[3], w[4] = min(w[3], x[3]), max(w[4], x[4])
        w[6], w[7] = w[6] or x[5], w[7] or x[6]
    table = {
        ((g["v4"], g["v6"]), (g["p4"], g["p6"])): [
            g["flows"],
            g["pk"],
            g["conns"],
            g["first_ms"],
            g["last_ms"],
            g["sides"],
            g["ac"],
            g["pc"],
        ]
        for g in got
    }
    assert table == want
    # hosts with rows from one side (fewer than the threshold on the other) and from both
    assert {g["sides"] for g in got} == {1, 2}
    # and both kinds of initiator (the reach the hunt reads from the table needs them)
    assert {(g["ac"], g["pc"]) for g in got} >= {(True, False), (False, True)}
    # ordered by host, so a hunt reads the row groups of its hosts only
    keys = [(g["v4"] is None, g["v4"] or 0, g["v6"] or b"") for g in got]
    assert keys == sorted(keys)


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every session pass looks its anchors up in the index when there is one (on these small
    stores the cost rule would scan); records, per pass, whether it did."""
    import flowpivot.hunt.pivot as pv

    monkeypatch.setattr(pv, "_LOOKUP_COST", 1e-12)
    seen: list[bool] = []
    real = pv.touching

    def spy(*a: Any, **k: Any) -> Any:
        seen.append(bool(k.get("via_index")))
        return real(*a, **k)

    monkeypatch.setattr(pv, "touching", spy)
    return seen


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_hunt_through_the_index_is_the_hunt_over_the_store(
    family: str, v4_store: Any, v6_store: Any, tmp_path: Path, lookups: list[bool]
) -> None:
    src, seeds, asn = v4_store if family == "v4" else v6_store
    store = _copy(src, tmp_path / "store")
    scan = hunt(store, [seeds], asn_dbs=[asn])
    assert scan["clusters"] and scan["expansion"], "the scenario gave nothing to find: the test would prove nothing"
    assert lookups and not any(lookups)
    lookups.clear()
    # busy host-days from 16 flows, so that this small store has some: the bound path runs
    build_index(store, host_day_min_flows=16)
    indexed = hunt(store, [seeds], asn_dbs=[asn])
    assert any(e.get("bound_day") for e in indexed["excluded"]), "no exclusion came from the host-day table"
    assert indexed["parameters"]["index"] and not scan["parameters"]["index"]
    assert lookups and lookups[0], "the seed pass did not use the index"
    _same_hunt(indexed, scan)
    # turned off, the same store is scanned again
    lookups.clear()
    assert hunt(store, [seeds], asn_dbs=[asn], use_index=False)["parameters"]["index"] is None
    assert not any(lookups)


def test_cost_rule_scans_when_the_anchors_touch_most_batches(v4_store: Any, tmp_path: Path) -> None:
    import flowpivot.hunt.pivot as pv

    store = _copy(v4_store[0], tmp_path / "store")
    build_index(store)
    from flowpivot.hunt.context import HuntContext

    con = HuntContext(store)
    plan = index_plan(store, 0, 2**62)
    assert plan is not None
    addrs = "SELECT DISTINCT src_addr_v4 AS v4, NULL::BLOB AS v6 FROM flows WHERE src_addr_v4 IS NOT NULL ORDER BY 1"
    con.execute(f"CREATE TEMP TABLE few AS {addrs} LIMIT 3")
    con.execute(f"CREATE TEMP TABLE many AS {addrs}")
    con.use_index(plan, 0)
    few, many = pv.index_rows(con, "few"), pv.index_rows(con, "many")
    assert few is not None and many is not None
    # what a lookup reads is whole batches: at least the addresses' own flows, on both sides
    assert (
        few % plan.batch_rows == 0
        and few >= con.sql("SELECT count(*) FROM flows WHERE src_addr_v4 IN (SELECT v4 FROM few)").fetchall()[0][0]
    )
    window = 100 * few  # 3 addresses' batches are a small share of it; every source address's are not
    assert many > window / pv._LOOKUP_COST
    con.use_index(plan, window)
    assert pv.index_pays(con, "few") and not pv.index_pays(con, "many")
    # nor for a pass that scans only a small part of the window
    assert not pv.index_pays(con, "few", scan_share=0.01)
    con.use_index(None, window)
    assert not pv.index_pays(con, "few")
    plan.release()
    con.close()


def test_files_written_after_the_index_are_scanned_and_stale_ones_are_not_trusted(
    v4_store: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, lookups: list[bool]
) -> None:
    src, seeds, asn = v4_store
    store = _copy(src, tmp_path / "store")
    scan = hunt(store, [seeds], asn_dbs=[asn])
    window = (scan["window"]["start"], scan["window"]["end"])
    from flowpivot.store import parse_time

    since, until = parse_time(window[0]), parse_time(window[1])
    # index every day but the newest: its files are "written since"
    newest = max(p.parent.name for p in store.files())
    files = [p for p in store.files() if p.parent.name == newest]
    parked = tmp_path / "parked"
    parked.mkdir()
    for p in files:
        shutil.move(p, parked / p.name)
    build_index(store)
    for p in files:
        shutil.move(parked / p.name, p)
    plan = index_plan(store, since, until)
    assert plan is not None and sorted(plan.rest) == sorted(files)
    plan.release()
    lookups.clear()
    _same_hunt(hunt(store, [seeds], asn_dbs=[asn]), scan)
    assert lookups[0]
    assert index_status(store)["unindexed_files"] == len(files)  # type: ignore[index]

    # a file the index holds changed inside the window: the store is scanned, with a warning
    victim = max((p for p in store.files() if p.parent.name != newest), key=lambda p: p.parent.name)
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 1_000_000_000))
    with caplog.at_level("WARNING"):
        assert index_plan(store, since, until) is None
    assert "stale" in caplog.text
    r = hunt(store, [seeds], asn_dbs=[asn])
    assert r["parameters"]["index"] is None and _comparable(r) == _comparable(scan)
    assert index_status(store)["stale_files"] == 1  # type: ignore[index]


def test_index_command(v4_store: Any, tmp_path: Path) -> None:
    store = _copy(v4_store[0], tmp_path / "store")
    runner = CliRunner()
    r = runner.invoke(app, ["index", "--store", str(store.root), "--status"])
    assert r.exit_code == 0 and json.loads(r.stdout) == {"index": None}
    r = runner.invoke(app, ["index", "--store", str(store.root)])
    assert r.exit_code == 0, r.output
    built = json.loads(r.stdout)
    assert built["rows"] == Store(store.root).stats()["flows"] and built["bytes_per_flow"] > 0
    r = runner.invoke(app, ["index", "--store", str(store.root), "--status"])
    assert json.loads(r.stdout)["generation"] == built["generation"]
    # a rebuild replaces the generation and leaves one
    r = runner.invoke(app, ["index", "--store", str(store.root)])
    gens = [p for p in (store.root / "index").iterdir() if p.is_dir()]
    assert len(gens) == 1 and gens[0].name == json.loads(r.stdout)["generation"]
    r = runner.invoke(app, ["index", "--store", str(store.root), "--drop"])
    assert r.exit_code == 0 and not (store.root / "index").exists()
    r = runner.invoke(app, ["index", "--store", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "no flow store" in r.output


def test_a_rebuild_keeps_the_generation_a_hunt_reads(v4_store: Any, tmp_path: Path) -> None:
    store = _copy(v4_store[0], tmp_path / "store")
    first = build_index(store)["generation"]
    plan = index_plan(store, 0, 2**62)  # what a running hunt holds
    assert plan is not None and plan.generation == first
    second = build_index(store)["generation"]
    gens = {p.name for p in (store.root / "index").iterdir() if p.is_dir()}
    assert gens == {first, second}, "the generation being read was removed"
    assert plan.src.exists()
    plan.release()
    third = build_index(store)["generation"]
    assert {p.name for p in (store.root / "index").iterdir() if p.is_dir()} == {third}


def test_window_flows_from_footers_is_the_count(v4_store: Any) -> None:
    """The hunt's window end and count come from the Parquet footers where they can; oracle:
    DuckDB counting every row."""
    from flowpivot.hunt.context import HuntContext
    from flowpivot.hunt.window import start_stats, window_flows

    store = v4_store[0]
    con = store.connect()
    lo, hi = con.sql("SELECT epoch_ms(min(start)), epoch_ms(max(start)) FROM flows").fetchall()[0]
    stats, newest = start_stats(store)
    assert newest == hi
    ctx = HuntContext(store)
    day = 86_400_000
    for since, until in [
        (lo, hi),
        (lo + day // 3, hi),
        (lo, hi - 5 * day - 1234),
        (lo + 7 * day, lo + 8 * day),
        (hi, hi),
    ]:
        want = con.sql(
            f"SELECT count(*) FROM flows WHERE epoch_ms(start) >= {since} AND epoch_ms(start) <= {until}"
        ).fetchall()[0][0]
        assert window_flows(ctx, since, until, stats) == want, (since, until)
    ctx.close()


@pytest.mark.parametrize("boom", [KeyboardInterrupt, RuntimeError])
def test_a_hunt_releases_what_it_holds_on_ctrl_c_and_on_errors(
    boom: type[BaseException], v4_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run owns its connection, spill directory and index lock (HuntContext): a stage that
    raises, or Ctrl-C in the middle of one, leaves none of them behind. Oracles: the index lock
    can be taken exclusively again, and no spill directory is left in the temporary directory."""
    import tempfile

    from flowpivot.hunt.engine import HuntRun
    from flowpivot.store.index import _exclusive_lock

    src, seeds, asn = v4_store
    store = _copy(src, tmp_path / "store")
    build_index(store)
    spills = tmp_path / "tmp"
    spills.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spills))

    def stage(self: Any) -> None:
        assert self.ctx.plan is not None and list(spills.iterdir()), "the run holds the index and a spill directory"
        assert _exclusive_lock(store) is None, "a reader holds the index lock"
        raise boom("interrupted in the middle of a stage")

    monkeypatch.setattr(HuntRun, "noise", stage)
    with pytest.raises(boom):
        hunt(store, [seeds], asn_dbs=[asn])
    assert not list(spills.iterdir()), "the spill directory is left behind"
    lock = _exclusive_lock(store)
    assert lock is not None, "the index lock is still held"
    lock.close()

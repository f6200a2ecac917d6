"""Saved investigations (flowpivot/workspace/investigations.py): the SQLite file, its schema
version, its names and its concurrency; real hunts recorded and read back."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from flowpivot.hunt import validate_result
from flowpivot.hunt.params import HuntParams
from flowpivot.hunt.seeds import read_seeds
from flowpivot.workspace.investigations import (
    DB_NAME,
    SCHEMA_VERSION,
    AlreadyExists,
    InvalidInput,
    Investigations,
    NotFound,
    WorkspaceError,
    seed_sets_from_files,
)


def minimal_result(seeds: dict[str, str] | None = None, members: list[str] | None = None) -> dict[str, Any]:
    """A hand-made result that follows flowpivot-hunt/1 (checked by the library's validator)."""
    r: dict[str, Any] = {
        "format": "flowpivot-hunt/1",
        "window": {"start": "2024-04-01T00:00:00.000Z", "end": "2024-04-30T00:00:00.000Z"},
        "parameters": {},
        "seeds": [
            {
                "ip": ip,
                "asn": None,
                "as_name": None,
                "country": None,
                "first_seen": None,
                "last_seen": None,
                "status": st,
            }
            for ip, st in (seeds or {}).items()
        ],  # fmt: skip
        "clusters": [],
        "overlaps": [],
        "expansion": [],
        "victims": [],
        "excluded": [],
    }
    if members:
        r["clusters"].append({
            "id": "C1", "asn": 1, "as_name": "x", "country": "NL", "allocation": None, "members": members,
            "seeds": list(seeds or {}), "established": True, "initiator": "members", "services": [],
            "flows": 1, "packets_est": 1, "bytes_est": 1, "first_seen": "2024-04-01T00:00:00.000Z",
            "last_seen": "2024-04-02T00:00:00.000Z", "score": 0.5, "evidence": {},
        })  # fmt: skip
    validate_result(r)
    return r


def test_create_get_list_update_delete(tmp_path: Path) -> None:
    inv = Investigations(tmp_path / "ws")
    assert (tmp_path / "ws" / DB_NAME).exists()
    a = inv.create(
        "fin7-stark",
        seeds={"fin7": ["86.104.72.16", "::ffff:1.2.3.4", "86.104.72.16"], "extra": ["2001:db8::1"]},
        params=HuntParams(days=10, min_seeds=3),
        notes="from the vendor report",
        sources={"store": tmp_path / "store", "asn_dbs": tmp_path / "asn.tsv"},
    )
    # addresses canonical (mapped v4 -> v4), deduplicated, sorted; params kept whole
    assert a.seeds == {"extra": ["2001:db8::1"], "fin7": ["1.2.3.4", "86.104.72.16"]}
    assert a.addresses() == ["1.2.3.4", "86.104.72.16", "2001:db8::1"]
    assert a.hunt_params() == HuntParams(days=10, min_seeds=3)
    assert a.sources == {"store": str(tmp_path / "store"), "asn_dbs": [str(tmp_path / "asn.tsv")]}
    assert a.disclosed is None and a.runs == 0
    b = inv.create("second")
    assert [i.name for i in inv.list()] == ["fin7-stark", "second"]
    assert inv.get(a.id) == inv.get("fin7-stark") == inv.get(str(a.id)) == a
    assert inv.set_notes("second", "x").notes == "x"
    noted = inv.add_note("second", "reported to abuse@")
    assert noted.notes.startswith("x\n20") and noted.notes.endswith(" reported to abuse@")
    assert inv.set_disclosed(b.id, "2024-04-30").disclosed == "2024-04-30T00:00:00.000Z"
    assert inv.set_disclosed(b.id, "2024-04-30T09:15:00+02:00").disclosed == "2024-04-30T07:15:00.000Z"
    assert inv.set_disclosed(b.id, None).disclosed is None
    assert inv.set_seeds("second", "s", ["10.0.0.1"]).seeds == {"s": ["10.0.0.1"]}
    assert inv.set_seeds("second", "s", None).seeds == {}
    assert inv.set_params("second", {"days": 5}).params == {"days": 5}
    inv.delete("second")
    with pytest.raises(NotFound):
        inv.get("second")
    # a second object on the same folder sees the same thing (nothing cached)
    assert [i.name for i in Investigations(tmp_path / "ws").list()] == ["fin7-stark"]


@pytest.mark.parametrize("name", ["", "-x", ".hidden", "../etc", "a/b", "a b", "x" * 65, "naïve", "a\nb", "con;drop"])
def test_names_are_validated(tmp_path: Path, name: str) -> None:
    inv = Investigations(tmp_path)
    with pytest.raises(InvalidInput):
        inv.create(name)
    with pytest.raises(InvalidInput):
        inv.create("ok", seeds={name: ["1.2.3.4"]})
    assert inv.list() == []  # nothing half-created


def test_bad_values_are_refused_with_where(tmp_path: Path) -> None:
    inv = Investigations(tmp_path)
    with pytest.raises(InvalidInput, match=r"seed set 's', item 2: not an IP address: 'evil\.com'"):
        inv.create("x", seeds={"s": ["1.2.3.4", "evil.com"]})
    with pytest.raises(InvalidInput, match="unknown hunt parameter"):
        inv.create("x", params={"dayz": 3})
    with pytest.raises(InvalidInput, match="unknown source"):
        inv.create("x", sources={"shell": "rm"})
    with pytest.raises(InvalidInput, match="not a time"):
        inv.create("x", disclosed="yesterday")
    inv.create("x")
    with pytest.raises(AlreadyExists):
        inv.create("x")
    with pytest.raises(InvalidInput, match="flowpivot-hunt/1"):
        inv.record_run("x", {"format": "other"})
    with pytest.raises(NotFound):
        inv.record_run("nope", minimal_result())
    with pytest.raises(NotFound):
        inv.run_result(12345)


def test_runs_are_kept_in_order_with_their_result_and_store_state(tmp_path: Path) -> None:
    inv = Investigations(tmp_path)
    i = inv.create("x")
    r1 = minimal_result({"1.1.1.1": "active", "2.2.2.2": "active"}, ["9.9.9.9"])
    r2 = minimal_result({"1.1.1.1": "dark", "2.2.2.2": "active"})
    a = inv.record_run("x", r1, store_state={"fingerprint": "aa", "files": 3})
    b = inv.record_run(i.id, r2, store_state={"fingerprint": "bb", "files": 4})
    assert [r.id for r in inv.runs("x")] == [a.id, b.id] and b.id > a.id
    assert inv.run_result(a.id) == r1 and inv.run_result(b.id) == r2
    assert inv.run(b.id).store_state == {"fingerprint": "bb", "files": 4}
    assert a.summary["clusters"] == 1 and a.summary["members"] == 1
    assert b.summary["seed_status"] == {"active": 1, "dark": 1}
    got = inv.get("x")
    assert got.runs == 2 and got.last_run == b.time
    assert inv.last_run("x") == inv.run(b.id)
    inv.delete("x")  # its runs go with it
    with pytest.raises(NotFound):
        inv.run(a.id)


def test_schema_is_versioned_and_a_newer_file_is_refused(tmp_path: Path) -> None:
    inv = Investigations(tmp_path)
    assert inv.schema_version() == SCHEMA_VERSION
    con = sqlite3.connect(tmp_path / DB_NAME)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(WorkspaceError, match="newer flowpivot"):
        Investigations(tmp_path)
    # a file that is not SQLite is a clear error, not a traceback from deep inside
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(WorkspaceError, match=DB_NAME):
        Investigations(bad)


def test_readers_do_not_wait_for_a_writer_and_never_see_half_a_run(tmp_path: Path) -> None:
    inv = Investigations(tmp_path, busy_timeout_s=5)
    inv.create("x")
    inv.record_run("x", minimal_result())
    writer = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO runs (investigation, time, result) VALUES (1, 't', '{}')")
    # the writer holds its transaction: a reader (WAL) gets the committed state at once
    assert len(inv.runs("x")) == 1
    writer.execute("COMMIT")
    assert len(inv.runs("x")) == 2
    writer.close()


def test_concurrent_writers_from_threads(tmp_path: Path) -> None:
    inv = Investigations(tmp_path)
    inv.create("x")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                inv.record_run("x", minimal_result())
                inv.list()
        except BaseException as e:  # pragma: no cover - the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(inv.runs("x")) == 40


def test_seed_sets_from_files_read_as_the_hunt_reads_them(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text("86.104.72[.]16\n# comment\n10.0.0.0/30\nnot an address at all !\n")
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"Event": {"Attribute": [{"type": "ip-dst", "value": "5.6.7.8"}]}}))
    sets, seedset = seed_sets_from_files([f"fin7={a}", b])
    oracle = read_seeds([f"fin7={a}", str(b)])
    assert sets == {"fin7": sorted(s.ip for s in oracle.seeds if s.set == "fin7"), "b": ["5.6.7.8"]}
    assert len(sets["fin7"]) == 1 + 4
    assert [p.where for p in seedset.problems] == ["line 4"]


def test_many_processes_opening_a_new_workspace_at_once(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Investigations(tmp_path / "new").list()
        except BaseException as e:  # pragma: no cover - the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and Investigations(tmp_path / "new").schema_version() == SCHEMA_VERSION


def test_a_real_hunt_is_kept_whole(tmp_path: Path) -> None:
    """A hunt on a small simulated scenario, recorded and read back from another connection."""
    from flowpivot.hunt import hunt
    from flowpivot.ingest import ingest_paths
    from flowpivot.simulate import Scenario, simulate
    from flowpivot.store import Store

    simulate(Scenario(flows=60_000, days=8, dark_day=8, post_days=0), tmp_path / "scen")
    store = Store(tmp_path / "store")
    ingest_paths(sorted((tmp_path / "scen" / "exports").glob("*.pcap")), store)
    sets, _ = seed_sets_from_files([f"fin7={tmp_path / 'scen' / 'seeds.txt'}"])
    result = hunt(store, [tmp_path / "scen" / "seeds.txt"], asn_dbs=[tmp_path / "scen" / "asn.tsv"])
    inv = Investigations(tmp_path / "ws")
    inv.create("small", seeds=sets, params=HuntParams(), sources={"store": store.root})
    run = inv.record_run("small", result, store_state={"files": len(store.files())})
    back = Investigations(tmp_path / "ws").run_result(run.id)
    assert back == json.loads(json.dumps(result))
    validate_result(back)
    assert sets["fin7"] == sorted({s["ip"] for s in result["seeds"]}, key=lambda ip: tuple(map(int, ip.split("."))))
    assert run.summary["clusters"] == len(result["clusters"]) > 0
    assert run.summary["seeds"] == len(sets["fin7"]) == 25
    assert run.store_state == {"files": len(store.files())}

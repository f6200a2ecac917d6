"""Reach from the index's host-peer table: the same figures as the flow pass, the same hunt.

The expansion reads the reach of a new host that the host-peer table holds whole (rows on both
sides, every flow inside the window) from the table instead of its flows
(``reach.reach_from_peers``; docs/hunt.md, "Managed draws from a bound"). Oracles: the reach
pass over the same hosts' flows (``pivot.create_reach``), and the same hunt with the table not
used for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import flowpivot.hunt.expansion as ex
from flowpivot.hunt import hunt
from flowpivot.hunt.context import HuntContext
from flowpivot.hunt.keys import load_anchors
from flowpivot.hunt.pivot import create_reach, ipkey_macro
from flowpivot.hunt.reach import reach_from_peers
from flowpivot.store import Store
from flowpivot.store.index import build_index, index_plan

_COLS = "anchor, peer, peer_v4, flows, pk_est, initiator"


@pytest.fixture(scope="module")
def border(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    """The benchmark's border mix, 800,000 flows and 600 random seeds (one cluster, whose
    expansion judges a few hundred new hosts), indexed with host-peer rows from 16 flows a side."""
    from bench.hunt import build

    work = tmp_path_factory.mktemp("border")
    build(800_000, 600, work)
    (work / "datagrams.npy").unlink()
    store = Store(work / "store")
    build_index(store, host_day_min_flows=16)
    return store, work / "seeds.txt"


def _table(store: Store) -> pq.ParquetFile:
    gen = (store.root / "index" / "CURRENT").read_text().strip()
    return pq.ParquetFile(store.root / "index" / gen / "peers.parquet")


def _rows(con: HuntContext, table: str, keys: set[str]) -> list[tuple[Any, ...]]:
    return sorted(
        (a, p, v4, int(f), float(pk), i)
        for a, p, v4, f, pk, i in con.sql(f"SELECT {_COLS} FROM {table}").fetchall()
        if a in keys
    )


def test_reach_from_the_table_is_the_flow_pass_s_for_the_hosts_it_holds_whole(border: tuple[Store, Path]) -> None:
    store, _ = border
    t = _table(store).read(columns=["v4", "sides", "first_ms", "last_ms"]).to_pylist()
    span: dict[int, list[int]] = {}
    for r in t:
        s = span.setdefault(r["v4"], [r["sides"], r["first_ms"], r["last_ms"]])
        s[0], s[1], s[2] = min(s[0], r["sides"]), min(s[1], r["first_ms"]), max(s[2], r["last_ms"])
    lo, hi = min(s[1] for s in span.values()), max(s[2] for s in span.values())
    import ipaddress

    # every host of the table (both kinds: with rows on one side only, on both), and hosts it has not
    keys = sorted(f"{ipaddress.IPv4Address(v4)}" for v4 in span)
    keys += ["203.0.113.254", "198.51.100.77"]
    # the whole store, then a window that starts after the first flow of three in four of the
    # hosts with rows on both sides: the table holds only the others whole
    firsts = sorted(f for sides, f, _ in span.values() if sides >= 2)
    for since, until in ((lo - 1, hi + 1), (firsts[3 * len(firsts) // 4], hi + 1)):
        want_whole = {
            f"{ipaddress.IPv4Address(v4)}" for v4, (sides, f, last) in span.items() if sides >= 2 and f >= since
        }
        with HuntContext(store, threads=1) as con:
            ipkey_macro(con)
            con.use_index(index_plan(store, since, until), 800_000)
            rest = reach_from_peers(con, "a", keys, "fromtable", since, until)
            assert rest == [k for k in keys if k not in want_whole]
            load_anchors(con, "b", keys)
            create_reach(con, "b", "counted", since, until)
            whole = set(keys) - set(rest)
            got, want = _rows(con, "fromtable", whole), _rows(con, "counted", whole)
        assert len(whole) >= 0.2 * len(firsts) if since > lo else len(whole) == len(firsts)
        assert len(whole) >= 20, "too few hosts from the table: the test would prove little"
        assert len(got) > 10 * len(whole)
        assert got == want
        # the fan-in and fan-out the service rule reads: both kinds of initiator are there
        assert {r[-1] for r in got} >= {"anchor", "peer"}


def test_table_without_the_initiator_is_not_used(border: tuple[Store, Path], tmp_path: Path) -> None:
    """A table written before it held ``ac``/``pc`` (an older index): every host is counted."""
    store, _ = border
    old = tmp_path / "peers.parquet"
    pq.write_table(_table(store).read().drop_columns(["ac", "pc"]), old)
    with HuntContext(store, threads=1) as con:
        ipkey_macro(con)
        plan = index_plan(store, 0, 1 << 62)
        assert plan is not None
        plan.peers = old
        con.use_index(plan, 800_000)
        keys = ["10.0.0.1", "10.0.0.2"]
        assert reach_from_peers(con, "a", keys, "fromtable", 0, 1 << 62) == keys


def _plain(r: dict[str, Any]) -> str:
    """The result without what differs from run to run (its time, the stages' timings)."""
    prov = {k: v for k, v in r["provenance"].items() if k not in ("generated", "timings_s")}
    return json.dumps({**r, "provenance": prov}, sort_keys=True, default=str)


def test_hunt_reading_reach_from_the_table_gives_the_counted_hunt_s_result(
    border: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, seeds = border
    served: list[int] = []

    def spy(con: Any, name: str, keys: Any, out: str, since: int, until: int) -> list[str]:
        rest = reach_from_peers(con, name, keys, out, since, until)
        served.append(len(keys) - len(rest))
        return rest

    monkeypatch.setattr(ex, "reach_from_peers", spy)
    fast = hunt(store, [seeds])
    assert sum(served) >= 50, "the expansion read few hosts from the table: the test would prove little"
    monkeypatch.setattr(ex, "reach_from_peers", lambda con, name, keys, out, since, until: list(keys))
    counted = hunt(store, [seeds])
    assert fast["clusters"] and fast["excluded"]
    assert _plain(fast) == _plain(counted), "the results differ"

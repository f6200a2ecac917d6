"""The Parquet store: round trip, idempotent keys, atomic writes under SIGKILL, expiry, CLI output."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.schema import STORE_SCHEMA, conform, from_output, markdown_table, to_output
from flowpivot.store import DAY_MS, Store, parse_duration, parse_time

T0 = parse_time("2024-05-01T00:00:00Z")


def _flows(n: int, t0: int = T0, step_ms: int = 3_600_000, v6_every: int = 3) -> pa.Table:
    rng = np.random.default_rng(n)
    src4 = rng.integers(1, 2**32 - 1, size=n, dtype=np.uint32)
    is6 = np.arange(n) % v6_every == 0
    v6 = [bytes([0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [i % 256]) for i in range(n)]
    cols = {
        "start": t0 + np.arange(n, dtype=np.int64) * step_ms,
        "end": t0 + np.arange(n, dtype=np.int64) * step_ms + 1500,
        "src_addr_v4": pa.array(np.where(is6, 0, src4), pa.uint32()).to_pylist(),
        "src_addr_v6": pa.array([v if s else None for v, s in zip(v6, is6, strict=True)], pa.binary(16)),
        "dst_addr_v4": pa.array(rng.integers(1, 2**32 - 1, size=n, dtype=np.uint32)),
        "src_port": rng.integers(0, 65535, size=n, dtype=np.uint16),
        "dst_port": np.full(n, 443, np.uint16),
        "protocol": np.full(n, 6, np.uint8),
        "tcp_flags": np.full(n, 0x1B, np.uint16),
        "packets": rng.integers(1, 1000, size=n, dtype=np.uint64),
        "bytes": rng.integers(40, 10**6, size=n, dtype=np.uint64),
        "sampling_rate": np.full(n, 100, np.uint32),
        "exporter": ["192.0.2.1"] * n,
    }
    v4 = cols["src_addr_v4"]
    cols["src_addr_v4"] = pa.array([None if s else a for a, s in zip(v4, is6, strict=True)], pa.uint32())
    return pa.Table.from_batches([conform(cols, n)])


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    t = _flows(200)
    st = Store(tmp_path)
    res = st.write(t, "k1")
    assert res.rows == 200 and len(res.files) == len(
        {int(x) // DAY_MS for x in t.column("start").cast(pa.int64()).to_pylist()}
    )
    back = st.query()
    assert back.schema == STORE_SCHEMA
    key = ["start", "src_port"]
    assert back.sort_by([(k, "ascending") for k in key]).equals(t.sort_by([(k, "ascending") for k in key]))


def test_interchange_form_round_trip() -> None:
    t = _flows(50)
    out = to_output(t)
    assert out.column("src_addr")[0].as_py() == "2001:db8::"
    assert out.column("src_addr")[1].as_py().count(".") == 3
    assert pa.Table.from_batches([from_output(out)]).equals(t)


def test_same_key_twice_does_not_duplicate(tmp_path: Path) -> None:
    st = Store(tmp_path)
    st.write(_flows(100), "same")
    again = st.write(_flows(100), "same")
    assert again.skipped
    assert st.stats()["flows"] == 100


def test_filters(tmp_path: Path) -> None:
    t = _flows(300)
    st = Store(tmp_path)
    st.write(t, "k")
    out = to_output(t).to_pylist()
    one = next(r["src_addr"] for r in out if ":" not in r["src_addr"])
    assert st.query(ip=one).num_rows == sum(1 for r in out if one in (r["src_addr"], r["dst_addr"]))
    assert st.query(ip="2001:db8::/32").num_rows == sum(1 for r in out if r["src_addr"].startswith("2001:db8"))
    since, until = T0 + 10 * 3_600_000, T0 + 20 * 3_600_000
    assert st.query(since=since, until=until).num_rows == sum(
        1 for i in range(300) if T0 + i * 3_600_000 + 1500 >= since and T0 + i * 3_600_000 < until
    )
    assert st.query(port=443).num_rows == 300


def test_expire_removes_only_old_days(tmp_path: Path) -> None:
    st = Store(tmp_path)
    st.write(_flows(24 * 10), "k")  # ten days, one flow an hour
    removed = st.expire(parse_duration("3d"), now_ms=T0 + 10 * DAY_MS)
    assert removed == [f"2024-05-0{d}" for d in range(1, 8)]
    assert st.stats()["flows"] == 24 * 3
    assert sorted(p.name for p in (tmp_path / "flows").iterdir()) == [
        "day=2024-05-08",
        "day=2024-05-09",
        "day=2024-05-10",
    ]


def test_empty_store_queries(tmp_path: Path) -> None:
    st = Store(tmp_path / "nothing")
    assert st.query().num_rows == 0
    assert st.stats()["flows"] == 0
    assert st.time_range() is None


_WRITER = r"""
import sys, numpy as np, pyarrow as pa
sys.path.insert(0, sys.argv[2])
from tests.test_store import _flows
from flowpivot.store import Store
st = Store(sys.argv[1])
t = _flows(300_000, step_ms=20)
for i in range(1000):
    st.write(t, f"k{i}")
"""


@pytest.mark.parametrize("kill_after", ["first_temp", "first_commit", "second_temp"])
def test_sigkill_never_leaves_a_partial_file_visible(tmp_path: Path, kill_after: str) -> None:
    repo = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), repo])
    flows = tmp_path / "flows"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            temps = list(flows.glob("day=*/.tmp-*")) if flows.exists() else []
            finals = list(flows.glob("day=*/*.parquet")) if flows.exists() else []
            if (
                (kill_after == "first_temp" and temps)
                or (kill_after == "first_commit" and finals)
                or (kill_after == "second_temp" and any(p.name.startswith(".tmp-k1") for p in temps))
            ):
                break
            if proc.poll() is not None:
                pytest.fail("writer exited early")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    st = Store(tmp_path)
    for f in st.files():
        pq.read_table(f)  # every visible file is complete
    n = st.stats()["flows"]
    assert n % 300_000 == 0  # only whole inputs are visible
    if kill_after == "first_temp":
        assert list(flows.glob("day=*/.tmp-*")), "the kill should have caught a write in progress"
        st.writer("next").abort()  # the next writer removes what the killed one left, at once
        assert not list(flows.glob("day=*/.tmp-*")) and not list((tmp_path / ".writers").glob("*"))
    else:
        assert n >= 300_000
        con = duckdb.connect()
        assert con.execute(f"SELECT count(*) FROM read_parquet('{st.glob}')").fetchone()[0] == n


_DIES = r"""
import os, sys
sys.path.insert(0, sys.argv[2])
import flowpivot.store as store
from tests.test_store import _flows
store.ROW_GROUP_ROWS = 10
w = store.Store(sys.argv[1]).writer("dead")
w.write(_flows(30, step_ms=1000))  # flushed: a temporary file exists
os._exit(0)  # gone without commit or abort, as a killed writer
"""


def test_a_dead_writers_temporary_files_go_at_once_a_live_ones_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowpivot.store as store

    repo = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", _DIES, str(tmp_path), repo], check=True)
    left = list(tmp_path.glob("flows/day=*/.tmp-dead-*.parquet.partial"))
    assert len(left) == 1 and len(list((tmp_path / ".writers").glob("*.lock"))) == 1

    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 10)
    st = Store(tmp_path)
    live = st.writer("live")
    live.write(_flows(30, step_ms=1000))
    mine = list(tmp_path.glob("flows/day=*/.tmp-live-*.parquet.partial"))
    assert len(mine) == 1 and not any(p.exists() for p in left)  # the dead one's went when "live" began

    Store(tmp_path).writer("other").abort()  # another writer while "live" still writes
    assert all(p.exists() for p in mine)
    assert live.commit().rows == 30 and st.query().num_rows == 30
    assert not list(tmp_path.glob("flows/day=*/.tmp-*")) and not list((tmp_path / ".writers").glob("*"))


def test_cli_flows_outputs_parse_back(tmp_path: Path) -> None:
    t = _flows(40)
    Store(tmp_path / "s").write(t, "k")
    r = CliRunner()
    res = r.invoke(app, ["flows", "--store", str(tmp_path / "s"), "--output", "jsonl"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 40
    assert rows[0]["start"] == "2024-05-01T00:00:00.000Z" and rows[0]["end"] == "2024-05-01T00:00:01.500Z"
    assert rows[0]["src_addr"] == "2001:db8::" and rows[0]["sampling_rate"] == 100
    res = r.invoke(
        app, ["flows", "--store", str(tmp_path / "s"), "--output", "csv", "--port", "443", "--ip", "2001:db8::/32"]
    )
    assert res.exit_code == 0
    csv = pacsv.read_csv(pa.py_buffer(res.stdout.encode()))
    assert csv.num_rows == 14 and set(csv.column("src_addr").to_pylist()) <= {
        f"2001:db8::{i:x}" if i else "2001:db8::" for i in range(256)
    }
    res = r.invoke(
        app, ["flows", "--store", str(tmp_path / "s"), "--output", "parquet", "--out", str(tmp_path / "o.parquet")]
    )
    assert res.exit_code == 0
    assert pa.Table.from_batches([from_output(pq.read_table(tmp_path / "o.parquet"))]).equals(t)


def test_cli_stats_and_expire(tmp_path: Path) -> None:
    Store(tmp_path).write(_flows(48), "k")
    r = CliRunner()
    res = r.invoke(app, ["stats", "--store", str(tmp_path), "--json"])
    s = json.loads(res.stdout)
    assert s["flows"] == 48 and s["days"] == [
        {"day": "2024-05-01", "flows": 24, "files": 1},
        {"day": "2024-05-02", "flows": 24, "files": 1},
    ]
    assert s["sampling_rates"] == [{"sampling_rate": 100, "flows": 48}]
    assert s["exporters"][0]["exporter"] == "192.0.2.1"
    res = r.invoke(app, ["expire", "--store", str(tmp_path), "--older-than", "1d", "--now", "2024-05-03T00:00:00Z"])
    assert res.exit_code == 0 and res.stdout.split() == ["2024-05-01"]


def test_bad_duration_and_time_are_clear_errors(tmp_path: Path) -> None:
    r = CliRunner()
    res = r.invoke(app, ["expire", "--store", str(tmp_path), "--older-than", "ninety days"])
    assert res.exit_code == 2 and "not a duration" in res.output
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


def test_schema_doc_is_generated_from_the_table() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text()
    assert markdown_table() in doc


def test_files_written_before_a_column_was_added_still_read(tmp_path: Path) -> None:
    """A store keeps files of every schema it ever had: a file from before a column was added
    (``sample_pool``, added for sFlow) reads beside new ones, in either order, with the column
    null for it."""
    st = Store(tmp_path)
    w = st.writer("new")
    w.write(_flows(5))
    w.commit()
    day = next(st.flows_dir.glob("day=*"))
    old = pq.read_table(next(day.glob("*.parquet")))
    assert "sample_pool" in old.column_names
    pq.write_table(old.drop(["sample_pool"]).slice(0, 2), day / "0-older.parquet")  # sorts first
    pq.write_table(old.drop(["sample_pool"]).slice(2, 1), day / "zz-older.parquet")  # sorts last
    t = st.query()
    assert t.num_rows == 8 and t.column("sample_pool").null_count == 8
    res = CliRunner().invoke(app, ["flows", "--store", str(tmp_path), "--output", "csv"])
    assert res.exit_code == 0 and len(res.stdout.strip().splitlines()) == 9

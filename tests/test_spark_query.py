"""``flows -f``, ``flows -s`` and ``stats`` on Spark give what they give on DuckDB, row for row.

The oracle for the Spark dialect is the DuckDB path, itself held to nfdump by test_query_filter and
test_query_stats on the same stores: a real nfcapd's file of the recorded v5/v9/IPFIX exports, the
Stratosphere nfdump file, and a store of three real sources over two days (the Stratosphere nfdump
file, a labelled Zeek conn.log with biflows, a CTU Argus file). Spark runs in local mode with one
core, as CI runs it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import shared
from test_query_filter import ASN_DB, EXPRESSIONS
from test_query_filter import files as files  # noqa: F401, PLC0414  (a module fixture)
from test_query_filter import nfcapd_file as nfcapd_file  # noqa: F401, PLC0414
from typer.testing import CliRunner

from flowpivot.cli import app
from flowpivot.ingest import ingest_paths
from flowpivot.query import STAT_FIELDS, AsnTable, StatSpec, flows_filter, parse_filter, select_flows, top_n, where_sql
from flowpivot.query import spark as on_spark
from flowpivot.query.sql import SPARK, render
from flowpivot.schema import STORE_SCHEMA, to_output
from flowpivot.spark import spark_session
from flowpivot.store import Store

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    yield spark_session("local[1]", {"spark.sql.shuffle.partitions": "2"})


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Three real sources, two days apart (2018-01-12 and 2023-02-22), biflows among them."""
    store = Store(tmp_path_factory.mktemp("mixed") / "store")
    paths = [
        shared("stratosphere/test1-malicious.nfdump"),
        shared("stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"),
        shared("realworld/stratosphere/test2-malicious.binetflow"),
    ]
    for rep in ingest_paths(paths, store):
        assert rep.status == "ingested", rep.problems
    return store


@pytest.fixture(scope="module")
def stores(files: dict[str, tuple[Path, Store]], mixed: Store) -> dict[str, Store]:
    return {**{name: st for name, (_, st) in files.items()}, "mixed": mixed}


def _rows(t: pa.Table) -> Counter:
    return Counter(tuple(r.values()) for r in to_output(t).to_pylist())


# flowpivot's own forms on top of nfdump's: ranges, exporter names (text parameters), the v6 edges
EXTRA = [
    "port 900-905 or port in [20-22 53]",
    'exporter "zeek" or exporter zeek',
    "router ip 147.32.82.62 or router ip 127.0.0.1",
    "net ::/0",
    "src net 2001:db8::/33 or dst net ff00::/8",
    "ip in [0.0.0.0/0]",
    "in bytes > 0 and not in packets < 2",
    "duration >= 0 and duration <= 100000",
]


def test_every_filter_selects_the_same_flows(stores: dict[str, Store], spark: Any) -> None:
    """Every expression of test_query_filter (each checked there against nfdump) and flowpivot's own
    forms, on each store: the flows DuckDB selects are the flows Spark selects. One Spark scan per
    store evaluates all of them, each as a column, through the Spark dialect's renderer."""
    exprs = EXPRESSIONS + EXTRA
    for name, store in stores.items():
        on_spark.read_store(spark, str(store.root.resolve())).createOrReplaceTempView("flows")
        cols, params = [], []
        for i, e in enumerate(exprs):
            sql, p = render(parse_filter(e), SPARK)
            cols.append(f"coalesce(({sql}), FALSE) AS m{i}")
            params += p
        fields = ", ".join(SPARK.q(f.name) for f in STORE_SCHEMA)
        t = spark.sql(f"SELECT {fields}, {', '.join(cols)} FROM flows", args=params).toArrow()
        flows = on_spark.to_store_form(t.select([f.name for f in STORE_SCHEMA]))
        split = 0
        for i, e in enumerate(exprs):
            want = _rows(select_flows(store, parse_filter(e)))
            got = _rows(flows.filter(t.column(f"m{i}")))
            assert got == want, f"{name}: {e}"
            split += 0 < sum(want.values()) < flows.num_rows
        assert split >= 30, name  # the comparison splits the records, it does not just pass all or none


def test_the_select_path_with_window_limit_and_order(stores: dict[str, Store], spark: Any) -> None:
    """select_flows on Spark: the same flows in the same time order, the window and --limit kept."""
    store = stores["mixed"]
    loc = str(store.root.resolve())
    lo, hi = 1515771460000, 1677024300000  # 2018-01-12T15:37:40Z .. 2023-02-22T00:05:00Z: cuts both days
    for expr, since, until, limit in (
        ("proto tcp", None, None, None),
        ("not net 147.32.0.0/16", lo, None, None),
        ("any", None, hi, None),
        ("port 443 or port 5888", lo, hi, None),
        ("any", lo, hi, 50),
    ):
        node = parse_filter(expr)
        a = on_spark.select_flows(spark, loc, node, since, until, limit)
        b = select_flows(store, node, since, until, limit)
        assert a.schema == STORE_SCHEMA
        starts = a.column("start").to_pylist()
        assert starts == sorted(starts) == b.column("start").to_pylist(), expr
        if limit is None:
            assert _rows(a) == _rows(b), expr
        assert 0 < a.num_rows < store.query().num_rows, expr


def _files_read(df: Any) -> int:
    """Collect ``df`` and read its scan's ``numFiles`` metric: the files Spark opened after pruning."""
    df.collect()
    leaves = df._jdf.queryExecution().executedPlan().collectLeaves().iterator()
    n = 0
    while leaves.hasNext():
        m = leaves.next().metrics()
        if m.contains("numFiles"):
            n += int(m.get("numFiles").get().value())
    return n


def test_until_prunes_day_partitions(stores: dict[str, Store], spark: Any) -> None:
    """A flow is filed under the day it starts: an --until before a day leaves that day's files unread."""
    store = stores["mixed"]
    loc = str(store.root.resolve())
    files = store.files()
    days = sorted({p.parent.name for p in files})
    assert len(days) >= 3 and _files_read(on_spark.read_store(spark, loc)) == len(files)
    until = 1515801600000  # 2018-01-13T00:00Z: the first day only
    assert days[0] == "day=2018-01-12"
    want = sum(1 for p in files if p.parent.name == days[0])
    assert 0 < _files_read(on_spark.read_store(spark, loc, until=until)) == want < len(files)


ORDERED = [
    (field, order)
    for i, field in enumerate(STAT_FIELDS)
    for order in (("flows", "packets", "bytes") if field in ("ip", "port") else (("flows", "packets", "bytes")[i % 3],))
]


@pytest.mark.parametrize(("field", "order"), ORDERED)
def test_statistics_are_the_same(stores: dict[str, Store], spark: Any, field: str, order: str) -> None:
    """Every -s field (both orders' counting of biflows for ip and port), top 10 and all, with and
    without a filter: the same rows, values, first/last times and totals."""
    spec = StatSpec(field, order)
    for name in ("nfcapd", "mixed"):
        store = stores[name]
        for expr, n in (("any", 10), ("proto tcp and not port 80", 0)):
            node = parse_filter(expr)
            where, params = where_sql(node)
            want = top_n(store.connect(), spec, where, params, n)
            got = on_spark.top_n(spark, str(store.root.resolve()), spec, node, n=n)
            assert got == want, (name, expr)
            assert want[0], (name, expr)


def test_as_statistics_through_an_asn_database_are_the_same(stores: dict[str, Store], spark: Any) -> None:
    """AS statistics and ``as`` filters from the database: addresses grouped on the engine, ASes on the driver."""
    asn = AsnTable.open([shared(ASN_DB)])
    store = stores["nfcapd"]
    for field, expr in (("dstas", "any"), ("as", "not as 15169")):
        node = flows_filter(expr, asn=asn)
        where, params = where_sql(node)
        want = top_n(store.connect(), StatSpec(field, "bytes"), where, params, 5, asn)
        got = on_spark.top_n(spark, str(store.root.resolve()), StatSpec(field, "bytes"), node, n=5, asn=asn)
        assert got == want and len(want[0]) > 1, field


def test_store_stats_are_the_same(stores: dict[str, Store], spark: Any) -> None:
    for name, store in stores.items():
        want = store.stats()
        got = on_spark.store_stats(spark, str(store.root.resolve()), str(store.root))
        assert got == want, name


def _cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_cli_flows_and_stats_take_the_engine_flags(stores: dict[str, Store], spark: Any) -> None:
    """The commands with ``--engine spark --spark-master local[1] --spark-conf K=V``: the same output."""
    s = str(stores["mixed"].root)
    flags = ["--engine", "spark", "--spark-master", "local[1]", "--spark-conf", "spark.sql.shuffle.partitions=2"]
    for args in (
        ["flows", "--store", s, "-f", "proto udp or flags R", "-o", "jsonl"],
        ["flows", "--store", s, "-f", "net 147.32.0.0/16", "-s", "ip/flows/bytes", "-s", "dstport", "-n", "5"],
        ["flows", "--store", s, "--ip", "66.63.168.35", "-s", "srcip/packets", "-o", "csv"],
        ["stats", "--store", s, "--json"],
    ):
        code, want, _ = _cli(*args)
        code2, got, err = _cli(*args, *flags)
        assert code == code2 == 0, err
        if args[-1] == "jsonl":  # flows that start in the same ms may come in either order
            assert sorted(got.splitlines()) == sorted(want.splitlines()) and len(want.splitlines()) > 10
            assert [json.loads(x)["start"] for x in got.splitlines()] == [
                json.loads(x)["start"] for x in want.splitlines()
            ]
        else:
            assert got == want and got.strip()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--engine", "oracle"], "--engine is duckdb or spark"),
        (["--spark-master", "local[1]"], "need --engine spark"),
        (["--spark-conf", "spark.executor.memory=1g"], "need --engine spark"),
        (["--engine", "spark", "--spark-conf", "spark.executor.memory"], "wants KEY=VALUE"),
    ],
)
def test_cli_refuses_bad_engine_flags(stores: dict[str, Store], args: list[str], words: str) -> None:
    for cmd in ("flows", "stats"):
        code, _, err = _cli(cmd, "--store", str(stores["mixed"].root), *args)
        assert code == 2 and words in err, (cmd, args, err)

"""The same hunt on DuckDB and on Spark: every scenario family, FIN7 and the real-data cases.

Each case is ingested once and hunted twice, on DuckDB (the embedded default) and with
``engine="spark"`` on one local SparkSession shared by the module (``local[2]``, two shuffle
partitions). The two results must be equal in everything but the run's timings and the engine's
name: clusters, members, seeds, overlaps, expansion, victims, probes, exclusions with their
reasons, near-misses, pairs, seed status and the window's flow and host counts. The oracle is
the DuckDB hunt, which tests/test_scenario_library.py and tests/test_hunt_real.py hold to the
simulator's ground truth and to nfdump and Zeek's own records.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import shared
from test_hunt_real import zeek_log_in_1970

from flowpivot.hunt import hunt, validate_result
from flowpivot.ingest import ingest_paths
from flowpivot.simulate.library import family_names, generate, input_files
from flowpivot.store import Store

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ZEEK = "stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"
#: What is allowed to differ: when and how long it ran, and on what.
RUN_KEYS = ("timings_s", "generated", "engine")


@pytest.fixture(scope="module")
def spark(request: pytest.FixtureRequest) -> Any:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from flowpivot.spark import spark_session

    s = spark_session("local[2]", {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"})
    yield s
    s.stop()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if SPARK_SECONDS and reporter is not None and capman is not None:  # the suite's Spark part (CI: ~10 min)
        with capman.global_and_fixture_disabled():
            reporter.write_line(f"\nSpark hunts: {len(SPARK_SECONDS)} in {sum(SPARK_SECONDS):.0f} s")


#: Wall time of each Spark hunt of the module (printed at its end: the suite's Spark part).
SPARK_SECONDS: list[float] = []


def _both(spark: Any, store: Store, seeds: list[Path], **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    duck = hunt(store, seeds, **kw)
    t0 = time.perf_counter()
    on_spark = hunt(store, seeds, engine="spark", spark=spark, **kw)
    SPARK_SECONDS.append(time.perf_counter() - t0)
    validate_result(on_spark)
    assert duck["provenance"]["engine"] == "duckdb" and on_spark["provenance"]["engine"] == "spark"
    return duck, on_spark


def assert_same(duck: dict[str, Any], on_spark: dict[str, Any]) -> None:
    """Equal results but for the run's keys; a difference is shown section by section."""
    a, b = json.loads(json.dumps(duck)), json.loads(json.dumps(on_spark))
    for r in (a, b):
        for k in RUN_KEYS:
            r["provenance"].pop(k, None)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], f"{key} differs between DuckDB and Spark"


def _nonempty(r: dict[str, Any], *keys: str) -> None:
    """The comparison is not vacuous: the case produced what it is about."""
    for k in keys:
        assert r[k], f"the case has no {k}"


# ----- the scenario families ------------------------------------------------------------------------

#: What each family's draw 0 (small) holds, so a family whose comparison would be empty is noticed.
FAMILY_HOLDS: dict[str, tuple[str, ...]] = {
    "chained-rotating": ("clusters", "expansion"),
    "many-groups": ("clusters",),
    "mesh-operators": ("clusters",),
    "nat-and-exits": ("excluded",),
    "noisy-provider": ("clusters", "excluded"),
    "one-asn-groups": ("clusters",),
    "seed-churn": ("clusters",),
    "thin-sampling-v6": ("clusters",),
    "victims-probes": ("clusters", "victims", "probes"),
}


@pytest.mark.parametrize("family", family_names())
def test_family_same_on_spark(family: str, spark: Any, tmp_path: Path) -> None:
    truth = generate(family, 0, tmp_path / "sim", "small")
    files, seeds, asn = input_files(tmp_path / "sim", truth)
    store = Store(tmp_path / "store")
    ingest_paths(files, store)
    exits = sorted(ip for ip, role in truth.get("hosts", {}).items() if "exit" in role)
    allow = None
    if exits:  # as tests/test_scenario_library.py hunts it: the exits as an allowlist
        allow = tmp_path / "exits.txt"
        allow.write_text("".join(f"{ip}  public exit list\n" for ip in exits))
    duck, on_spark = _both(spark, store, seeds, asn_dbs=[asn], allowlist=allow)
    _nonempty(duck, "seeds", *FAMILY_HOLDS.get(family, ()))
    assert_same(duck, on_spark)


# ----- FIN7 -------------------------------------------------------------------------------------------


def test_fin7_same_on_spark(spark: Any, tmp_path: Path) -> None:
    """The FIN7 scenario of tests/test_hunt_real.py (two clusters sharing 12 seeds, 5 new hosts)."""
    from flowpivot.simulate import Scenario, simulate

    simulate(Scenario(flows=150_000, seed=21), tmp_path / "sim")
    store = Store(tmp_path / "store")
    ingest_paths(sorted((tmp_path / "sim" / "exports").glob("*.pcap")), store)
    duck, on_spark = _both(spark, store, [tmp_path / "sim" / "seeds.txt"], asn_dbs=[tmp_path / "sim" / "asn.tsv"])
    _nonempty(duck, "clusters", "overlaps", "expansion", "victims")
    assert_same(duck, on_spark)


# ----- the real-data cases ------------------------------------------------------------------------------


def test_zeek_remcos_same_on_spark(spark: Any, tmp_path: Path) -> None:
    """CTU's Zeek log: a C2 refusing 718 attempts (a rejected victim), an unanswered seed."""
    store = Store(tmp_path / "store")
    ingest_paths([shared(ZEEK)], store)
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("66.63.168.35\n")
    duck, on_spark = _both(spark, store, [seeds])
    _nonempty(duck, "victims", "pairs")
    assert_same(duck, on_spark)


def test_zeek_dated_1970_same_on_spark(spark: Any, tmp_path: Path) -> None:
    """The same log shifted to 1970: a window that starts before the epoch."""
    log = zeek_log_in_1970(tmp_path)
    store = Store(tmp_path / "store")
    ingest_paths([log], store)
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("66.63.168.35\n")
    duck, on_spark = _both(spark, store, [seeds])
    assert duck["window"]["start"].startswith("1969-12-02")
    _nonempty(duck, "victims")
    assert_same(duck, on_spark)


def test_nfdump_burst_same_on_spark(spark: Any, tmp_path: Path) -> None:
    """CTU's nfdump capture: a retry storm of 2,305 SYNs to port 902 (a probe)."""
    store = Store(tmp_path / "store")
    ingest_paths([shared("stratosphere/test1-malicious.nfdump")], store)
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("147.32.82.62\n")
    duck, on_spark = _both(spark, store, [seeds], days=3650)
    _nonempty(duck, "probes")
    assert_same(duck, on_spark)


@pytest.mark.parametrize("kw", [{"sampling": 1000}, {"ipv6_seeds": True}], ids=["1:1000", "ipv6"])
def test_simulated_variants_same_on_spark(spark: Any, tmp_path: Path, kw: dict[str, Any]) -> None:
    """tests/test_hunt_real.py's sampled and IPv6 variants of the FIN7 scenario."""
    from flowpivot.simulate import Scenario, simulate

    simulate(Scenario(flows=150_000, seed=21, **kw), tmp_path / "sim")
    store = Store(tmp_path / "store")
    ingest_paths(sorted((tmp_path / "sim" / "exports").glob("*.pcap")), store)
    duck, on_spark = _both(spark, store, [tmp_path / "sim" / "seeds.txt"], asn_dbs=[tmp_path / "sim" / "asn.tsv"])
    _nonempty(duck, "clusters")
    assert_same(duck, on_spark)


# ----- a store given as a URL, and the command line -------------------------------------------------------


def test_store_url_reads_partitions_and_computes_the_sketches(spark: Any, tmp_path: Path) -> None:
    """A store named by a Hadoop URL (``file://`` here; ``s3a://`` and the others take the same
    path) is listed and read by Spark, and its population is computed by Spark tasks: the result
    equals DuckDB's on the local path, hosts_in_window (the sketch files' figure) included."""
    from flowpivot.spark import SparkStore

    store = Store(tmp_path / "store")
    ingest_paths([shared("stratosphere/test1-malicious.nfdump")], store)
    url = (tmp_path / "store").as_uri()
    st = SparkStore(spark, url)
    assert sorted(Path(f.removeprefix("file:")).resolve() for f in st.files()) == store.files()
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("147.32.82.62\n")
    duck = hunt(store, [seeds], days=3650)
    on_spark = hunt(url, [seeds], days=3650, engine="spark", spark=spark)
    assert on_spark["provenance"]["store"] == url
    assert on_spark["provenance"]["hosts_in_window"] == duck["provenance"]["hosts_in_window"] > 0
    for r in (duck, on_spark):
        r["provenance"].pop("store")
    assert_same(duck, on_spark)


def test_window_reads_only_its_days(spark: Any, tmp_path: Path) -> None:
    """The view of a window holds the day partitions it overlaps and no other."""
    from flowpivot.spark import SparkStore

    store = Store(tmp_path / "store")
    ingest_paths([shared(ZEEK)], store)
    days = sorted(p.parent.name for p in store.files())
    st = SparkStore(spark, tmp_path / "store")
    first = next(iter(st.days()))
    assert [f"day={_date(d)}" for d in st.days()] == days
    inside = st.frame(first * 86_400_000, first * 86_400_000 + 1).inputFiles()
    outside = st.frame((first + 2) * 86_400_000, (first + 3) * 86_400_000).inputFiles()
    assert inside and all(f"day={_date(first)}" in f for f in inside)
    assert outside == []


def _date(day: int) -> str:
    import datetime as dt

    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def test_cli_hunt_engine_spark(spark: Any, tmp_path: Path) -> None:
    """``flowpivot hunt --engine spark --spark-master ... --spark-conf ...`` gives DuckDB's result."""
    from typer.testing import CliRunner

    from flowpivot.cli import app

    store = Store(tmp_path / "store")
    ingest_paths([shared(ZEEK)], store)
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("66.63.168.35\n")
    base = ["hunt", "--store", str(tmp_path / "store"), "--seeds", str(seeds), "-q"]
    run = CliRunner().invoke
    d = run(app, [*base, "-o", str(tmp_path / "d.json")])
    assert d.exit_code == 0, d.output
    s = run(
        app,
        [*base, "-o", str(tmp_path / "s.json"), "--engine", "spark", "--spark-master", "local[2]",
         "--spark-conf", "spark.sql.shuffle.partitions=2"],
    )  # fmt: skip
    assert s.exit_code == 0, s.output
    assert_same(json.loads((tmp_path / "d.json").read_text()), json.loads((tmp_path / "s.json").read_text()))
    bad = run(app, [*base, "--engine", "spark", "--spark-conf", "no-equals-sign"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
    bad = run(app, [*base, "--spark-master", "local[2]"])
    assert bad.exit_code == 2 and "--engine spark" in bad.output


# ----- the dialect helpers, each against both engines and Python ---------------------------------------------


def test_dialect_helpers_agree(spark: Any) -> None:
    """Each Dialect spelling computes the same value on its engine as Python does."""
    import ipaddress

    import duckdb

    from flowpivot.engine import DUCKDB, SPARK
    from flowpivot.hunt.keys import key_of
    from flowpivot.hunt.pivot import ipkey_macro

    class _Duck:  # what ipkey_macro needs of a context
        d = DUCKDB

        def __init__(self) -> None:
            self.con = duckdb.connect()

        def execute(self, q: str) -> Any:
            return self.con.execute(q)

    ms = 1_717_171_717_123
    v4, v6 = int(ipaddress.IPv4Address("203.0.113.7")), ipaddress.IPv6Address("2001:db8::1").packed.hex()
    want = [ms, ms, ms // 3_600_000, key_of("203.0.113.7"), key_of("2001:db8::1"), [1, 2, 3], [5]]

    def query(d: Any) -> str:
        return (
            f"SELECT {d.epoch_ms(d.ts_ms(ms))}, any_value({d.epoch_ms('t')}), any_value({d.idiv('x', 3_600_000)}),"
            f" any_value({d.ipkey('a', 'CAST(NULL AS BINARY)' if d.spark else 'NULL::BLOB')}),"
            f" any_value({d.ipkey('CAST(NULL AS BIGINT)', 'b')}), {d.sorted_list('y')}, {d.distinct_list('z')}"
            f" FROM (SELECT {d.ts_ms(ms)} AS t, {ms} AS x, {v4} AS a, unhex('{v6}') AS b,"
            " y, 5 AS z FROM (VALUES (3), (1), (2)) AS v(y))"
        )

    duck = _Duck()
    ipkey_macro(duck)
    got_duck = list(duck.con.sql(query(DUCKDB)).fetchall()[0])
    got_spark = list(spark.sql(query(SPARK)).collect()[0])
    assert got_duck == want
    assert got_spark == want


def test_stage_tables_on_both_contexts(spark: Any, tmp_path: Path) -> None:
    """create_table, insert_into, load_table and drop_table do the same on DuckDB and Spark."""
    import pyarrow as pa

    from flowpivot.hunt.context import HuntContext
    from flowpivot.spark.context import SparkHuntContext
    from flowpivot.spark.store import SparkStore

    store = Store(tmp_path / "store")
    ingest_paths([shared(ZEEK)], store)
    got = []
    for ctx in (HuntContext(store), SparkHuntContext(SparkStore(spark, tmp_path / "store"))):
        with ctx:
            ctx.load_table("t_keys", pa.table({"k": pa.array([3, 1], pa.uint32())}))
            ctx.create_table("t", "SELECT k, k * 2 AS k2 FROM t_keys WHERE k > 1")
            ctx.insert_into("t", "SELECT k, 0 AS k2 FROM t_keys")
            ctx.drop_table("t_keys")
            rows = sorted(ctx.sql("SELECT k, k2 FROM t").fetchall())
            n = ctx.sql("SELECT count(*) FROM flows").fetchall()[0][0]
            got.append((rows, n))
    assert got[0] == got[1] == ([(1, 0), (3, 0), (3, 6)], 766)

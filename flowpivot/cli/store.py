"""CLI for the store: ``flows``, ``stats`` and ``expire``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from rich.table import Table
from rich.text import Text

from ..schema import to_output
from ..store import parse_duration, parse_time
from ..store.check import require_store
from ..store.export import read_flows, store_stats, write_flows
from ..textsafe import visible
from .common import err, errors_as_exit, fail, out

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="Flow store directory.")]

# --engine spark: the store may be a URL (s3a://, hdfs://), which a Path would mangle
EngineOpt = Annotated[str, typer.Option("--engine", help="duckdb (embedded, the default) or spark (docs/scale.md).")]
SparkMasterOpt = Annotated[
    str | None,
    typer.Option(
        "--spark-master", help="With --engine spark: the master URL (spark://HOST:7077, yarn, local[4]); local[*]."
    ),
]
SparkConfOpt = Annotated[
    list[str] | None,
    typer.Option("--spark-conf", help="With --engine spark: a Spark setting KEY=VALUE; repeat for several."),
]


def _location(store: str) -> str:
    """A store for Spark: a URL as given, a local path made absolute (executors do not share our cwd)."""
    return store if "://" in store else str(Path(store).resolve())


def _spark(engine: str, master: str | None, conf: list[str] | None) -> Any:
    """The Spark session for ``--engine spark``, or None for DuckDB; exit 2 on a bad combination."""
    from ..query.spark import ENGINES
    from ..spark import parse_conf, spark_session

    if engine not in ENGINES:
        raise fail(f"--engine is {' or '.join(ENGINES)}, not {engine!r}")
    if engine != "spark":
        if master or conf:
            raise fail("--spark-master and --spark-conf need --engine spark")
        return None
    with errors_as_exit():
        settings = parse_conf(conf)
    return spark_session(master, settings)


def flows(
    store: Annotated[
        str, typer.Option("--store", help="Flow store directory (with --engine spark also s3a://, hdfs:// ...).")
    ],
    since: Annotated[
        str | None, typer.Option(help="Only flows that end at or after this time (ISO 8601 or epoch).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only flows that start before this time.")] = None,
    filter_expr: Annotated[
        str | None,
        typer.Option(
            "--filter", "-f", help="nfdump filter, e.g. 'dst port 443 and not net 10.0.0.0/8' (docs/flows.md)."
        ),
    ] = None,
    ip: Annotated[
        list[str] | None,
        typer.Option("--ip", help="Only flows with this address or CIDR on either side; repeat for any of several."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Only flows with this port on either side.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many flows.")] = None,
    stat: Annotated[
        list[str] | None,
        typer.Option(
            "--stat",
            "-s",
            help="Top-N statistic FIELD or FIELD/ORDER as nfdump -s: srcip/bytes, dstport, proto, ip/flows/bytes ...",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", "-n", min=0, help="Rows per statistic (0 = all).")] = 10,
    asn_db: Annotated[
        list[Path] | None,
        typer.Option("--asn-db", help="ASN database for 'as' filters and AS statistics (MMDB, ip2asn TSV, pfx2as)."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="jsonl, csv, parquet or line (default jsonl; line for statistics)."),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of stdout (needed for parquet on a terminal).")
    ] = None,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="CSV: write text cells as they are. By default a cell that starts with = + - @, a tab or a CR "
            "(and is not a number) gets a leading ' so that a spreadsheet shows it instead of running it.",
        ),
    ] = False,
    engine: EngineOpt = "duckdb",
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
) -> None:
    """Print canonical flow records from the store, oldest first, or top-N statistics of them (-s)."""
    from ..query import AsnTable, flows_filter, parse_stats, select_flows, top_n, where_sql
    from ..query.output import write_line, write_stats

    output = output or ("line" if stat else "jsonl")
    if output not in ("jsonl", "csv", "parquet", "line"):
        raise fail(f"--output must be jsonl, csv, parquet or line, not {output!r}")
    if stat and output == "parquet":
        raise fail("statistics (-s) print as line, jsonl or csv")
    spark = _spark(engine, spark_master, spark_conf)
    with errors_as_exit():
        st = require_store(store) if spark is None or "://" not in store else None
        lo, hi = parse_time(since) if since else None, parse_time(until) if until else None
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"--since {since} is after --until {until}")
        specs = [spec for s in stat or [] for spec in parse_stats(s)]
        asn = AsnTable.open(asn_db) if asn_db else None
        node = flows_filter(filter_expr, ip, port, asn)
        if spark is not None:
            from ..query import spark as on_spark

            loc = _location(store)
            if specs:
                results = [(spec, *on_spark.top_n(spark, loc, spec, node, lo, hi, top, asn)) for spec in specs]
            else:
                table = on_spark.select_flows(spark, loc, node, lo, hi, limit)
        elif specs:
            assert st is not None
            where, params = where_sql(node, lo, hi)
            con = st.connect()
            results = [(spec, *top_n(con, spec, where, params, top, asn)) for spec in specs]
        else:
            assert st is not None
            try:
                table = select_flows(st, node, lo, hi, limit)
            except duckdb.ConversionException:
                # a store written before the time checks may hold a time DuckDB cannot read
                # (flowpivot/store/export.py): the plain filters read it file by file
                if filter_expr or len(ip or []) > 1:
                    raise ValueError(
                        "the store holds a flow time DuckDB cannot read; -f and several --ip need it readable "
                        "(re-ingest, or use one --ip / --port)"
                    ) from None
                table = read_flows(st, lo, hi, ip[0] if ip else None, port, limit)
    sink = open(out_file, "wb") if out_file else sys.stdout.buffer
    try:
        if specs:
            for spec, rows, totals in results:
                write_stats(spec, rows, totals, output, sink, top)
        elif output == "line":
            write_line(to_output(table), sink)
        else:
            write_flows(table, sink, output, raw=raw)
        sink.flush()
    finally:
        if out_file:
            sink.close()


def stats(
    store: Annotated[
        str,
        typer.Option("--store", "-s", help="Flow store directory (with --engine spark also s3a://, hdfs:// ...)."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    engine: EngineOpt = "duckdb",
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
) -> None:
    """Show flows per day, exporters and sampling rates in a store."""
    spark = _spark(engine, spark_master, spark_conf)
    with errors_as_exit():
        if spark is not None:
            from ..query.spark import store_stats as spark_stats

            if "://" not in store:
                require_store(store)
            s = spark_stats(spark, _location(store), str(Path(store)))
        else:
            s = store_stats(require_store(store))
    if as_json:
        out.print_json(json.dumps(s))
        return
    # exporter names and the store's path come from outside: never markup, controls made visible
    head = Text(visible(s["store"]), style="bold")
    head.append(f": {s['flows']:,} flows in {s['files']} files, {s['disk_bytes']:,} bytes on disk")
    if s.get("bytes_per_flow"):
        head.append(f" ({s['bytes_per_flow']} bytes/flow)")
    out.print(head)
    for title, rows, cols in (
        ("Flows per day", s["days"], ("day", "flows", "files")),
        ("Exporters", s["exporters"], ("exporter", "observation_domain", "flows")),
        ("Sampling rates", s["sampling_rates"], ("sampling_rate", "flows")),
    ):
        t = Table(title=title, title_justify="left")
        for c in cols:
            t.add_column(c, justify="right" if c in ("flows", "files", "sampling_rate") else "left")
        for r in rows:
            t.add_row(*(Text(_cell(r[c], c)) for c in cols))
        out.print(t)


def _cell(v: object, column: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, int) and column != "observation_domain":
        return f"{v:,}"
    return visible(v)


def expire(
    store: StoreOpt,
    older_than: Annotated[str, typer.Option("--older-than", help="Remove day partitions older than this (e.g. 90d).")],
    now: Annotated[str | None, typer.Option(help="Reference time instead of the clock (ISO 8601).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="List the day partitions that would go; remove nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remove every partition without asking, if it comes to that.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the days removed (or, with --dry-run, to remove) as JSON.")
    ] = False,
) -> None:
    """Remove day partitions older than a given age (ask first when that is every partition)."""
    from ..store.expiry import days, expiring_days

    with errors_as_exit():
        age, ref = parse_duration(older_than), parse_time(now) if now else None
        st = require_store(store)
        going, held = expiring_days(st, age, ref), days(st)
    if dry_run:
        err.print(f"would remove {len(going)} of {len(held)} day partition(s)", highlight=False)
        if as_json:
            sys.stdout.write(json.dumps({"dry_run": True, "days": going, "kept": len(held) - len(going)}) + "\n")
            return
        for d in going:
            out.print(d, highlight=False)
        return
    if going and len(going) == len(held) and not yes:
        what = f"every day partition of {st.root} ({len(held)}: {held[0]} .. {held[-1]})"
        if not sys.stdin.isatty():
            raise fail(f"--older-than {older_than} would remove {what}; give --yes to do it, or --dry-run to look")
        if not typer.confirm(f"remove {what}?", default=False, err=True):
            raise typer.Exit(1)
    with errors_as_exit():
        removed = st.expire(age, ref)
    err.print(f"removed {len(removed)} day partition(s)", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps({"dry_run": False, "days": removed, "kept": len(held) - len(removed)}) + "\n")
        return
    for d in removed:
        out.print(d, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(flows)
    app.command()(stats)
    app.command()(expire)

"""CLI for the store: ``flows``, ``stats`` and ``expire``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.table import Table

from ..schema import to_output
from ..store import Store, parse_duration, parse_time
from .common import err, errors_as_exit, fail, out

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="Flow store directory.")]


def _iso_table(t: pa.Table) -> pa.Table:
    """Times as ISO 8601 strings with milliseconds (Arrow's %S carries the fraction of a ms timestamp)."""
    import pyarrow.compute as pc

    for name in ("start", "end"):
        i = t.schema.get_field_index(name)
        t = t.set_column(i, name, pc.strftime(t.column(name), format="%Y-%m-%dT%H:%M:%SZ").cast(pa.string()))
    return t


def flows(
    store: Annotated[Path, typer.Option("--store", help="Flow store directory.")],
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
) -> None:
    """Print canonical flow records from the store, oldest first, or top-N statistics of them (-s)."""
    from ..query import AsnTable, flows_filter, parse_stats, select_flows, top_n, where_sql
    from ..query.output import write_line, write_stats

    output = output or ("line" if stat else "jsonl")
    if output not in ("jsonl", "csv", "parquet", "line"):
        raise fail(f"--output must be jsonl, csv, parquet or line, not {output!r}")
    if stat and output == "parquet":
        raise fail("statistics (-s) print as line, jsonl or csv")
    with errors_as_exit():
        st = Store(store)
        lo, hi = parse_time(since) if since else None, parse_time(until) if until else None
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"--since {since} is after --until {until}")
        specs = [spec for s in stat or [] for spec in parse_stats(s)]
        asn = AsnTable.open(asn_db) if asn_db else None
        node = flows_filter(filter_expr, ip, port, asn)
        if specs:
            where, params = where_sql(node, lo, hi)
            con = st.connect()
            results = [(spec, *top_n(con, spec, where, params, top, asn)) for spec in specs]
        else:
            table = to_output(select_flows(st, node, lo, hi, limit))
    sink = open(out_file, "wb") if out_file else sys.stdout.buffer
    try:
        if specs:
            for spec, rows, totals in results:
                write_stats(spec, rows, totals, output, sink, top)
        elif output == "line":
            write_line(table, sink)
        elif output == "parquet":
            pq.write_table(table, sink, compression="zstd")
        elif output == "csv":
            pacsv.write_csv(_iso_table(table), sink)
        else:
            t = _iso_table(table)
            for row in t.to_pylist():
                sink.write(json.dumps({k: v for k, v in row.items() if v is not None}).encode() + b"\n")
        sink.flush()
    finally:
        if out_file:
            sink.close()


def stats(
    store: StoreOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show flows per day, exporters and sampling rates in a store."""
    with errors_as_exit():
        s = Store(store).stats()
    if as_json:
        out.print_json(json.dumps(s))
        return
    out.print(
        f"[bold]{s['store']}[/]: {s['flows']:,} flows in {s['files']} files, {s['disk_bytes']:,} bytes on disk"
        + (f" ({s['bytes_per_flow']} bytes/flow)" if s.get("bytes_per_flow") else "")
    )
    for title, rows, cols in (
        ("Flows per day", s["days"], ("day", "flows", "files")),
        ("Exporters", s["exporters"], ("exporter", "observation_domain", "flows")),
        ("Sampling rates", s["sampling_rates"], ("sampling_rate", "flows")),
    ):
        t = Table(title=title, title_justify="left")
        for c in cols:
            t.add_column(c, justify="right" if c in ("flows", "files", "sampling_rate") else "left")
        for r in rows:
            t.add_row(
                *(
                    "-"
                    if r[c] is None
                    else f"{r[c]:,}"
                    if isinstance(r[c], int) and c != "observation_domain"
                    else str(r[c])
                    for c in cols
                )
            )
        out.print(t)


def expire(
    store: StoreOpt,
    older_than: Annotated[str, typer.Option("--older-than", help="Remove day partitions older than this (e.g. 90d).")],
    now: Annotated[str | None, typer.Option(help="Reference time instead of the clock (ISO 8601).")] = None,
) -> None:
    """Remove day partitions older than a given age."""
    with errors_as_exit():
        removed = Store(store).expire(parse_duration(older_than), parse_time(now) if now else None)
    err.print(f"removed {len(removed)} day partition(s)", highlight=False)
    for d in removed:
        out.print(d, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(flows)
    app.command()(stats)
    app.command()(expire)

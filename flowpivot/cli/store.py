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
from ..store import parse_duration, parse_time
from ..store.check import require_store
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
    store: StoreOpt,
    since: Annotated[
        str | None, typer.Option(help="Only flows that end at or after this time (ISO 8601 or epoch).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only flows that start before this time.")] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="Only flows with this address or CIDR on either side.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Only flows with this port on either side.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many flows.")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="jsonl, csv or parquet.")] = "jsonl",
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of stdout (needed for parquet on a terminal).")
    ] = None,
) -> None:
    """Print canonical flow records from the store, oldest first."""
    if output not in ("jsonl", "csv", "parquet"):
        raise fail(f"--output must be jsonl, csv or parquet, not {output!r}")
    with errors_as_exit():
        st = require_store(store)
        table = to_output(
            st.query(
                since=parse_time(since) if since else None,
                until=parse_time(until) if until else None,
                ip=ip,
                port=port,
                limit=limit,
            )
        )
    sink = open(out_file, "wb") if out_file else sys.stdout.buffer
    try:
        if output == "parquet":
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
        s = require_store(store).stats()
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
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="List the day partitions that would go; remove nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remove every partition without asking, if it comes to that.")
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
    for d in removed:
        out.print(d, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(flows)
    app.command()(stats)
    app.command()(expire)

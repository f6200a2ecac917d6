"""CLI for the ingest stage: ``flowpivot ingest PATH... --store DIR``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from .common import byte_progress, err, errors_as_exit, fail, out, report_problems


class _Bar:
    """Feeds ingest_paths' progress into one rich bar of bytes."""

    def __init__(self, progress: Progress, task: int):
        self.progress, self.task = progress, task

    def start_file(self, path: Path, size: int) -> None:
        self.progress.update(self.task, description=path.name[:40])  # type: ignore[arg-type]

    def advance(self, nbytes: int) -> None:
        self.progress.advance(self.task, nbytes)  # type: ignore[arg-type]


def _short(path: str) -> str:
    """A path as the user would type it: relative to the current directory when that is shorter."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if len(rel) < len(path) else path


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (read recursively, in name order).")],
    store: Annotated[Path, typer.Option("--store", "-s", help="Flow store directory (created if missing).")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="auto (from the content), pcap, nfdump, nfdump-csv, zeek, csv, parquet or binetflow (Argus CSV).",
        ),
    ] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the per-file reports as JSON lines instead of a table.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    not_before: Annotated[
        str | None,
        typer.Option("--not-before", help="Refuse flows that start or end before this time (ISO 8601; default 1970)."),
    ] = None,
    not_after: Annotated[
        str | None,
        typer.Option(
            "--not-after",
            help="Refuse flows that start or end after this time (ISO 8601), whatever the file's time; "
            "default: the file's modification time plus --future-slack.",
        ),
    ] = None,
    future_slack: Annotated[
        str,
        typer.Option("--future-slack", help="How far past its file's modification time a flow may lie (e.g. 1d, 2h)."),
    ] = "1d",
    allow_duplicates: Annotated[
        bool,
        typer.Option("--allow-duplicates", help="Store an input even when its records are in the store already."),
    ] = False,
) -> None:
    """Read flow files into the store: pcaps of NetFlow/IPFIX/sFlow exports, nfdump/nfcapd files, nfdump CSV, Zeek conn.log (TSV or JSON), Argus/CTU binetflow, canonical CSV or Parquet.

    A file already in the store is skipped, so ingesting twice never duplicates flows. Bad records are skipped and listed with where and why.

    Flows outside the plausible time range (1970 to the file's modification time plus a day) are counted and never stored. A file that grew adds only its new records; an input whose records are in the store already is refused.

    Exit status: 0 when every input was read (bad records are warnings), 1 when an input could not be read at all, was refused, or when no input gave a flow, 2 for a usage error.
    """
    from ..ingest import FORMATS, TimeRange, expand_paths, ingest_paths, nothing_usable
    from ..store import Store, parse_duration, parse_time

    if fmt != "auto" and fmt not in FORMATS:
        raise fail(f"--format must be auto or one of {', '.join(FORMATS)}, not {fmt!r}")
    try:
        tr = TimeRange(
            earliest_ms=parse_time(not_before) if not_before else 0,
            latest_ms=parse_time(not_after) if not_after else None,
            slack_ms=parse_duration(future_slack),
        )
    except ValueError as e:
        raise fail(str(e)) from None
    if tr.latest_ms is not None and tr.latest_ms < tr.earliest_ms:
        raise fail("--not-after is before --not-before")
    st = Store(store)
    total = 0
    for p, _ in expand_paths(paths):
        try:
            total += p.stat().st_size
        except OSError:
            pass
    with errors_as_exit():
        if quiet or not err.is_terminal:
            reports = ingest_paths(paths, st, fmt=fmt, time_range=tr, allow_duplicates=allow_duplicates)
        else:
            with byte_progress() as bar:
                task = bar.add_task("ingest", total=total or None)
                reports = ingest_paths(
                    paths, st, fmt=fmt, progress=_Bar(bar, task), time_range=tr, allow_duplicates=allow_duplicates
                )

    if as_json:
        for r in reports:
            row = {
                "file": r.source, "format": r.fmt, "status": r.status, "flows": r.records, "bad": r.bad,
                "key": r.key, "error": r.error or None, "counters": r.counters,
                "problems": [p.as_dict() for p in r.problems], "notes": r.notes,
            }  # fmt: skip
            out.print_json(json.dumps(row)) if out.is_terminal else print(json.dumps(row))
    else:
        table = Table(title=f"Ingested into {st.root}", title_justify="left")
        for c in ("file", "format", "flows", "bad", "status"):
            table.add_column(c, justify="right" if c in ("flows", "bad") else "left", overflow="fold")
        for r in reports:
            status = r.status
            style = "" if r.ok else "red"
            table.add_row(_short(r.source), r.fmt or "-", f"{r.records:,}", f"{r.bad:,}", status, style=style)
        out.print(table)
        flows = sum(r.records for r in reports)
        err.print(f"{flows:,} flows from {sum(r.status == 'ingested' for r in reports)} file(s)", highlight=False)
    problems = [p for r in reports for p in r.problems]
    if not as_json:
        report_problems(problems)
        for r in reports:
            for note in r.notes:
                err.print(f"[yellow]note:[/] {_short(r.source)}: {note}", highlight=False, soft_wrap=True)
    bad_inputs = [r for r in reports if not r.ok]
    for r in bad_inputs:
        why = r.error[len(r.source) + 2 :] if r.error.startswith(f"{r.source}: ") else r.error
        err.print(f"[bold red]error:[/] {r.source}: {why}", highlight=False, soft_wrap=True)
    if nothing_usable(reports):
        err.print("[bold red]error:[/] no input gave a flow (see the notes and errors above)", highlight=False)
        raise typer.Exit(1)
    if bad_inputs:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(ingest)

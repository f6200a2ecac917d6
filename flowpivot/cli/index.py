"""CLI for the address index: ``flowpivot index`` (build, show or drop it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ..store import DAY_MS, Store, parse_time
from .common import err, errors_as_exit, fail, out


def index(
    store: Annotated[Path, typer.Option("--store", "-s", help="Flow store directory.")],
    days: Annotated[
        float | None, typer.Option("--days", help="Index only the days that end at the newest flow (default: all).")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Index days from this time (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Index days up to this time (ISO 8601).")] = None,
    status: Annotated[
        bool, typer.Option("--status", help="Show the current index and how it stands; build nothing.")
    ] = False,
    drop: Annotated[bool, typer.Option("--drop", help="Remove the index.")] = False,
) -> None:
    """Build the address index: the flows ordered by source and by destination, so hunts look seeds up instead of scanning.

    It takes about twice the store's space. Hunts use it when it is usable for their window, and
    scan store files written since it was built; rebuild it (e.g. nightly) to keep it current.
    """
    from ..store.index import build_index, index_status

    st = Store(store)
    if not st.flows_dir.exists():
        raise fail(f"no flow store at {store}")
    if drop:
        shutil.rmtree(st.root / "index", ignore_errors=True)
        err.print("address index removed")
        return
    if status:
        s = index_status(st)
        out.print_json(json.dumps(s if s is not None else {"index": None}))
        return
    with errors_as_exit():
        since_ms = parse_time(since) if since else None
        until_ms = parse_time(until) if until else None
        if days is not None and since_ms is None:
            end = until_ms if until_ms is not None else (st.time_range() or (0, 0))[1]
            since_ms = int(end - days * DAY_MS)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(step: str, done: int, total: int) -> None:
                if step not in tasks:
                    label = {"split": "reading", "src": "by source", "dst": "by destination"}.get(step, step)
                    tasks[step] = bar.add_task(label, total=total)
                bar.update(tasks[step], completed=done)

            m = build_index(st, since_ms, until_ms, progress=progress)
    err.print(
        f"indexed {m['rows']:,} flows from {m['files']} files in {m['seconds']} s: "
        f"{m['disk_bytes']:,} bytes ({m['bytes_per_flow']} bytes/flow for the two copies)",
        highlight=False,
    )
    out.print_json(json.dumps(m))


def register(app: typer.Typer) -> None:
    app.command()(index)

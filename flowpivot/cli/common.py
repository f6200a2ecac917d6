"""Shared CLI plumbing: consoles (results to stdout, logs and progress to stderr), errors, progress."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from ..errors import FlowpivotError, Problem
from ..textsafe import visible


def _console(stderr: bool = False) -> Console:
    """A console that wraps at the terminal's width, and not at all when piped: a script or a
    file gets whole lines (paths and addresses never split), unless COLUMNS says otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPED_WIDTH if piped else None)


#: The width a piped console lays tables out in: wide enough that no cell is cut.
PIPED_WIDTH = 1000

out = _console()  # results
err = _console(stderr=True)  # logs, progress, problems


def fail(message: str, code: int = 2) -> typer.Exit:
    # the message may quote input (file names, values): never markup, controls made visible
    err.print(f"[bold red]error:[/] {escape(visible(message))}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


@contextlib.contextmanager
def errors_as_exit() -> Iterator[None]:
    """Turn flowpivot's own errors into a one-line message and exit code 2."""
    try:
        yield
    except (FlowpivotError, ValueError, FileNotFoundError) as e:
        raise fail(str(e)) from None


def byte_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def report_problems(problems: list[Problem], limit: int = 20) -> None:
    if not problems:
        return
    err.print(f"[yellow]{len(problems)} bad input(s) skipped:[/]", highlight=False)
    for p in problems[:limit]:
        err.print(f"  {visible(p)}", markup=False, highlight=False, soft_wrap=True)
    if len(problems) > limit:
        err.print(f"  ... and {len(problems) - limit} more", highlight=False)

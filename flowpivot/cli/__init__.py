"""The ``flowpivot`` command: a thin layer over the library. Each stage registers its commands."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

app = typer.Typer(
    name="flowpivot",
    help="Find threat-actor infrastructure in network flow telemetry.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

# One module per stage, in pipeline order; each defines register(app).
COMMAND_MODULES = (
    "ingest",
    "collect",
    "store",
    "index",
    "enrich",
    "ip",
    "hunt",
    "report",
    "watch",
    "serve",
    "simulate",
    "demo",
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"flowpivot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every stage with its time and counts to stderr."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    """The console script: Ctrl-C ends any command with one line and exit code 130
    (docs/cli.md), whether it lands in Python (Typer turns it into exit 130) or inside a DuckDB
    query (which raises its own ``InterruptException``)."""
    from ..errors import EXIT_INTERRUPTED

    try:
        app()
    except SystemExit as e:
        if e.code == EXIT_INTERRUPTED:
            _interrupted()
        raise
    except KeyboardInterrupt:
        _interrupted()
    except Exception as e:
        if type(e).__name__ == "InterruptException":  # duckdb.InterruptException
            _interrupted()
        raise


def _interrupted() -> None:
    from ..errors import EXIT_INTERRUPTED

    sys.stderr.write("\ninterrupted\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_INTERRUPTED)

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
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One module per stage, in pipeline order; each defines register(app).
COMMAND_MODULES = ("ingest", "collect", "store", "index", "enrich", "hunt", "report", "simulate", "demo")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug detail to stderr.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    app()

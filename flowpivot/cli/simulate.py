"""CLI for the simulate stage (not yet written)."""

import typer


def register(app: typer.Typer) -> None:
    return None

"""CLI for the hunt stage (not yet written)."""

import typer


def register(app: typer.Typer) -> None:
    return None

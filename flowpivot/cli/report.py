"""CLI for the report stage (not yet written)."""

import typer


def register(app: typer.Typer) -> None:
    return None

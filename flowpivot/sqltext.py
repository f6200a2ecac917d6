"""Text that goes into SQL: one quoting rule for every package that writes queries."""

from __future__ import annotations

__all__ = ["sql_str"]


def sql_str(s: str) -> str:
    """``s`` for use inside a single-quoted SQL string literal (quotes doubled)."""
    return s.replace("'", "''")

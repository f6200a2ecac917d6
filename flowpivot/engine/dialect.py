"""Per-dialect spellings of the few SQL constructs DuckDB and Spark SQL write differently.

Each helper returns a SQL fragment; the statements that use them are otherwise the same text on
both engines. Tested by tests/test_spark_conformance.py (the whole hunt, both engines, equal
results) and tests/test_engine_dialect.py (each helper against both engines).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Dialect", "DUCKDB", "SPARK", "ipkey_sql"]


def ipkey_sql(v4: str, v6: str) -> str:
    """The address key of an (IPv4 integer, IPv6 bytes) pair of columns: a dotted quad, or
    ``v6:<hex>`` (made canonical in Python, :func:`flowpivot.hunt.keys.ip_of`). Portable SQL."""
    octets = ", '.', ".join(f"CAST((({v4}) >> {s}) & 255 AS STRING)" for s in (24, 16, 8, 0))
    return (
        f"CASE WHEN ({v4}) IS NOT NULL THEN concat({octets}) WHEN ({v6}) IS NOT NULL THEN 'v6:' || lower(hex({v6})) END"
    )


@dataclass(frozen=True)
class Dialect:
    """How one engine spells what the other spells differently."""

    name: str

    @property
    def spark(self) -> bool:
        return self.name == "spark"

    @property
    def ubigint(self) -> str:
        """An unsigned 64-bit integer on DuckDB; Spark has no unsigned types (and reads Parquet's
        UINT_64 as DECIMAL(20,0)): a BIGINT, enough for any sum of packets or bytes."""
        return "BIGINT" if self.spark else "UBIGINT"

    def epoch_ms(self, ts: str) -> str:
        """Milliseconds since 1970 of a timestamp (sqlglot turns DuckDB's ``epoch_ms(ts)`` into
        its inverse, ``timestamp_millis``, on Spark: this is why the helper exists)."""
        return f"unix_millis({ts})" if self.spark else f"epoch_ms({ts})"

    def ts_ms(self, ms: int) -> str:
        """A timestamp literal (UTC) of milliseconds since 1970."""
        us = int(ms) * 1000
        # (microseconds computed here: a small literal times 1000 overflows DuckDB's INT32 near 1970)
        return f"timestamp_micros({us})" if self.spark else f"make_timestamptz({us}::BIGINT)"

    def idiv(self, a: str, b: str | int) -> str:
        """Integer division of non-negative integers."""
        return f"(({a}) div {b})" if self.spark else f"(({a}) // {b})"

    def ipkey(self, v4: str, v6: str) -> str:
        """The address key; DuckDB calls the ``ipkey`` macro (:func:`flowpivot.hunt.pivot.ipkey_macro`,
        whose body is :func:`ipkey_sql`), Spark has no macros and gets the expression inline."""
        return ipkey_sql(v4, v6) if self.spark else f"ipkey({v4}, {v6})"

    def sorted_list(self, x: str) -> str:
        """An aggregate: the group's values of ``x`` as a list in ascending order."""
        return f"array_sort(collect_list({x}))" if self.spark else f"list({x} ORDER BY {x})"

    def distinct_list(self, x: str) -> str:
        """An aggregate: the group's distinct values of ``x`` as a list, in no given order."""
        return f"collect_set({x})" if self.spark else f"list(DISTINCT {x})"

    @property
    def macros(self) -> bool:
        return not self.spark


DUCKDB = Dialect("duckdb")
SPARK = Dialect("spark")

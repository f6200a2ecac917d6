"""The engines a query stage runs on, and the small differences between their SQL dialects.

Every query stage of the hunt is written once, as SQL both DuckDB and Spark SQL accept
(``count(*) FILTER (WHERE ...)``, ``CAST(x AS STRING)``, ``bit_or``, ``bool_or``, ``any_value``,
``median``, ``>>``/``<<``, ``GROUP BY ALL``). The few constructs that are spelled differently
(times, integer division, unsigned types, the address key, ordered lists) come from a
:class:`Dialect`; what differs in *execution* (temporary tables, Arrow tables handed to the
engine, the address index) is the stage context's business: :class:`flowpivot.hunt.context.HuntContext`
for DuckDB, :class:`flowpivot.spark.context.SparkHuntContext` for Spark. docs/scale.md, "Engines",
says why this and not a DataFrame layer or an automatic SQL translator.
"""

from __future__ import annotations

from .dialect import DUCKDB, SPARK, Dialect, ipkey_sql

__all__ = ["DUCKDB", "SPARK", "Dialect", "ipkey_sql"]

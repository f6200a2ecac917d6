"""flowpivot on Apache Spark: a session, the store as a ``flows`` view, and the hunt's stage context.

``pyspark`` is imported only when a Spark engine is asked for (``--engine spark``); DuckDB stays
the embedded default. See docs/scale.md ("Engines") and docs/hunt.md ("On Spark").
"""

from __future__ import annotations

from .session import parse_conf, spark_session
from .store import SparkStore, is_url

__all__ = ["SparkStore", "is_url", "parse_conf", "spark_session"]

"""A SparkSession for flowpivot: quiet, UTC, no web UI unless asked, few shuffle partitions locally."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["parse_conf", "spark_session", "DEFAULT_MASTER"]

DEFAULT_MASTER = "local[*]"
#: Local mode runs on one machine's cores: Spark's default of 200 shuffle partitions would cut the
#: hunt's small aggregates into 200 tasks each. A cluster keeps its own default unless told.
LOCAL_SHUFFLE_PARTITIONS = 8


def parse_conf(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings (``--spark-conf``) as a dict; a malformed one raises ValueError."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--spark-conf wants KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def spark_session(
    master: str | None = None, conf: Iterable[str] | Mapping[str, str] | None = None, app_name: str = "flowpivot"
) -> Any:
    """A SparkSession on ``master`` (default ``local[*]``) with ``conf`` (``KEY=VALUE`` strings or a
    dict) applied over flowpivot's defaults: session time zone UTC, logs at WARN on stderr, the web
    UI off (``spark.ui.enabled=true`` turns it on), ``spark.sql.shuffle.partitions`` 8 in local mode.

    An existing session on the same master is reused (Spark allows one per process); its
    runtime-settable confs are set on it.
    """
    os.environ.setdefault("PYSPARK_PYTHON", _python())
    # py4j logs every connection it opens and closes at INFO: the CLI's -v is for flowpivot's own
    logging.getLogger("py4j").setLevel(logging.WARNING)
    from pyspark.sql import SparkSession

    master = master or _submitted_master() or DEFAULT_MASTER
    settings: dict[str, str] = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Arrow between the JVM and Python (the stage tables come back as Arrow)
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # "end" is a column (DuckDB's quoting, the SQL standard's); it needs ANSI mode, Spark 4's default
        "spark.sql.ansi.enabled": "true",
        "spark.sql.ansi.doubleQuotedIdentifiers": "true",
    }
    if master.startswith("local"):
        settings["spark.sql.shuffle.partitions"] = str(LOCAL_SHUFFLE_PARTITIONS)
    settings.update(parse_conf(conf))
    b = SparkSession.builder.master(master).appName(app_name)
    for k, v in settings.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")  # (the JVM's log4j writes to stderr)
    for k, v in settings.items():
        try:  # a reused session: what can be changed at run time is
            if spark.conf.isModifiable(k):
                spark.conf.set(k, v)
        except Exception:  # pragma: no cover - a static conf on a reused session stays as it was
            pass
    return spark


def _submitted_master() -> str | None:
    """The master ``spark-submit --master`` gave: it starts the JVM before Python and passes the
    master as a system property, which a SparkConf read from that JVM holds (docs/scale.md)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # type: ignore[attr-defined]
    return SparkConf().get("spark.master", None)


def _python() -> str:
    import sys

    return sys.executable

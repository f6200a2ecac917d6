"""Flows out of the store as text: the tables behind ``flowpivot flows`` (JSON lines, CSV, Parquet).

Two things here keep a store's own content from breaking or abusing its output:

- **Times out of any calendar.** Stores written before the plausible-time checks
  (:mod:`flowpivot.timerange`) may hold a record whose end is 2^62 ms. DuckDB cannot read such a
  timestamp ("Could not convert Timestamp(MS) to Timestamp(US)") and used to fail the whole query.
  :func:`read_flows` then reads the store file by file with Arrow, which holds any 64-bit millisecond,
  and filters there. :func:`time_text` writes a time between the years 1 and 9999 as ISO 8601 with
  milliseconds and any other as its raw number of milliseconds since 1970.
- **Spreadsheet formulas.** Every text cell of a CSV goes through the OWASP rule of
  :func:`flowpivot.textsafe.csv_cell`: one that starts with ``=``, ``+``, ``-``, ``@``, a tab or a CR
  (and is not a plain number) gets a leading ``'``, after its control characters were made visible
  (``\\x1b``) so that ``cat`` on a terminal runs nothing either. ``raw=True`` writes the cells as they are.
"""

from __future__ import annotations

import json
from typing import IO, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..schema import STORE_SCHEMA, to_output
from ..textsafe import visible
from ..timerange import DAY_MS
from . import Store, ip_filter_sql, tally_stats

__all__ = [
    "read_flows",
    "store_stats",
    "time_text",
    "text_table",
    "neutralise_csv",
    "write_flows",
    "ISO_MIN_MS",
    "ISO_MAX_MS",
]

#: The times ISO 8601 can write with a four-digit year: 0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z.
ISO_MIN_MS = -62_135_596_800_000
ISO_MAX_MS = 253_402_300_799_999

_TRIGGER = r"^[=+\-@\t\r]"  # CSV_TRIGGERS as a character class
_NOT_PLAIN = r"[^\x20-\x7e]"  # a character other than printable ASCII
_NUMBER = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$"


def read_flows(
    store: Store,
    since: int | None = None,
    until: int | None = None,
    ip: str | None = None,
    port: int | None = None,
    limit: int | None = None,
) -> pa.Table:
    """Flows in store form, filtered, ordered by start (as :meth:`Store.query`), also from a store that holds
    times DuckDB cannot read: those are read with Arrow, file by file."""
    try:
        return store.query(since=since, until=until, ip=ip, port=port, limit=limit)
    except duckdb.ConversionException:
        return _read_by_file(store, since, until, ip, port, limit)


def _read_by_file(
    store: Store, since: int | None, until: int | None, ip: str | None, port: int | None, limit: int | None
) -> pa.Table:
    conds = ["TRUE"]
    if since is not None:
        conds.append(f'"end" >= {int(since)}')
    if until is not None:
        conds.append(f"start < {int(until)}")
    if ip:
        conds.append(ip_filter_sql(ip))
    if port is not None:
        conds.append(f"(src_port = {int(port)} OR dst_port = {int(port)})")
    where = " AND ".join(conds)
    con = duckdb.connect()
    parts = []
    for path in store.files():
        t = pq.read_table(path, schema=STORE_SCHEMA)
        for name in ("start", "end"):  # milliseconds as numbers: DuckDB cannot hold every one as a timestamp
            t = t.set_column(t.schema.get_field_index(name), name, t.column(name).cast(pa.int64()))
        con.register("part", t)
        parts.append(con.sql(f"SELECT * FROM part WHERE {where}").to_arrow_table())
        con.unregister("part")
    if not parts:
        return STORE_SCHEMA.empty_table()
    t = pa.concat_tables(parts).sort_by([("start", "ascending")])
    if limit:
        t = t.slice(0, int(limit))
    for name in ("start", "end"):
        i = t.schema.get_field_index(name)
        t = t.set_column(i, name, t.column(name).cast(STORE_SCHEMA.field(name).type))
    return t.cast(STORE_SCHEMA)


def store_stats(store: Store) -> dict[str, Any]:
    """:meth:`Store.stats`, also for a store that holds times DuckDB cannot read (counted with Arrow)."""
    try:
        return store.stats()
    except duckdb.ConversionException:
        return _stats_by_file(store)


def _stats_by_file(store: Store) -> dict[str, Any]:
    files = store.files()
    if not files:
        return store.stats()
    out: dict[str, Any] = {
        "store": str(store.root),
        "files": len(files),
        "disk_bytes": sum(p.stat().st_size for p in files),
    }
    con = duckdb.connect()
    parts = []
    for i, path in enumerate(files):
        t = pq.read_table(path, columns=["start", "exporter", "observation_domain", "sampling_rate"])
        t = t.set_column(0, "start", t.column("start").cast(pa.int64()))
        parts.append(t.append_column("file", pa.array([i] * t.num_rows, pa.int32())))
    con.register("f", pa.concat_tables(parts))
    out["flows"] = con.execute("SELECT count(*) FROM f").fetchone()[0]  # type: ignore[index]
    out["days"] = [
        {"day": time_text(pa.array([d * DAY_MS]))[0].as_py()[:10], "flows": n, "files": k}
        for d, n, k in con.execute(
            f"SELECT start // {DAY_MS} AS d, count(*), count(DISTINCT file) FROM f GROUP BY d ORDER BY d"
        ).fetchall()
    ]
    return tally_stats(con, "f", out)


def time_text(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Times as ISO 8601 UTC with milliseconds (``2024-05-01T12:00:00.123Z``); a time outside the years
    1..9999 as its raw number of milliseconds since 1970. Nulls stay null."""
    ms = col.cast(pa.int64()) if pa.types.is_timestamp(col.type) else col
    ok = pc.and_(pc.greater_equal(ms, ISO_MIN_MS), pc.less_equal(ms, ISO_MAX_MS))
    safe = pc.if_else(ok, ms, 0).cast(pa.timestamp("ms", tz="UTC"))
    # Arrow's %S carries the fraction of a millisecond timestamp
    iso = pc.strftime(safe, format="%Y-%m-%dT%H:%M:%SZ").cast(pa.string())
    return pc.if_else(ok, iso, ms.cast(pa.string()))


def text_table(store_table: pa.Table) -> pa.Table:
    """The interchange form (addresses as text) with its times as text (:func:`time_text`)."""
    t = to_output(store_table)
    for name in ("start", "end"):
        t = t.set_column(t.schema.get_field_index(name), name, time_text(t.column(name)))
    return t


def neutralise_csv(t: pa.Table) -> pa.Table:
    """Every text column made safe for a spreadsheet and a terminal: control characters made visible
    (:func:`flowpivot.textsafe.visible`), then the OWASP rule (:func:`flowpivot.textsafe.csv_cell`)."""
    for i, f in enumerate(t.schema):
        if not pa.types.is_string(f.type) and not pa.types.is_large_string(f.type):
            continue
        col = t.column(i)
        odd = pc.match_substring_regex(col, _NOT_PLAIN)
        if pc.any(odd).as_py():  # only cells beyond printable ASCII can hold what visible() escapes
            col = pa.chunked_array(
                [pa.array([visible(v) if o else v for v, o in zip(col.to_pylist(), odd.to_pylist(), strict=True)])],
                pa.string(),
            )
        hit = pc.and_(pc.match_substring_regex(col, _TRIGGER), pc.invert(pc.match_substring_regex(col, _NUMBER)))
        if pc.any(hit).as_py():
            col = pc.if_else(hit, pc.binary_join_element_wise("'", col, ""), col)
        t = t.set_column(i, f.name, col)
    return t


def write_flows(table: pa.Table, sink: IO[bytes], output: str, raw: bool = False) -> None:
    """Write store-form flows as ``jsonl``, ``csv`` or ``parquet`` (see the module's notes)."""
    if output == "parquet":
        pq.write_table(to_output(table), sink, compression="zstd")
    elif output == "csv":
        t = text_table(table)
        pacsv.write_csv(t if raw else neutralise_csv(t), sink)
    elif output == "jsonl":
        for row in text_table(table).to_pylist():
            sink.write(json.dumps(_present(row)).encode() + b"\n")
    else:
        raise ValueError(f"output must be jsonl, csv or parquet, not {output!r}")


def _present(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}

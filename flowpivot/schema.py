"""The canonical flow record: one table of fields from which the Arrow schema and the docs derive.

Every input format (NetFlow v5/v9, IPFIX, nfdump, Zeek, CSV, Parquet) is turned into record
batches of :data:`STORE_SCHEMA`. Addresses are stored split by family so that IPv4 joins stay on
32-bit integers (see docs/schema.md for the measurement behind that choice):

* ``<name>_v4``: ``uint32`` host-order integer, null for IPv6
* ``<name>_v6``: ``fixed_size_binary(16)`` network-order bytes, null for IPv4

Outside the store (``flowpivot flows``, canonical CSV/Parquet input) an address is one
column holding its canonical string, e.g. ``src_addr = "2001:db8::1"``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "FIELDS",
    "Field",
    "IP_FIELDS",
    "STORE_SCHEMA",
    "OUTPUT_SCHEMA",
    "empty_batch",
    "conform",
    "to_output",
    "from_output",
    "ip_columns_from_strings",
    "ip_strings",
    "ms_to_iso",
    "markdown_table",
]

TS = pa.timestamp("ms", tz="UTC")
IP6 = pa.binary(16)


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "time", "ip", "int", "str"
    arrow: pa.DataType | None  # None for "ip": stored as <name>_v4 / <name>_v6
    doc: str
    required: bool = False


# The one table. Order is the column order in the store and in every output.
FIELDS: tuple[Field, ...] = (
    Field("start", "time", TS, "First packet of the flow, ms since epoch, UTC.", True),
    Field("end", "time", TS, "Last packet of the flow, ms since epoch, UTC.", True),
    Field("src_addr", "ip", None, "Source address, IPv4 or IPv6.", True),
    Field("dst_addr", "ip", None, "Destination address, IPv4 or IPv6.", True),
    Field("src_port", "int", pa.uint16(), "Source transport port (0 when none)."),
    Field("dst_port", "int", pa.uint16(), "Destination transport port (0 when none)."),
    Field("protocol", "int", pa.uint8(), "IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6)."),
    Field("tcp_flags", "int", pa.uint16(), "Cumulative OR of the TCP flags of the flow's packets."),
    Field("packets", "int", pa.uint64(), "Packets as exported, never scaled by the sampling rate."),
    Field("bytes", "int", pa.uint64(), "Bytes (layer 3) as exported, never scaled by the sampling rate."),
    Field("sampling_rate", "int", pa.uint32(), "1 in N packet sampling; 1 means unsampled.", True),
    Field("exporter", "str", pa.string(), "Address (or name) of the device or file that exported the flow."),
    Field("observation_domain", "int", pa.uint32(), "v9 source id / IPFIX observation domain id."),
    Field("in_if", "int", pa.uint32(), "Input interface index (SNMP ifIndex)."),
    Field("out_if", "int", pa.uint32(), "Output interface index (SNMP ifIndex)."),
    Field("src_as", "int", pa.uint32(), "Source AS as sent by the exporter."),
    Field("dst_as", "int", pa.uint32(), "Destination AS as sent by the exporter."),
    Field("direction", "int", pa.uint8(), "0 ingress, 1 egress, as sent by the exporter."),
    Field("icmp_type", "int", pa.uint8(), "ICMP type, for ICMP and ICMPv6 flows."),
    Field("icmp_code", "int", pa.uint8(), "ICMP code, for ICMP and ICMPv6 flows."),
    Field("rev_packets", "int", pa.uint64(), "Reverse-direction packets (RFC 5103 biflow, Zeek resp_pkts)."),
    Field("rev_bytes", "int", pa.uint64(), "Reverse-direction bytes (RFC 5103 biflow, Zeek resp_ip_bytes)."),
    Field("rev_tcp_flags", "int", pa.uint16(), "Reverse-direction cumulative TCP flags (RFC 5103 biflow)."),
    Field("conn_state", "str", pa.string(), "Zeek conn_state (S0, SF, REJ, ...)."),
    Field("history", "str", pa.string(), "Zeek history string."),
    Field("uid", "str", pa.string(), "Zeek connection uid."),
    Field("sample_pool", "int", pa.uint32(), "sFlow sample pool: packets the data source could sample, when sampled."),
)

FIELD_BY_NAME = {f.name: f for f in FIELDS}
IP_FIELDS = tuple(f.name for f in FIELDS if f.kind == "ip")


def _store_fields() -> list[pa.Field]:
    out: list[pa.Field] = []
    for f in FIELDS:
        if f.kind == "ip":
            out.append(
                pa.field(f"{f.name}_v4", pa.uint32(), nullable=True, metadata={"doc": f.doc + " (IPv4 as integer)"})
            )
            out.append(pa.field(f"{f.name}_v6", IP6, nullable=True, metadata={"doc": f.doc + " (IPv6, 16 bytes)"}))
        else:
            assert f.arrow is not None
            out.append(pa.field(f.name, f.arrow, nullable=not f.required, metadata={"doc": f.doc}))
    return out


#: The physical schema of the Parquet store and of every decoder's record batches.
STORE_SCHEMA = pa.schema(_store_fields())

#: The interchange schema: addresses as canonical strings.
OUTPUT_SCHEMA = pa.schema(
    [
        pa.field(f.name, pa.string() if f.kind == "ip" else f.arrow, nullable=not f.required)  # type: ignore[arg-type]
        for f in FIELDS
    ]
)


def empty_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=STORE_SCHEMA)


def conform(columns: dict[str, pa.Array | np.ndarray | list], length: int | None = None) -> pa.RecordBatch:
    """Build a store-schema batch from a dict of columns; missing columns become nulls.

    Values are cast to the schema's types (safe casts: an out-of-range value raises).
    """
    if length is None:
        length = len(next(iter(columns.values()))) if columns else 0
    arrays = []
    for field in STORE_SCHEMA:
        col = columns.get(field.name)
        if col is None:
            arrays.append(pa.nulls(length, type=field.type))
            continue
        arr = col if isinstance(col, (pa.Array, pa.ChunkedArray)) else pa.array(col)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.type != field.type:
            if pa.types.is_timestamp(field.type) and pa.types.is_integer(arr.type):
                arr = arr.cast(pa.int64()).cast(field.type)
            else:
                arr = arr.cast(field.type)
        if len(arr) != length:
            raise ValueError(f"column {field.name} has {len(arr)} values, expected {length}")
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=STORE_SCHEMA)


# ----- address helpers -------------------------------------------------------------------------


def ip_columns_from_strings(values: list[str | None] | pa.Array) -> tuple[pa.Array, pa.Array]:
    """Parse address strings into the (v4 uint32, v6 binary16) pair. Raises ValueError on a bad one."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_pylist()
    v4: list[int | None] = []
    v6: list[bytes | None] = []
    cache: dict[str, tuple[int | None, bytes | None]] = {}
    for s in values:
        if s is None or s == "":
            v4.append(None)
            v6.append(None)
            continue
        hit = cache.get(s)
        if hit is None:
            ip = ipaddress.ip_address(s.strip())
            if ip.version == 4:
                hit = (int(ip), None)
            elif ip.ipv4_mapped is not None:
                hit = (int(ip.ipv4_mapped), None)
            else:
                hit = (None, ip.packed)
            if len(cache) < 1_000_000:
                cache[s] = hit
        v4.append(hit[0])
        v6.append(hit[1])
    return pa.array(v4, pa.uint32()), pa.array(v6, IP6)


def ip_strings(v4: pa.Array, v6: pa.Array) -> pa.Array:
    """Canonical address strings from the split columns (vectorised for IPv4)."""
    v4 = v4.combine_chunks() if isinstance(v4, pa.ChunkedArray) else v4
    v6 = v6.combine_chunks() if isinstance(v6, pa.ChunkedArray) else v6
    n = len(v4)
    result = pa.nulls(n, pa.string())
    if v4.null_count < n:
        x = v4.fill_null(0).to_numpy(zero_copy_only=False).astype(np.uint32)
        octets = [((x >> s) & 255).astype("U3") for s in (24, 16, 8, 0)]
        dotted = octets[0]
        for part in octets[1:]:
            dotted = np.char.add(np.char.add(dotted, "."), part)
        result = pc.if_else(v4.is_valid(), pa.array(dotted, pa.string()), result)
    if v6.null_count < n:
        text6 = pa.array([None if b is None else str(ipaddress.IPv6Address(b)) for b in v6.to_pylist()], pa.string())
        result = pc.coalesce(result, text6)
    return result


def ms_to_iso(ms: int | None) -> str | None:
    """ISO 8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z."""
    if ms is None:
        return None
    import datetime as _dt

    d = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def to_output(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Store form -> interchange form (addresses as strings)."""
    t = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    cols = []
    for f in FIELDS:
        if f.kind == "ip":
            cols.append(ip_strings(t.column(f"{f.name}_v4"), t.column(f"{f.name}_v6")))
        else:
            cols.append(t.column(f.name))
    return pa.Table.from_arrays(cols, schema=OUTPUT_SCHEMA)


def from_output(table: pa.Table) -> pa.RecordBatch:
    """Interchange form (address strings, any subset of columns) -> store form."""
    cols: dict[str, pa.Array] = {}
    names = set(table.column_names)
    for f in FIELDS:
        if f.name not in names:
            continue
        col = table.column(f.name)
        if f.kind == "ip":
            cols[f"{f.name}_v4"], cols[f"{f.name}_v6"] = ip_columns_from_strings(col.cast(pa.string()))
        else:
            cols[f.name] = col
    if "sampling_rate" not in cols:
        cols["sampling_rate"] = pa.array(np.ones(table.num_rows, dtype=np.uint32))
    return conform(cols, table.num_rows)


def markdown_table() -> str:
    """The field table as Markdown (docs/schema.md embeds it; a test keeps the two equal)."""
    lines = ["| field | type | stored as | description |", "|---|---|---|---|"]
    for f in FIELDS:
        if f.kind == "ip":
            typ, stored = "address", f"`{f.name}_v4` uint32, `{f.name}_v6` fixed_size_binary(16)"
        elif f.kind == "time":
            typ, stored = "time (ms, UTC)", "timestamp[ms, UTC]"
        else:
            typ, stored = str(f.arrow), str(f.arrow)
        req = " Always set." if f.required else ""
        lines.append(f"| `{f.name}` | {typ} | {stored} | {f.doc}{req} |")
    return "\n".join(lines) + "\n"

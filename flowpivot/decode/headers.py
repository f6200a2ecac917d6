"""The fixed binary layouts of NetFlow v5/v7/v9 and IPFIX, each declared once, as data.

A :class:`Layout` is a list of (field name, struct code). The per-datagram walk unpacks a header
with the layout's ``struct``; ``decode_buffer``'s NumPy path reads one field of many datagrams at
once with :meth:`Layout.column`, at the offset the same declaration gives. The NetFlow v5 and v7
flow records are declared the same way, each field with the IPFIX element it carries, so that
they compile like any template (:func:`flowpivot.decode.templates.compile_template`).
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = [
    "Layout", "V5_HEADER", "V7_HEADER", "V9_HEADER", "IPFIX_HEADER", "SET_HEADER", "V9_FIRST_SET",
    "IPFIX_FIRST_SET", "V5_RECORD", "V7_RECORD",
]  # fmt: skip


class Layout:
    """A big-endian layout: field names, their struct codes, offsets and widths."""

    def __init__(self, name: str, fields: list[tuple[str, str]]) -> None:
        self.name = name
        self.fields = tuple(fields)
        self.struct = struct.Struct(">" + "".join(code for _, code in fields))
        self.size = self.struct.size
        self.at: dict[str, tuple[int, int]] = {}
        pos = 0
        for field, code in fields:
            width = struct.calcsize(">" + code)
            self.at[field] = (pos, width)
            pos += width

    def then(self, other: Layout, prefix: str) -> Layout:
        """This layout followed by ``other`` (its field names prefixed)."""
        return Layout(f"{self.name} + {other.name}", [*self.fields, *((prefix + f, c) for f, c in other.fields)])

    def unpack(self, buf: bytes | memoryview, offset: int = 0) -> tuple[int, ...]:
        return self.struct.unpack_from(buf, offset)

    def column(self, u8: np.ndarray, starts: np.ndarray, field: str) -> np.ndarray:
        """``field`` of the layouts at ``starts`` in the byte array ``u8``, as int64 (big-endian)."""
        off, width = self.at[field]
        out = np.zeros(len(starts), dtype=np.int64)
        for k in range(width):
            out = (out << 8) | u8[starts + off + k]
        return out


V5_HEADER = Layout(
    "NetFlow v5 header",
    [
        ("version", "H"), ("count", "H"), ("sys_uptime", "I"), ("unix_secs", "I"), ("unix_nsecs", "I"),
        ("sequence", "I"), ("engine_type", "B"), ("engine_id", "B"), ("sampling", "H"),
    ],
)  # fmt: skip
V7_HEADER = Layout(
    "NetFlow v7 header",
    [
        ("version", "H"), ("count", "H"), ("sys_uptime", "I"), ("unix_secs", "I"), ("unix_nsecs", "I"),
        ("sequence", "I"), ("reserved", "I"),
    ],
)  # fmt: skip
V9_HEADER = Layout(
    "NetFlow v9 header",
    [("version", "H"), ("count", "H"), ("sys_uptime", "I"), ("unix_secs", "I"), ("sequence", "I"), ("source_id", "I")],
)
IPFIX_HEADER = Layout(
    "IPFIX message header",
    [("version", "H"), ("length", "H"), ("export_time", "I"), ("sequence", "I"), ("domain", "I")],
)
SET_HEADER = Layout("set header", [("set_id", "H"), ("length", "H")])
V9_FIRST_SET = V9_HEADER.then(SET_HEADER, "set_")
IPFIX_FIRST_SET = IPFIX_HEADER.then(SET_HEADER, "set_")
assert V5_HEADER.size == V7_HEADER.size == 24 and V9_HEADER.size == 20 and IPFIX_HEADER.size == 16

#: NetFlow v5 flow record (48 bytes): (field name, IPFIX element id, length). ``pad`` fields are
#: skipped (element 210, paddingOctets).
V5_RECORD = [
    ("srcaddr", 8, 4), ("dstaddr", 12, 4), ("nexthop", 15, 4), ("input", 10, 2), ("output", 14, 2),
    ("dPkts", 2, 4), ("dOctets", 1, 4), ("first", 22, 4), ("last", 21, 4), ("srcport", 7, 2), ("dstport", 11, 2),
    ("pad1", 210, 1), ("tcp_flags", 6, 1), ("prot", 4, 1), ("tos", 5, 1), ("src_as", 16, 2), ("dst_as", 17, 2),
    ("src_mask", 9, 1), ("dst_mask", 13, 1), ("pad2", 210, 2),
]  # fmt: skip
#: NetFlow v7 flow record (52 bytes): v5's, with flags where v5 pads, then the router shortcut.
V7_RECORD = [
    *(("flags1", 210, 1) if name == "pad1" else ("flags2", 210, 2) if name == "pad2" else (name, e, n)
      for name, e, n in V5_RECORD),
    ("router_sc", 43, 4),
]  # fmt: skip

"""NetFlow v9 / IPFIX templates compiled to NumPy layouts (RFC 3954 section 5.2, RFC 7011 section 3.4).

A template with only fixed-length fields compiles once to a big-endian structured dtype that
holds just the fields flowpivot uses, at their offsets; a data set is then one ``np.frombuffer``.
A template with variable-length fields (IPFIX length 65535, RFC 7011 section 7) is walked record by
record to find where each record starts, and the fields are gathered with NumPy fancy indexing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .elements import BYTES_ROLES, ROLES, SAMPLING_ROLES, SECTION_ROLES
from .packets import section_roles

__all__ = ["Template", "compile_template", "VARIABLE"]

VARIABLE = 0xFFFF
_UINT = {1: ">u1", 2: ">u2", 4: ">u4", 8: ">u8"}


class RecordError(ValueError):
    """A data set does not fit its template (variable-length field runs past the set)."""


@dataclass(eq=False)
class Template:
    """One compiled template: what the exporter declared and how to read a record of it."""

    version: int
    template_id: int
    fields: tuple[tuple[int, int, int], ...]  # (enterprise, element id, length)
    scope_count: int = 0  # > 0 for options templates
    options: bool = False
    fixed: bool = True
    record_length: int = 0  # fixed: exact; variable: minimum
    dtype: np.dtype | None = None  # fixed templates: the used fields at their offsets
    roles: dict[str, tuple[int, int]] = field(default_factory=dict)  # role -> (field index, length)
    offsets: tuple[int, ...] = ()  # static offset of each field (variable fields count as 0 wide)
    var_fields: tuple[int, ...] = ()  # indexes of variable-length fields
    section: tuple[str, int] | None = None  # sampled packet header: (role, field index)

    has_address: bool = False  # records are flows (they carry an address)
    plain: bool = False  # fixed-length flow template: the decoder's fast path
    states_sampling: bool = False  # records carry their own sampling rate
    has_sampler_id: bool = False  # records name their sampler (samplerId / selectorId)

    def has(self, role: str) -> bool:
        return role in self.roles

    def record_count(self, set_length: int) -> int:
        """Records in a fixed-length data set body of ``set_length`` bytes (the rest is padding)."""
        return set_length // self.record_length if self.record_length else 0

    def read(self, body: bytes | memoryview, count: int | None = None) -> tuple[dict[str, np.ndarray], int]:
        """The role arrays of the records in ``body`` (concatenated data set bodies) and the record count.

        Integer roles come back as native unsigned arrays of their width (``uint64`` for odd widths),
        address roles as ``(n, 16)`` ``uint8`` arrays.
        Raises RecordError when a variable-length record runs past the end of ``body``.
        """
        if self.fixed:
            n = len(body) // self.record_length if count is None else count
            assert self.dtype is not None
            rec = np.frombuffer(body, dtype=self.dtype, count=n)
            out = {role: _as_role(rec[role], length, role) for role, (_, length) in self.roles.items()}
            if self.section is not None:
                role, idx = self.section
                length = self.fields[idx][2]
                starts = np.arange(n, dtype=np.int64) * self.record_length + self.offsets[idx]
                out = self._with_sections(out, body, [(int(a), length) for a in starts], role)
            return out, n
        starts, var_widths = self._walk(body)
        n = len(starts)
        u8 = np.frombuffer(body, dtype=np.uint8)
        out = {}
        for role, (idx, length) in self.roles.items():
            cells = u8[self._field_offsets(idx, starts, var_widths)[:, None] + np.arange(length)]
            out[role] = _as_role(cells, length, role)
        if self.section is not None:
            role, idx = self.section
            off = self._field_offsets(idx, starts, var_widths)
            if self.fields[idx][2] == VARIABLE:  # skip the length prefix (1 byte, or 3 from 255 on)
                long = u8[off] == 255 if n else np.zeros(0, dtype=bool)
                width = var_widths[:, self.var_fields.index(idx)]
                spans = [
                    (int(a) + (3 if lg else 1), int(w) - (3 if lg else 1))
                    for a, w, lg in zip(off, width, long, strict=True)
                ]
            else:
                spans = [(int(a), self.fields[idx][2]) for a in off]
            out = self._with_sections(out, body, spans, role)
        return out, n

    def _field_offsets(self, idx: int, starts: np.ndarray, var_widths: np.ndarray) -> np.ndarray:
        off = starts + self.offsets[idx]
        before = [k for k, j in enumerate(self.var_fields) if j < idx]
        if before:
            off = off + var_widths[:, before].sum(axis=1)
        return off

    @staticmethod
    def _with_sections(
        roles: dict[str, np.ndarray], body: bytes | memoryview, spans: list[tuple[int, int]], role: str
    ) -> dict[str, np.ndarray]:
        """The template's roles over the flow fields read from each record's sampled packet header.

        Adds ``"_sampled_ip"``: which records held an IP packet (the others are no flow).
        """
        mv = memoryview(body)
        found, ok = section_roles([mv[a : a + n] for a, n in spans], l2=role == "frame_section")
        merged = {**found, **roles}
        merged["_sampled_ip"] = ok
        return merged

    def _walk(self, body: bytes | memoryview) -> tuple[np.ndarray, np.ndarray]:
        """Record starts and the on-wire width of each variable field, for a variable-length template."""
        end = len(body)
        lengths = [f[2] for f in self.fields]
        minimum = self.record_length
        starts: list[int] = []
        widths: list[list[int]] = []
        pos = 0
        while end - pos >= max(minimum, 1):
            start = pos
            row: list[int] = []
            for length in lengths:
                if length != VARIABLE:
                    pos += length
                    continue
                if pos >= end:
                    raise RecordError(f"variable-length field at offset {pos} runs past the data set")
                n = body[pos]
                w = 1
                if n == 255:
                    if pos + 3 > end:
                        raise RecordError(f"variable-length field at offset {pos} runs past the data set")
                    n = int.from_bytes(body[pos + 1 : pos + 3], "big")
                    w = 3
                row.append(w + n)
                pos += w + n
            if pos > end:
                raise RecordError(f"record at offset {start} runs past the data set ({pos - end} bytes short)")
            starts.append(start)
            widths.append(row)
        return np.asarray(starts, dtype=np.int64), np.asarray(widths, dtype=np.int64).reshape(
            len(starts), len(self.var_fields)
        )


def _as_role(values: np.ndarray, length: int, role: str) -> np.ndarray:
    if role in BYTES_ROLES:
        return np.ascontiguousarray(values).reshape(-1, 16)
    if values.ndim == 1:  # 1, 2, 4 or 8 bytes, read big-endian by the dtype: swap to native order
        return values.astype(values.dtype.newbyteorder("="), copy=values.dtype.itemsize > 1)
    # reduced-size encoding of odd width (RFC 7011 section 6.2): fold the bytes, big-endian
    out = np.zeros(values.shape[0], dtype=np.uint64)
    for k in range(length):
        out = (out << np.uint64(8)) | values[:, k].astype(np.uint64)
    return out


def _role_fits(role: str, length: int) -> bool:
    if role in BYTES_ROLES:
        return length == 16
    if role in ("src_v4", "dst_v4"):
        return length == 4
    return 1 <= length <= 8


def compile_template(
    version: int,
    template_id: int,
    fields: list[tuple[int, int, int]],
    scope_count: int = 0,
    options: bool = False,
) -> Template:
    """Compile a template's field list. Elements flowpivot does not use are skipped by length."""
    roles: dict[str, tuple[int, int]] = {}
    offsets: list[int] = []
    var_fields: list[int] = []
    section: tuple[str, int] | None = None
    pos = 0
    for i, (pen, eid, length) in enumerate(fields):
        offsets.append(pos)
        if length == VARIABLE and version in (9, 10):  # H3C sends IPFIX's encoding in v9 too
            var_fields.append(i)
            if ROLES.get((pen, eid)) in SECTION_ROLES:
                section = section or (ROLES[(pen, eid)], i)
            continue
        role = ROLES.get((pen, eid))
        if role in SECTION_ROLES:
            section = section or (role, i)
        elif role is not None and role not in roles and _role_fits(role, length):
            roles[role] = (i, length)
        pos += length
    if any(r in roles for r in ("src_v4", "dst_v4", "src_v6", "dst_v6")):
        section = None  # the record has its own flow fields: the sampled header is not needed
    t = Template(
        version=version,
        template_id=template_id,
        fields=tuple(fields),
        scope_count=scope_count,
        options=options,
        fixed=not var_fields,
        record_length=pos + len(var_fields),  # a variable field takes at least its length byte
        roles=roles,
        section=section,
        offsets=tuple(offsets),
        var_fields=tuple(var_fields),
    )
    t.has_address = section is not None or any(r in roles for r in ("src_v4", "dst_v4", "src_v6", "dst_v6"))
    t.plain = t.fixed and not options and t.has_address and pos > 0
    t.states_sampling = any(r in roles for r in SAMPLING_ROLES)
    t.has_sampler_id = "sampler_id" in roles or "selector_id" in roles
    if t.fixed:
        names, formats, offs = [], [], []
        for role, (i, length) in roles.items():
            names.append(role)
            offs.append(offsets[i])
            formats.append((np.uint8, (length,)) if role in BYTES_ROLES or length not in _UINT else _UINT[length])
        t.dtype = np.dtype({"names": names, "formats": formats, "offsets": offs, "itemsize": max(pos, 1)})
    return t

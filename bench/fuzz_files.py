"""Mutations of file formats for ``bench.fuzz``: Zeek conn.log and CSV text, nfdump files, Parquet.

See :mod:`bench.fuzz_mutate` for :class:`Case` and what ``expect`` means.
"""

from __future__ import annotations

import io
import random
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .fuzz_mutate import JUNK_VALUES, MS_EXTREMES, TEXT_TIMES, Case, Expect, _flip, _run
from .fuzz_seeds import Seed

# ----- text: Zeek conn.log and CSV ---------------------------------------------------------------

TEXT_KINDS = [
    ("bitflip", 3),
    ("byterun", 2),
    ("truncate", 2),
    ("extend", 1),
    ("long-line", 1),
    ("field-count", 2),
    ("time", 3),
    ("bad-value", 2),
    ("quote", 1),
    ("encoding", 1),
    ("junk-line", 1),
    ("blank-lines", 1),
    ("crlf", 1),
    ("header", 1),
]


def _text_layout(seed: Seed) -> dict:  # type: ignore[type-arg]
    lay = seed.info.get("layout")
    if lay is not None:
        return lay  # type: ignore[no-any-return]
    lines = seed.data.split(b"\n")
    starts, o = [], 0
    for ln in lines:
        starts.append(o)
        o += len(ln) + 1
    zeek = seed.fmt == "zeek"
    sep = b"\t" if zeek else b","
    if zeek:
        header = [i for i, ln in enumerate(lines) if ln.lstrip(b"\t").startswith(b"#")]
        names: list[bytes] = []
        for ln in lines:
            if ln.lstrip(b"\t").startswith(b"#fields"):
                names = ln.lstrip(b"\t").rstrip(b"\r").split(b"\t")[1:]
        times = [names.index(n) for n in (b"ts", b"duration") if n in names]
    else:
        header = [0]
        names = [c.strip(b'"') for c in lines[0].rstrip(b"\r").split(b",")]
        times = [names.index(n) for n in (b"start", b"end") if n in names]
    data = [i for i, ln in enumerate(lines) if i not in set(header) and ln.strip()]
    lay = {"lines": lines, "starts": starts, "header": set(header), "data": data, "sep": sep, "times": times}
    seed.info["layout"] = lay
    return lay


def _lines_hit(lay: dict, lo: int, hi: int) -> list[int]:  # type: ignore[type-arg]
    """Lines whose bytes (with their newline) overlap [lo, hi); a newline hit joins the next line."""
    starts = lay["starts"]
    out = []
    for i, s in enumerate(starts):
        end = s + len(lay["lines"][i]) + 1
        if s < hi and lo < end:
            out.append(i)
            if lo <= end - 1 < hi and i + 1 < len(starts):
                out.append(i + 1)
    return out


def _expect_lines(seed: Seed, lay: dict, hit: list[int]) -> Expect:  # type: ignore[type-arg]
    if any(i in lay["header"] for i in hit):
        return None
    return ("minus", len({i for i in hit if i in set(lay["data"])}))


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines)


def mutate_text(rng: random.Random, seed: Seed, kind: str) -> Case:
    lay = _text_layout(seed)
    lines: list[bytes] = list(lay["lines"])
    data_idx: list[int] = lay["data"]
    sep: bytes = lay["sep"]
    if not data_idx:
        kind = kind if kind in ("bitflip", "byterun", "truncate", "extend", "crlf", "header") else "bitflip"
    if kind == "bitflip":
        b = bytearray(seed.data)
        offs = _flip(rng, b)
        hit = sorted({h for o in offs for h in _lines_hit(lay, o, o + 1)})
        return Case(kind, f"bits flipped at {offs}", bytes(b), _expect_lines(seed, lay, hit))
    if kind == "byterun":
        i = rng.choice(data_idx) if data_idx else 0
        s, n = lay["starts"][i], rng.choice((1, 2, 8, 32, 200))
        o = s + rng.randrange(max(1, len(lines[i])))
        b = bytearray(seed.data)
        b[o : o + n] = _run(rng, min(n, len(b) - o))
        return Case(
            kind, f"{n} bytes overwritten at {o}", bytes(b), _expect_lines(seed, lay, _lines_hit(lay, o, o + n))
        )
    if kind == "truncate":
        k = rng.randrange(len(seed.data))
        lost = [i for i in data_idx if lay["starts"][i] + len(lines[i]) + 1 > k]
        hdr = any(lay["starts"][i] + len(lines[i]) >= k for i in lay["header"] if seed.fmt == "csv")
        return Case(kind, f"cut to {k} of {len(seed.data)} bytes", seed.data[:k], None if hdr else ("minus", len(lost)))
    if kind == "extend":
        how = rng.randrange(3)
        tail = (
            _run(rng, rng.choice((1, 10, 1000)))
            if how == 0
            else b"\n" + lines[data_idx[-1]][: rng.randrange(1, 40)]
            if how == 1 and data_idx
            else b"\n\x00\x00garbage"
        )
        return Case(kind, f"{len(tail)} bytes appended", seed.data + tail, ("minus", 0))
    if kind == "crlf":
        return Case(kind, "every line ends in CR LF", seed.data.replace(b"\n", b"\r\n"), ("minus", 0))
    if kind == "header":
        hi = sorted(lay["header"])
        i = rng.choice(hi)
        f = lines[i].split(sep)
        how = rng.randrange(4)
        if how == 0 and len(f) > 1:
            del f[rng.randrange(len(f))]
        elif how == 1:
            f.insert(rng.randrange(len(f) + 1), b"extra")
        elif how == 2:
            f[rng.randrange(len(f))] = rng.randbytes(rng.randrange(1, 8))
        else:
            f = f * 50
        lines[i] = sep.join(f)
        return Case(kind, f"header line {i + 1} changed ({how})", _join(lines), None)
    i = rng.choice(data_idx)
    f = lines[i].rstrip(b"\r").split(sep)
    detail = ""
    if kind == "long-line":
        n = rng.choice((1_000, 100_000, 2_000_000))
        f[rng.randrange(len(f))] = b"A" * n
        detail = f"a field of {n} bytes"
    elif kind == "field-count":
        if rng.random() < 0.5 and len(f) > 1:
            k = rng.randrange(1, len(f))
            f = f[:-k]
            detail = f"{k} fields dropped"
        else:
            k = rng.choice((1, 2, 50, 5000))
            f += [b"1"] * k
            detail = f"{k} fields added"
    elif kind == "time":
        c = rng.choice(lay["times"] or [0])
        v = rng.choice(TEXT_TIMES)
        f[c] = (f'"{v}"' if seed.fmt == "csv" and rng.random() < 0.5 else v).encode()
        detail = f"column {c} = {v!r}"
    elif kind == "bad-value":
        c = rng.randrange(len(f))
        v = rng.choice(JUNK_VALUES)
        f[c] = v.encode("utf-8")
        detail = f"column {c} = {v!r}"
    elif kind == "quote":
        c = rng.randrange(len(f))
        f[c] = b'"' + f[c] if rng.random() < 0.5 else f[c][:1] + b'"' + f[c][1:]
        detail = f"unbalanced quote in column {c}"
    elif kind == "encoding":
        c = rng.randrange(len(f))
        f[c] = f[c] + rng.choice((b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x00"))
        detail = f"invalid UTF-8 or NUL in column {c}"
    elif kind == "junk-line":
        lines.insert(i, rng.choice((b"junk", sep * 5, rng.randbytes(40).replace(b"\n", b" "), b"#comment")))
        return Case(kind, f"a junk line before line {i + 1}", _join(lines), ("minus", 0))
    elif kind == "blank-lines":
        lines[i:i] = [b"", b"   ", b"\t"][: rng.randrange(1, 4)]
        return Case(kind, f"blank lines before line {i + 1}", _join(lines), ("minus", 0))
    else:
        raise ValueError(kind)
    lines[i] = sep.join(f)
    return Case(kind, f"line {i + 1}: {detail}", _join(lines), ("minus", 1))


# ----- nfdump ------------------------------------------------------------------------------------

NFDUMP_KINDS = [
    ("bitflip", 3),
    ("byterun", 2),
    ("truncate", 2),
    ("extend", 1),
    ("record-size", 2),
    ("block-header", 2),
    ("time", 3),
    ("element-length", 2),
    ("file-header", 1),
]


FLOW_RECORDS = (10, 11)  # nfdump's flow records: layout 1's common record, layout 2's V3 record


def _nf_layout(seed: Seed) -> dict:  # type: ignore[type-arg]
    lay = seed.info.get("layout")
    if lay is not None:
        return lay  # type: ignore[no-any-return]
    d = seed.data
    if struct.unpack_from("<H", d, 2)[0] == 1:  # layout 1 (nfdump 1.6): 140-byte header, 136-byte summary
        compressed, first = bool(struct.unpack_from("<I", d, 4)[0] & 0x39), 276
    else:  # layout 2 (nfdump 1.7): 40-byte header, compression at byte 16
        compressed, first = d[16] != 0, 40
    blocks, records = [], []  # (off, nrec, size); (off, type, size, block)
    off = first
    while off + 12 <= len(d):
        nrec, size, _typ, _fl = struct.unpack_from("<IIHH", d, off)
        blocks.append((off, nrec, size))
        if not compressed:
            r, end = off + 12, min(len(d), off + 12 + size)
            while r + 4 <= end:
                rt, rs = struct.unpack_from("<HH", d, r)
                if rs < 4:
                    break
                records.append((r, rt, rs, len(blocks) - 1))
                r += rs
        off += 12 + size
    lay = {"compressed": compressed, "blocks": blocks, "records": records, "first": first}
    seed.info["layout"] = lay
    return lay


def _nf_expect(lay: dict, offs: list[int]) -> Expect:  # type: ignore[type-arg]
    """One flow lost for damage inside a record's body; the rest of the block for its header."""
    if lay["compressed"] or any(o < lay["first"] for o in offs):
        return None
    lost = 0
    for o in offs:
        for k, (r, rt, rs, blk) in enumerate(lay["records"]):
            if r <= o < r + rs:
                if o < r + 4:
                    lost += sum(1 for x in lay["records"][k:] if x[3] == blk and x[1] in FLOW_RECORDS)
                else:
                    lost += rt in FLOW_RECORDS
                break
        else:
            for b_off, _n, _s in lay["blocks"]:
                if b_off <= o < b_off + 12:
                    return None
    return ("minus", lost)


def mutate_nfdump(rng: random.Random, seed: Seed, kind: str) -> Case:
    lay = _nf_layout(seed)
    b = bytearray(seed.data)
    v3 = [x for x in lay["records"] if x[1] == 11]
    if not v3 and kind in ("record-size", "time", "element-length"):
        kind = "bitflip"
    if kind == "bitflip":
        offs = _flip(rng, b)
        return Case(kind, f"bits flipped at {offs}", bytes(b), _nf_expect(lay, offs))
    if kind == "byterun":
        n = rng.choice((1, 4, 16, 64))
        o = rng.randrange(lay["first"], len(b))
        b[o : o + n] = _run(rng, min(n, len(b) - o))
        return Case(
            kind, f"{n} bytes overwritten at {o}", bytes(b), _nf_expect(lay, list(range(o, min(o + n, len(b)))))
        )
    if kind == "truncate":
        k = rng.randrange(len(b))
        flows = [x for x in lay["records"] if x[1] in FLOW_RECORDS]
        lost = sum(1 for r, rt, rs, _b in flows if r + rs > k)
        expect: Expect = None if lay["compressed"] or k < lay["first"] else ("minus", lost)
        return Case(kind, f"cut to {k} of {len(b)} bytes", bytes(b[:k]), expect)
    if kind == "extend":
        n = rng.choice((1, 12, 100, 5000))
        return Case(kind, f"{n} bytes appended", bytes(b) + _run(rng, n), ("minus", 0))
    if kind == "block-header":
        k = rng.randrange(len(lay["blocks"]))
        off, nrec, size = lay["blocks"][k]
        field = rng.randrange(3)
        v = rng.choice([0, 1, nrec + 1, size + 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])
        struct.pack_into("<I" if field < 2 else "<H", b, off + 4 * field, v & (0xFFFFFFFF if field < 2 else 0xFFFF))
        return Case(kind, f"block {k} header field {field} -> {v}", bytes(b), None)
    if kind == "file-header":
        o, n = rng.choice([(2, 2), (16, 1), (18, 2), (24, 8), (32, 4), (36, 4)])
        v = rng.choice([0, 1, 2, 0xFF, (1 << (8 * n)) - 1])
        b[o : o + n] = v.to_bytes(n, "little")
        return Case(kind, f"file header bytes {o}..{o + n} -> {v}", bytes(b), None)
    k = rng.randrange(len(v3))
    r, _rt, rs, blk = v3[k]
    if kind == "record-size":
        v = rng.choice([0, 1, 3, 4, rs - 4, rs + 4, 0xFFFF])
        struct.pack_into("<H", b, r + 2, max(0, v))
        lost = sum(1 for x in v3 if x[3] == blk and x[0] >= r)
        return Case(kind, f"record at {r}: size {rs} -> {v}", bytes(b), ("minus", lost))
    # walk the V3 record's elements: 12-byte record header, then (type, length) elements
    elems = []
    e = r + 12
    while e + 4 <= r + rs:
        et, el = struct.unpack_from("<HH", b, e)
        if el < 4:
            break
        elems.append((e, et, el))
        e += el
    if kind == "time":
        gen = [x for x in elems if x[1] == 1 and x[2] >= 20]
        if gen:
            e, _et, _el = gen[0]
            which = rng.randrange(2)
            v = rng.choice(MS_EXTREMES)
            struct.pack_into("<Q", b, e + 4 + 8 * which, v & ((1 << 64) - 1))
            return Case(kind, f"record at {r}: msec{'Last' if which else 'First'} -> {v:#x}", bytes(b), ("minus", 1))
        kind = "element-length"
    if not elems:
        return Case("bitflip", "record without elements: bits flipped", bytes(b), ("minus", 0))
    e, et, el = rng.choice(elems)
    v = rng.choice([0, 1, 3, 4, el - 1, el + 1, el + 64, 0xFFFF])
    struct.pack_into("<H", b, e + 2, max(0, v))
    return Case("element-length", f"record at {r}: element {et} length {el} -> {v}", bytes(b), ("minus", 1))


# ----- Parquet -----------------------------------------------------------------------------------

PARQUET_KINDS = [
    ("bitflip", 3),
    ("byterun", 2),
    ("truncate", 1),
    ("extend", 1),
    ("time", 3),
    ("null", 2),
    ("bad-value", 2),
    ("long-value", 1),
    ("wide-int", 2),
    ("nan", 1),
    ("drop-column", 1),
    ("row-groups", 1),
]


def _pq_layout(seed: Seed) -> dict:  # type: ignore[type-arg]
    lay = seed.info.get("layout")
    if lay is not None:
        return lay  # type: ignore[no-any-return]
    md = pq.ParquetFile(io.BytesIO(seed.data)).metadata
    groups = []
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        lo, hi = 1 << 62, 0
        for c in range(rg.num_columns):
            col = rg.column(c)
            start = min(x for x in (col.dictionary_page_offset, col.data_page_offset) if x is not None and x > 0)
            lo, hi = min(lo, start), max(hi, start + col.total_compressed_size)
        groups.append((lo, hi, rg.num_rows))
    lay = {"groups": groups, "table": pq.read_table(io.BytesIO(seed.data))}
    seed.info["layout"] = lay
    return lay


def _pq_expect(lay: dict, offs: list[int]) -> Expect:  # type: ignore[type-arg]
    lost = 0
    for o in offs:
        for lo, hi, n in lay["groups"]:
            if lo <= o < hi:
                lost += n
                break
        else:
            return None  # magic, page headers outside the chunks, footer
    return ("minus", lost)


def _write(t: pa.Table, row_group_size: int = 64) -> bytes:
    buf = io.BytesIO()
    pq.write_table(t, buf, row_group_size=row_group_size)
    return buf.getvalue()


def _set_row(t: pa.Table, name: str, row: int, value: object, typ: pa.DataType | None = None) -> pa.Table:
    col = t.column(name).combine_chunks()
    typ = typ or col.type
    vals = col.cast(typ).to_pylist() if typ != col.type else col.to_pylist()
    vals[row] = value
    i = t.schema.get_field_index(name)
    return t.set_column(i, pa.field(name, typ, nullable=True), pa.array(vals, typ))


def mutate_parquet(rng: random.Random, seed: Seed, kind: str) -> Case:
    lay = _pq_layout(seed)
    t: pa.Table = lay["table"]
    b = bytearray(seed.data)
    if kind == "bitflip":
        offs = _flip(rng, b)
        return Case(kind, f"bits flipped at {offs}", bytes(b), _pq_expect(lay, offs))
    if kind == "byterun":
        n = rng.choice((1, 4, 16, 64))
        o = rng.randrange(len(b))
        b[o : o + n] = _run(rng, min(n, len(b) - o))
        return Case(
            kind, f"{n} bytes overwritten at {o}", bytes(b), _pq_expect(lay, list(range(o, min(o + n, len(b)))))
        )
    if kind == "truncate":
        k = rng.randrange(len(b))
        return Case(kind, f"cut to {k} of {len(b)} bytes (the footer is lost)", bytes(b[:k]), None)
    if kind == "extend":
        n = rng.choice((1, 8, 1000))
        return Case(kind, f"{n} bytes appended (the footer is no longer at the end)", bytes(b) + _run(rng, n), None)
    if kind == "row-groups":
        n = rng.choice((1, 2, 7))
        return Case(kind, f"rewritten in row groups of {n} rows", _write(t, n), ("minus", 0))
    row = rng.randrange(t.num_rows)
    names = t.schema.names
    strings = [f.name for f in t.schema if pa.types.is_string(f.type)]
    ints = [f.name for f in t.schema if pa.types.is_integer(f.type)]
    if kind == "time":
        name = rng.choice([n for n in ("start", "end") if n in names])
        v = rng.choice([1 << 62, (1 << 63) - 1, -(1 << 63), -1, 253_402_300_800_000, 0])
        col = t.column(name).combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False).copy()
        col[row] = np.int64(v)
        t2 = t.set_column(names.index(name), t.schema.field(name), pa.array(col).cast(t.schema.field(name).type))
        return Case(kind, f"row {row}: {name} = {v}", _write(t2), ("minus", 1))
    if kind == "null":
        name = rng.choice(
            [n for n in ("start", "end", "src_addr", "dst_addr", "src_addr_v4", "sampling_rate") if n in names]
        )
        return Case(kind, f"row {row}: {name} = null", _write(_set_row(t, name, row, None)), ("minus", 1))
    if kind == "bad-value" and strings:
        name = rng.choice(strings)
        v = rng.choice(JUNK_VALUES)
        return Case(kind, f"row {row}: {name} = {v!r}", _write(_set_row(t, name, row, v)), ("minus", 1))
    if kind == "long-value" and strings:
        name = rng.choice(strings)
        n = rng.choice((10_000, 1_000_000))
        return Case(kind, f"row {row}: {name} of {n} bytes", _write(_set_row(t, name, row, "A" * n)), ("minus", 1))
    if kind == "nan":
        name = rng.choice([n for n in ("packets", "bytes", "src_port") if n in names])
        v = rng.choice([float("nan"), float("inf"), -1.5, 1e300])
        return Case(
            kind, f"row {row}: {name} = {v} (as float64)", _write(_set_row(t, name, row, v, pa.float64())), ("minus", 1)
        )
    if kind == "drop-column":
        name = rng.choice(names)
        need = name in ("start", "end", "src_addr", "dst_addr") or name.startswith(("src_addr_", "dst_addr_"))
        return Case(kind, f"column {name} dropped", _write(t.drop_columns([name])), None if need else ("minus", 0))
    name = rng.choice(ints)  # wide-int, and bad-value / long-value without a string column
    v = rng.choice([-1, 70_000, 1 << 40, -(1 << 63), (1 << 63) - 1])
    return Case(
        "wide-int", f"row {row}: {name} = {v} (as int64)", _write(_set_row(t, name, row, v, pa.int64())), ("minus", 1)
    )

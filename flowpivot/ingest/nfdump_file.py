"""The nfdump file container read in Python (to salvage a file cut short), and the bounds on an
``nfdump`` process.

The ``nfdump`` binary refuses a file cut short as a whole: in layout 2 (nfdump 1.7) the file header
points at an appendix past the end ("appendix offset error"), in layout 1 (nfdump 1.6) the last
block ends past the end ("Short read"), and it prints no flow even from the complete blocks before
the cut. The container is simple enough to check here, without decoding a record:

* layout 1: a 140-byte file header (magic ``0xA50C``, version 1, flags, block count, ident), a
  136-byte summary (the stat record), then data blocks;
* layout 2: a 40-byte file header (magic, version 2, ..., compression at byte 16, appendix block
  count at 18, appendix offset at 24, block count at 36), data blocks, then the appendix blocks;
* a block: a 12-byte header (record count u32, size u32 without the header, type u16, flags u16)
  and ``size`` bytes of records; an uncompressed block's records each start with a type u16 and a
  size u16 (the size including those 4 bytes).

When the last block ends past the end of the file, :func:`salvage` writes a copy nfdump can read:
the complete blocks, and the whole records of the cut block when the file is not compressed (a
compressed block cut short cannot be decompressed: its records are lost); the appendix (nfdump
1.7's summary and ident) is left out. The records the cut block declared and the copy does not
hold are counted as lost, with the byte offset of the cut.

:func:`bounded` starts ``nfdump`` with limits: a damaged block header can make nfdump 1.7 print the
same message for ever ("Error process appendix record type", at about 10 MB/s) or spin; the
process gets :data:`CPU_SECONDS_BASE` s of CPU plus :data:`CPU_SECONDS_PER_MB` per MB of input
(nfdump reads a MB in well under 0.1 s, a small file in 0.01 s: a sound file stays far below; a
block count of 2^32-1 makes ``nfdump -E`` spin for 6 s on a 31 KB file), at most
:data:`MESSAGE_BYTES` of messages on stderr, and :data:`ADDRESS_SPACE` of memory. A process stopped
by a bound is named in a problem (:func:`stopped_by`); the flows it printed before are kept.
"""

from __future__ import annotations

import contextlib
import mmap
import resource
import signal
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "Salvage",
    "salvage",
    "bounded",
    "stopped_by",
    "read_messages",
    "CPU_SECONDS_BASE",
    "CPU_SECONDS_PER_MB",
    "MESSAGE_BYTES",
    "ADDRESS_SPACE",
]

MAGIC = 0xA50C
V1_HEADER, V1_STAT, V2_HEADER, BLOCK_HEADER = 140, 136, 40, 12
BLOCK_TYPES = (1, 2, 3, 4)  # nfdump's data block types (1.6 writes 2, 1.7 writes 3)
V1_COMPRESSED = 0x01 | 0x08 | 0x10 | 0x20  # LZO, BZ2, LZ4, ZSTD flags of a layout-1 file header

CPU_SECONDS_BASE = 1
CPU_SECONDS_PER_MB = 1.0
MESSAGE_BYTES = 1 << 20
ADDRESS_SPACE = 2 << 30


@dataclass(frozen=True)
class Salvage:
    """A readable copy of a file cut short, and what the cut cost."""

    path: Path
    where: str  # "byte N"
    why: str
    lost: int  # records the cut block declared that the copy does not hold


def _blocks(data: bytes, first: int, end: int) -> tuple[list[tuple[int, int, int]], int]:
    """Complete blocks (offset, records, size) from ``first`` up to ``end``; and the offset of the
    first block that is not complete (``end`` when all are)."""
    out: list[tuple[int, int, int]] = []
    off = first
    while off + BLOCK_HEADER <= end:
        nrec, size = struct.unpack_from("<II", data, off)
        if off + BLOCK_HEADER + size > end:
            return out, off
        out.append((off, nrec, size))
        off += BLOCK_HEADER + size
    return out, off


def _whole_records(body: bytes) -> tuple[int, int]:
    """(count, bytes) of the whole records at the start of an uncompressed block body cut short."""
    n = pos = 0
    while pos + 4 <= len(body):
        (size,) = struct.unpack_from("<H", body, pos + 2)
        if size < 4 or pos + size > len(body):
            break
        pos += size
        n += 1
    return n, pos


def salvage(path: Path, workdir: Path, drop_appendix: str = "") -> Salvage | None:
    """A copy of ``path`` nfdump can read when the file is cut short inside or after its blocks;
    None when it is not an nfdump file cut short (a sound file, or damage of another kind, is
    left to nfdump). With ``drop_appendix`` (why), a layout-2 file whose blocks are complete is
    copied without its appendix (nfdump refuses a whole file whose appendix is damaged)."""
    with _mapped(path) as data:
        return _salvage(data, Path(workdir), drop_appendix) if data is not None else None


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[Any]:
    """The file mapped read-only (only the pages of the headers read are loaded); None when it is
    too short to be an nfdump file."""
    with open(path, "rb") as fh:
        if Path(path).stat().st_size < 4:
            yield None
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            yield mm


def _salvage(data: Any, workdir: Path, drop_appendix: str) -> Salvage | None:
    magic, version = struct.unpack_from("<HH", data, 0)
    first = V1_HEADER + V1_STAT if version == 1 else V2_HEADER
    if magic != MAGIC or version not in (1, 2) or len(data) < first:
        return None
    appendix = 0
    if version == 1:
        compressed = bool(struct.unpack_from("<I", data, 4)[0] & V1_COMPRESSED)
    else:
        compressed = data[16] != 0
        (appendix,) = struct.unpack_from("<q", data, 24)
    if 0 < appendix <= len(data):  # the data blocks end where the appendix starts
        blocks, cut = _blocks(data, first, appendix)
        if cut < appendix:
            return None  # a block inside the file that does not end where the next starts: damage
        if drop_appendix:
            out = Path(workdir) / "salvaged.nfcapd"
            header = bytearray(data[:first])
            struct.pack_into("<H", header, 18, 0)
            struct.pack_into("<q", header, 24, 0)
            with open(out, "wb") as fh:
                fh.write(header)
                for pos in range(first, appendix, 1 << 22):
                    fh.write(data[pos : min(pos + (1 << 22), appendix)])
            return Salvage(out, f"byte {appendix:,}", f"{drop_appendix}: the file is read without its appendix", 0)
        if _blocks(data, appendix, len(data))[1] == len(data):
            return None  # sound
        cut, what = len(data), "the appendix (nfdump's summary of the file) is cut short"
    else:
        blocks, cut = _blocks(data, first, len(data))
        if cut == len(data) and appendix <= 0:
            return None  # sound (a file without an appendix: nfcapd did not close it)
        what = "the file ends before its appendix (nfdump's summary of the file)"
    lost = 0
    tail = b""
    if cut + BLOCK_HEADER <= len(data) and struct.unpack_from("<H", data, cut + 8)[0] not in BLOCK_TYPES:
        what = f"the {len(data) - cut:,} bytes after the last block (at byte {cut:,}) are not a block: left out"
    elif cut + BLOCK_HEADER <= len(data):
        declared, size = struct.unpack_from("<II", data, cut)
        body = data[cut + BLOCK_HEADER :]
        label = f"block {len(blocks)} (at byte {cut:,}) declares {declared:,} record(s) in {size:,} bytes, "
        if compressed:
            lost = min(declared, size * 255 // 12)  # LZ4 inflates at most 255 times; 12 bytes the smallest flow
            what = label + f"only {len(body):,} are there: a compressed block cut short cannot be read"
        else:
            n, used = _whole_records(body)
            if n:
                head = bytearray(data[cut : cut + BLOCK_HEADER])
                struct.pack_into("<II", head, 0, n, used)
                tail = bytes(head) + body[:used]
            # a lying count is bounded by what the declared size could hold (12 bytes the smallest flow)
            lost = max(0, min(declared - n, (size - used) // 12))
            what = label + f"only {len(body):,} are there: its {n:,} whole record(s) are kept"
    elif cut < len(data):
        what = f"the header of block {len(blocks)} (at byte {cut:,}) is cut short"
    header = bytearray(data[:first])
    nblocks = len(blocks) + (1 if tail else 0)
    if version == 1:
        struct.pack_into("<I", header, 8, nblocks)
    else:
        struct.pack_into("<H", header, 18, 0)  # no appendix blocks
        struct.pack_into("<q", header, 24, 0)
        struct.pack_into("<I", header, 36, nblocks)
    out = Path(workdir) / "salvaged.nfcapd"
    with open(out, "wb") as fh:
        fh.write(header)
        for o, _n, size in blocks:
            fh.write(data[o : o + BLOCK_HEADER + size])
        fh.write(tail)
    why = (
        f"the file is cut short at byte {len(data):,}: {what}; the {len(blocks):,} complete block(s) before it are read"
        + (f"; {lost:,} record(s) lost" if lost else "")
    )
    return Salvage(out, f"byte {len(data):,}", why, lost)


def _limits(cpu_seconds: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_FSIZE, (MESSAGE_BYTES, MESSAGE_BYTES))
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def cpu_seconds(path: Path) -> int:
    """The CPU time one nfdump process may use on ``path``."""
    size = Path(path).stat().st_size
    return int(CPU_SECONDS_BASE + CPU_SECONDS_PER_MB * size / 1e6 + 0.999)


def bounded(cmd: list[str], path: Path, stdout: IO[bytes] | int, stderr: IO[bytes], env: dict[str, str]) -> Any:
    """``nfdump`` started with the bounds above (``stderr`` must be a file: its size is bounded).
    ``stdout`` to a file is bounded to :data:`MESSAGE_BYTES` too: use a pipe for the records."""
    return subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env, preexec_fn=_limits(cpu_seconds(path)))


def stopped_by(returncode: int | None, path: Path) -> str | None:
    """What stopped nfdump, when it was one of the bounds (or another signal)."""
    if returncode is None or returncode >= 0:
        return None
    sig = -returncode
    if sig == signal.SIGXCPU:
        return f"nfdump used its {cpu_seconds(path)} s of CPU time for this file and was stopped (a damaged file)"
    if sig == signal.SIGXFSZ:
        return f"nfdump printed more than {MESSAGE_BYTES >> 20} MiB of messages and was stopped (a damaged file)"
    if sig == signal.SIGKILL:
        return None  # the reader stopped it (the caller gave up reading)
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    return f"nfdump ended with {name} (a damaged file)"


def read_messages(fh: IO[bytes], limit: int = 1 << 16) -> list[str]:
    """The distinct lines nfdump printed on stderr (the first ``limit`` bytes of them)."""
    fh.seek(0)
    text = fh.read(limit).decode("utf-8", "replace")
    return list(dict.fromkeys(ln.strip() for ln in text.splitlines() if ln.strip()))


def run_bounded(cmd: list[str], path: Path, env: dict[str, str], workdir: str | None = None) -> tuple[bytes, int]:
    """Run a short nfdump command (``-I``, ``-E``) with the bounds; its stdout (at most
    :data:`MESSAGE_BYTES`) and return code."""
    with tempfile.TemporaryFile(dir=workdir) as out, tempfile.TemporaryFile(dir=workdir) as err:
        proc = bounded(cmd, path, out, err, env)
        proc.wait()
        out.seek(0)
        return out.read(MESSAGE_BYTES), proc.returncode


@dataclass(frozen=True)
class Repair:
    """A copy of an uncompressed file without the records whose structure is damaged."""

    path: Path
    problems: list[tuple[str, str]]  # (where, why), one per damaged record or block rest
    dropped_flows: list[int]  # flow numbers (0-based, file order) of the flow records left out
    lost: int  # records left out, flows or not


def _v3_sound(data: bytes, r: int, rs: int) -> str:
    """Why a V3 record's elements do not fill it exactly ("" when they do)."""
    if rs < 12:
        return f"a V3 record of {rs} bytes (its header alone is 12)"
    (count,) = struct.unpack_from("<H", data, r + 4)  # numElements is a u16 in nfdump 1.7's V3 header
    e, n = r + 12, 0
    while e + 4 <= r + rs:
        et, el = struct.unpack_from("<HH", data, e)
        if el < 4 or e + el > r + rs:
            return f"element {n} (type {et}) claims {el} bytes, {r + rs - e} are left in the record"
        e += el
        n += 1
    if e != r + rs or n != count:
        return f"{n} element(s) fill {e - r - 12} of {rs - 12} bytes; the record header says {count}"
    return ""


RECORD_TYPES = range(1, 16)  # nfdump's record types (1.6 and 1.7), 10 and 11 the flows


def _next_sound(data: bytes, r: int, stop: int) -> bool:
    """Whether the record at ``r`` looks like one (a known type, a size inside the block, and for
    a V3 record elements that fill it): after a damaged record, the next one shows whether the
    damaged record's size could be trusted."""
    rt, rs = struct.unpack_from("<HH", data, r)
    return rt in RECORD_TYPES and 4 <= rs and r + rs <= stop and (rt != 11 or not _v3_sound(data, r, rs))


def repair_records(path: Path, workdir: Path) -> Repair | None:
    """For an uncompressed nfdump file, a copy without the records nfdump cannot walk: a V3 record
    whose elements do not fill it exactly (nfdump stops at it: "elementHeader > eor"), a record
    whose size is under 4 or runs past its block (nfdump aborts: "Unexpected size"; nothing after
    it in the block can be found, so the rest of the block is left out). None when the file is
    compressed, not an nfdump file, or has no such record."""
    with _mapped(path) as data:
        return _repair(data, Path(workdir)) if data is not None else None


def _repair(data: Any, workdir: Path) -> Repair | None:
    magic, version = struct.unpack_from("<HH", data, 0)
    first = V1_HEADER + V1_STAT if version == 1 else V2_HEADER
    if magic != MAGIC or version not in (1, 2) or len(data) < first:
        return None
    if (version == 1 and struct.unpack_from("<I", data, 4)[0] & V1_COMPRESSED) or (version == 2 and data[16]):
        return None
    end = len(data)
    if version == 2:
        appendix = struct.unpack_from("<q", data, 24)[0]
        end = appendix if 0 < appendix <= len(data) else end
    blocks, _cut = _blocks(data, first, end)
    problems: list[tuple[str, str]] = []
    dropped: list[int] = []
    flow = lost = 0
    copy = Path(workdir) / "repaired.nfcapd"
    with open(copy, "wb") as fh:
        header = bytearray(data[:first])
        if version == 2:  # the appendix (summary, ident) no longer describes the copy
            struct.pack_into("<H", header, 18, 0)
            struct.pack_into("<q", header, 24, 0)
        fh.write(header)
        for k, (off, nrec, size) in enumerate(blocks):
            r, stop = off + BLOCK_HEADER, off + BLOCK_HEADER + size
            kept: list[bytes] = []
            seen = 0
            after_damage = False
            while r + 4 <= stop:
                rt, rs = struct.unpack_from("<HH", data, r)
                if (
                    rs < 4
                    or r + rs > stop
                    or (rt == 11 and rs < 12)
                    or (after_damage and not _next_sound(data, r, stop))
                ):
                    rest = max(0, min(nrec - seen, (stop - r) // 12))  # a lying count: bounded by the bytes left
                    problems.append(
                        (f"byte {r:,}", f"record of size {rs} in block {k} ({stop - r} bytes left in it): the rest "
                         f"of the block cannot be walked, {rest:,} record(s) left out")
                    )  # fmt: skip
                    lost += rest
                    break
                seen += 1
                why = _v3_sound(data, r, rs) if rt == 11 else ""
                after_damage = bool(why)
                if why:
                    problems.append((f"byte {r:,}", f"flow record {flow + 1} is damaged: {why}; left out"))
                    dropped.append(flow)
                    lost += 1
                else:
                    kept.append(data[r : r + rs])
                flow += rt in (10, 11)
                r += rs
            body = b"".join(kept)
            head = bytearray(data[off : off + BLOCK_HEADER])
            struct.pack_into("<II", head, 0, len(kept), len(body))
            fh.write(head)
            fh.write(body)
    if not problems:
        copy.unlink()
        return None
    return Repair(copy, problems, dropped, lost)

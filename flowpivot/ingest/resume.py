"""Reading only what a file gained since it was ingested.

A file grew when its content starts with the whole content of a version already in the store
(same SHA-256 over the old length, found through :func:`flowpivot.ingest.once.earlier_versions`).
Then only the part after the old content is read:

- Zeek logs, canonical CSV and nfdump CSV (line formats): the lines after the last complete line
  of the old content. A last line the old version held only in part (a writer caught mid-line) is
  read again whole; if its cut form had parsed, that record is in the store twice.
- pcap and pcapng: the packets after the last complete packet of the old content. The old packets
  are decoded again (nothing of them is stored) so that the templates they carry decode the new
  data, as a capture read in one go would.

The new part is given to the format's own reader as a file of its own: the old file's header
(Zeek ``#`` lines, the CSV header line, the pcap file header, pcapng section and interface
blocks) followed by the new bytes. Problems are reported with the line, packet and offset of the
grown file, not of that file.
"""

from __future__ import annotations

import contextlib
import gzip
import mmap
import os
import re
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Problem
from .base import ReadReport
from .once import GZIP_MAGIC, Digest

__all__ = ["Resume", "plan_resume", "tail_file", "fix_places", "decode_prefix", "RESUMABLE"]

LINE_FORMATS = ("zeek", "csv", "nfdump-csv")
RESUMABLE = (*LINE_FORMATS, "pcap")
_PCAPNG_SHB = 0x0A0D0D0A
_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}
_MAX_CAPLEN = 1 << 18


@dataclass
class Resume:
    """Where the new part of a grown file starts, and how to number what is found in it."""

    from_key: str
    at: int  # content offset of the first new byte read
    header: bytes  # what the format's reader needs before it
    lines_before: int = 0  # line formats: lines of the content before ``at``
    packets_before: int = 0  # captures: packets before ``at``


def _open_content(path: Path) -> Any:
    with open(path, "rb") as fh:
        gz = fh.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _text_header(path: Path, fmt: str) -> bytes:
    from .nfdump import NFDUMP_CSV_HEADER

    out = b""
    with _open_content(path) as fh:
        first = fh.readline()
        if fmt == "zeek":
            line = first
            while line.startswith(b"#"):
                out += line
                line = fh.readline()
            return out
        if fmt == "csv":
            return first
        cols = tuple(c.strip().strip('"') for c in first.decode("utf-8", "replace").split(","))
        return first if cols[: len(NFDUMP_CSV_HEADER)] == NFDUMP_CSV_HEADER else b""


def _pcap_layout(buf: Any, limit: int) -> tuple[bytes, int, int] | None:
    """(file header, packets, end of the last complete packet) of a capture's first ``limit`` bytes."""
    head = bytes(buf[:4])
    if head in _PCAP_MAGIC:
        if limit < 24:
            return None
        bo = _PCAP_MAGIC[head]
        off = n = 0
        off = 24
        while off + 16 <= limit:
            caplen = struct.unpack_from(bo + "I", buf, off + 8)[0]
            if caplen > _MAX_CAPLEN or off + 16 + caplen > limit:
                break
            off += 16 + caplen
            n += 1
        return bytes(buf[:24]), n, off
    if len(head) == 4 and struct.unpack("<I", head)[0] == _PCAPNG_SHB:
        header = b""
        off = n = 0
        bo = "<"
        while off + 12 <= limit:
            if struct.unpack_from("<I", buf, off)[0] == _PCAPNG_SHB:
                bo = ">" if bytes(buf[off + 8 : off + 12]) == b"\x1a\x2b\x3c\x4d" else "<"
                btype = _PCAPNG_SHB
            else:
                btype = struct.unpack_from(bo + "I", buf, off)[0]
            blen = struct.unpack_from(bo + "I", buf, off + 4)[0]
            if blen < 12 or blen % 4 or off + blen > limit:
                break
            if btype in (_PCAPNG_SHB, 1):  # section header, interface description: the new part needs them
                header += bytes(buf[off : off + blen])
            elif btype in (3, 6):
                n += 1
            off += blen
        return header, n, off
    return None


def plan_resume(path: Path, fmt: str, digest: Digest, earlier: dict[str, Any]) -> Resume | None:
    """How to read only the new part of ``path`` grown from the ``earlier`` version, or None when
    it cannot be (the format cannot resume, or the old end is not a place to resume at)."""
    if fmt in LINE_FORMATS:
        at = int(earlier.get("last_newline_end", 0))
        header = _text_header(path, fmt)
        if at < len(header):
            return None  # the old version ended inside the header: read it all
        lines = digest.prefixes.get(int(earlier["length"]), ("", 0))[1]
        return Resume(earlier["key"], at, header, lines_before=lines)
    if fmt == "pcap":
        with open(path, "rb") as fh:
            if fh.read(2) == GZIP_MAGIC:
                return None
            fh.seek(0)
            size = os.fstat(fh.fileno()).st_size
            if not size:
                return None
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                layout = _pcap_layout(mm, int(earlier["length"]))
        if layout is None:
            return None
        header, packets, at = layout
        return Resume(earlier["key"], at, header, packets_before=packets)
    return None


@contextlib.contextmanager
def tail_file(path: Path, resume: Resume, where: Path) -> Iterator[Path]:
    """A temporary file in ``where``: the header and the content of ``path`` from ``resume.at`` on."""
    where.mkdir(parents=True, exist_ok=True)
    tmp = where / f".tmp-grown-{uuid.uuid4().hex[:12]}{path.suffix if path.suffix != '.gz' else ''}"
    try:
        with _open_content(path) as src, open(tmp, "wb") as dst:
            dst.write(resume.header)
            src.seek(resume.at)
            while block := src.read(1 << 20):
                dst.write(block)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            where.rmdir()  # when no other run uses it


_LINE = re.compile(r"^line (\d+)")
_PACKET = re.compile(r"packet (\d+)")
_OFFSET = re.compile(r"offset (\d+)")


def fix_places(rep: ReadReport, first: int, fmt: str, resume: Resume) -> None:
    """Renumber the places of the problems ``rep`` got from the tail file (from index ``first``)."""
    header_lines = resume.header.count(b"\n")
    shift = resume.at - len(resume.header)

    def fix(where: str) -> str:
        if fmt in LINE_FORMATS:
            return _LINE.sub(lambda m: f"line {int(m.group(1)) - header_lines + resume.lines_before}", where)
        where = _PACKET.sub(lambda m: f"packet {int(m.group(1)) + resume.packets_before}", where)
        return _OFFSET.sub(
            lambda m: f"offset {int(m.group(1)) + shift if int(m.group(1)) >= len(resume.header) else m.group(1)}",
            where,
        )

    rep.problems[first:] = [Problem(p.source, fix(p.where), p.reason) for p in rep.problems[first:]]


def decode_prefix(path: Path, resume: Resume, decoder: Any) -> None:
    """Decode the old packets of a grown capture for their templates; their flows are dropped."""
    from .pcap import _read

    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mm)[: resume.at]
    try:
        for _ in _read(view, ReadReport(str(path)), decoder, None, 0, None):  # type: ignore[arg-type]
            pass
    finally:
        # data sets the decoder holds for a template may point into the mapping: then it stays
        # mapped until they are gone (the garbage collector closes it)
        with contextlib.suppress(BufferError):
            view.release()
            mm.close()

"""Text inputs read in chunks of whole lines: opening (with gzip), chunking, splitting into fields.

Text is parsed in chunks of whole lines by ``pyarrow.csv``; a line with the wrong number of fields
is reported with its line number and dropped. Only a chunk that ``pyarrow.csv`` cannot split at
all is re-read line by line.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import Problem
from .base import ReadReport

__all__ = ["CHUNK_BYTES", "open_text", "gunzip_head", "line_chunks", "csv_chunk", "explain_empty"]

CHUNK_BYTES = 8 << 20


class _CountingReader(io.RawIOBase):
    """Wraps a binary file and reports how many raw (compressed) bytes were read."""

    def __init__(self, fh: IO[bytes], report: ReadReport):
        self.fh = fh
        self.report = report

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.fh.read(len(b))
        n = len(data)
        b[:n] = data
        self.report.advance(n)
        return n

    def close(self) -> None:
        self.fh.close()
        super().close()


class _Gunzip(io.RawIOBase):
    """gzip members decompressed as a stream, which keeps what came before a cut or damage.

    Python's GzipFile raises at a truncated or damaged stream and the caller loses the text it
    had buffered. Here, text is handed out only up to the last complete line; when the data ends
    without the end-of-stream marker (a file cut short while it was written or copied) or zlib
    finds damage, the partial line is dropped, one problem says where (line number, compressed
    byte), and the stream ends cleanly so that every complete line before it is kept. The CRC and
    length of each member are checked by zlib. Concatenated members (``cat a.gz b.gz``) are read
    one after another; zero padding after the last member is ignored.
    """

    BLOCK = 1 << 18

    def __init__(self, fh: IO[bytes], report: ReadReport):
        self.fh = fh
        self.report = report
        self.d = zlib.decompressobj(31)
        self.offset = 0  # compressed bytes read
        self.lines = 0  # complete lines handed out
        self.held = b""  # text after the last line end, not handed out yet
        self.out = b""  # complete lines waiting to be handed out
        self.done = False
        self.member_started = False

    def readable(self) -> bool:
        return True

    def _cut(self, why: str, at: str) -> None:
        line = self.lines + self.out.count(b"\n") + 1
        what = "this partial line is dropped" if self.held else "nothing of this line was in the file"
        self.report.problem(f"line {line}", f"{why} {at}: {what}; the {line - 1:,} line(s) before it are kept")
        self.held = b""
        self.done = True

    def _feed(self, data: bytes) -> None:
        span = f"in compressed bytes {self.offset - len(data):,}..{self.offset:,}"
        if not self.member_started and not data.strip(b"\0"):
            return  # zero padding after the last member (tape blocks, preallocated files)
        while data:
            try:
                text = self.d.decompress(data)
            except zlib.error as e:
                self._cut(f"the gzip data is damaged ({e})", span)
                return
            self.member_started = True
            if text:
                text = self.held + text
                cut = text.rfind(b"\n") + 1
                self.out += text[:cut]
                self.held = text[cut:]
            if not self.d.eof:
                return
            rest = self.d.unused_data
            if not rest.strip(b"\0"):
                self.member_started = False
                self.d = zlib.decompressobj(31)
                return
            if rest[:2] != b"\x1f\x8b":
                self._cut("bytes that are not gzip follow the compressed data", span)
                return
            self.d = zlib.decompressobj(31)
            self.member_started = False
            data = rest

    def readinto(self, b: Any) -> int:
        while not self.out and not self.done:
            block = self.fh.read(self.BLOCK)
            self.report.advance(len(block))
            if not block:
                if self.member_started and not self.d.eof:
                    self._cut(
                        "the gzip data ends without its end-of-stream marker (file cut short)",
                        f"at compressed byte {self.offset:,} (the end of the file)",
                    )
                else:
                    self.out, self.held = self.out + self.held, b""
                    self.done = True
                break
            self.offset += len(block)
            self._feed(block)
        n = min(len(b), len(self.out))
        b[:n] = self.out[:n]
        self.lines += self.out.count(b"\n", 0, n)
        self.out = self.out[n:]
        return n

    def close(self) -> None:
        self.fh.close()
        super().close()


def open_text(path: Path, report: ReadReport) -> io.BufferedReader:  # type: ignore[type-arg]
    """The file's bytes, gunzipped when it starts with the gzip magic; progress counts raw bytes.

    A gzip cut short or damaged gives the complete lines before the cut and one problem (see
    :class:`_Gunzip`).
    """
    raw = open(path, "rb")
    gz = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    if gz:
        return io.BufferedReader(_Gunzip(raw, report), buffer_size=1 << 20)
    return io.BufferedReader(_CountingReader(raw, report), buffer_size=1 << 20)


def gunzip_head(path: Path, size: int = 65536) -> bytes:
    """The first ``size`` bytes of text in a gzip file, as far as they can be read (for detection)."""
    with open_text(path, ReadReport(str(path))) as fh:
        return fh.read(size)


def line_chunks(fh: IO[bytes], first_line: int = 1, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[bytes, int]]:
    """Yield (bytes of whole lines, number of the first of them), about ``chunk_bytes`` at a time."""
    rest = b""
    line = first_line
    while True:
        block = fh.read(chunk_bytes)
        if not block:
            break
        data = rest + block
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        chunk, rest = data[: cut + 1], data[cut + 1 :]
        yield chunk, line
        line += chunk.count(b"\n")
    if rest:
        yield rest + b"\n", line


def csv_chunk(
    data: bytes,
    first_line: int,
    names: list[str],
    report: ReadReport,
    delimiter: str = ",",
    quoting: bool = True,
    skip_line: Callable[[str], bool] | None = None,
    include: list[str] | None = None,
) -> tuple[pa.Table, np.ndarray]:
    """Parse whole lines into a table of strings; returns it and the line number of each row.

    Only the ``include`` columns are kept (all when None). A line with the wrong number of fields
    is reported (unless ``skip_line`` says it is a comment) and dropped; blank lines are skipped.
    A chunk pyarrow cannot split (a stray quote) is re-read line by line.
    """
    keep = list(include) if include is not None else list(names)
    # physical line number of each non-blank line (pyarrow numbers rows without the blank ones)
    if b"\n\n" in data or data.startswith(b"\n") or b"\n\r\n" in data:
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        starts = np.concatenate(([0], ends[:-1] + 1))
        length = ends - starts
        cr = np.frombuffer(data, dtype=np.uint8)[np.minimum(starts, len(data) - 1)] == 13
        blank = (length == 0) | ((length == 1) & cr)
        nonblank = np.flatnonzero(~blank).astype(np.int64) + first_line
    else:
        nonblank = np.arange(first_line, first_line + data.count(b"\n"), dtype=np.int64)
    invalid: list[int] = []
    reasons: list[tuple[int, str]] = []

    def on_invalid(row: Any) -> str:
        text = row.text or ""
        k = (row.number or 1) - 1
        invalid.append(k)
        if text.strip() and not (skip_line and skip_line(text)):
            line = int(nonblank[k]) if 0 <= k < len(nonblank) else first_line + k
            reasons.append(
                (line, f"{row.actual_columns} fields where {row.expected_columns} were expected: {text[:80]!r}")
            )
        return "skip"

    if not _is_utf8(data):
        # pyarrow decodes a row it cannot split as UTF-8 before the handler sees it, and loses the
        # error in its callback: text that is not UTF-8 goes line by line, where each bad line is named
        t, lines = _csv_lines(data, first_line, names, report, delimiter, quoting, skip_line)
        return t.select(keep), lines
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=names, use_threads=False, block_size=max(1 << 20, len(data) + 1)
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"' if quoting else False,
                double_quote=quoting,
                ignore_empty_lines=True,
                newlines_in_values=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in keep},
                include_columns=keep,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        table = None
    if table is None or table.num_rows + len(invalid) != len(nonblank):
        # a quote swallowed line ends (or the bytes are not text): re-read line by line
        t, lines = _csv_lines(data, first_line, names, report, delimiter, quoting, skip_line)
        return t.select(keep), lines
    for line, why in reasons:
        report.problem(f"line {line}", why)
    if invalid:
        mask = np.ones(len(nonblank), dtype=bool)
        mask[np.asarray(invalid, dtype=np.int64)] = False
        nonblank = nonblank[mask]
    return table, nonblank


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _csv_lines(
    data: bytes,
    first_line: int,
    names: list[str],
    report: ReadReport,
    delimiter: str,
    quoting: bool,
    skip_line: Callable[[str], bool] | None,
) -> tuple[pa.Table, np.ndarray]:
    cols: list[list[str]] = [[] for _ in names]
    lines: list[int] = []
    for i, raw in enumerate(data.split(b"\n")[:-1]):
        line = first_line + i
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            report.problem(f"line {line}", f"not UTF-8 text ({e.reason} at byte {e.start})")
            continue
        if not text.strip() or (skip_line and skip_line(text)):
            continue
        if quoting:
            try:
                fields = next(csv.reader([text], delimiter=delimiter, strict=True))
            except csv.Error as e:
                report.problem(f"line {line}", f"cannot split into fields: {e}")
                continue
        else:
            fields = text.rstrip("\r").split(delimiter)
        if len(fields) != len(names):
            report.problem(f"line {line}", f"{len(fields)} fields where {len(names)} were expected: {text[:80]!r}")
            continue
        for c, v in zip(cols, fields, strict=True):
            c.append(v)
        lines.append(line)
    table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, cols, strict=True)})
    return table, np.asarray(lines, dtype=np.int64)


def explain_empty(report: ReadReport, data_lines: int, what: str = "data line") -> None:
    """A reader that stored no flow says why, as a note in its problems (not counted as bad)."""
    if report.records:
        return
    if data_lines == 0:
        why = f"no flows: the file holds no {what}s" + (" (a header only, or nothing)" if "line" in what else "")
    elif report.bad >= data_lines:
        why = f"no flows: all {data_lines:,} {what}(s) were bad (see the problems listed for it)"
    else:
        why = f"no flows: none of its {data_lines:,} {what}(s) held a flow"
    report.count("no flows")
    report.problems.append(Problem(report.source, "whole file", why))

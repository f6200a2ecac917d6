"""Reading database text as data: plain or gzip, bounded lines, bytes that are not UTF-8 kept; and
writing the caches built from it atomically."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import Problem

__all__ = ["open_bytes", "numbered_lines", "as_text", "add_problem", "atomic_file", "MAX_LINE", "MAX_PROBLEMS"]

MAX_LINE = 4 << 20  # longer lines are reported and skipped, never held whole
MAX_PROBLEMS = 1000


def open_bytes(path: str | Path) -> IO[bytes]:
    """The file's bytes, gunzipped if it starts with the gzip magic."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        # A C-level buffer over the decompressor (readline() on GzipFile itself is Python code),
        # refilled with read1() so that a truncated file still yields everything before the cut.
        return io.BufferedReader(_Read1(gzip.GzipFile(path, "rb")), 1 << 20)
    return open(path, "rb", buffering=1 << 20)


class _Read1(io.RawIOBase):
    """A raw stream over ``read1`` of a buffered one: each refill returns what is decoded so far."""

    def __init__(self, inner: gzip.GzipFile):
        self.inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.inner.read1(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def as_text(b: bytes) -> str:
    """UTF-8, or Latin-1 when the bytes are not UTF-8 (older registry data), so every byte is kept."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def add_problem(problems: list[Problem], src: str, where: str, reason: str) -> None:
    if len(problems) < MAX_PROBLEMS:
        problems.append(Problem(src, where, reason))


def numbered_lines(path: str | Path, problems: list[Problem], max_line: int = MAX_LINE) -> Iterator[tuple[int, bytes]]:
    """``(line number, line without its end)``; an overlong line is reported and skipped in bounded memory."""
    with open_bytes(path) as fh:
        n = 0
        while True:
            try:
                line = fh.readline(max_line + 1)
            except (OSError, EOFError) as e:
                add_problem(
                    problems, str(path), f"line {n + 1}", f"file is truncated or corrupt ({e}); reading stopped"
                )
                return
            if not line:
                return
            n += 1
            if len(line) > max_line and not line.endswith(b"\n"):
                add_problem(problems, str(path), f"line {n}", f"line longer than {max_line} bytes skipped")
                try:
                    while line and not line.endswith(b"\n"):
                        line = fh.readline(max_line + 1)
                except (OSError, EOFError):
                    return
                continue
            yield n, line.rstrip(b"\r\n")


@contextlib.contextmanager
def atomic_file(path: Path, suffix: str = "") -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` whole or not at all: written under a temporary name in
    the same directory, renamed when the block ends, removed if it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

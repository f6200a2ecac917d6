"""Flow files into the store: pcaps of NetFlow/IPFIX exports, nfdump files, Zeek conn.log, CSV, Parquet.

Each input file goes into the store under its own key (its format and the hash of its bytes), in
one atomic write: ingesting a file twice is a no-op, and a file that fails half way leaves
nothing behind. Bad records inside a file are skipped and reported; the rest is kept.

    reports = ingest_paths(["exports/", "conn.log"], Store("store"))
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from ..errors import FlowpivotError, InputError
from ..store import Store
from .argus import read_binetflow
from .base import ReadReport, file_key
from .nfdump import NFDUMP_CSV_HEADER, NFDUMP_CSV_ROW, NFDUMP_MAGIC, read_nfdump, read_nfdump_csv
from .tabular import read_csv, read_parquet
from .textio import gunzip_head
from .variants import detect_variant
from .zeek import read_zeek

__all__ = [
    "FORMATS",
    "IngestReport",
    "IngestProgress",
    "detect_format",
    "expand_paths",
    "ingest_paths",
    "read_binetflow",
    "read_csv",
    "read_nfdump",
    "read_nfdump_csv",
    "read_parquet",
    "read_pcap_file",
    "read_zeek",
]

log = logging.getLogger(__name__)

#: Format names accepted by ``--format`` (``auto`` detects from the content).
FORMATS = ("pcap", "nfdump", "nfdump-csv", "zeek", "csv", "parquet", "binetflow")

PCAP_MAGICS = (b"\xa1\xb2\xc3\xd4", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1")
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


class IngestProgress(Protocol):
    """What ``ingest_paths`` tells a progress display: a file starts, bytes of it were read."""

    def start_file(self, path: Path, size: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...


@dataclass
class IngestReport(ReadReport):
    """A :class:`ReadReport` plus what happened to the file as a whole.

    ``status`` is ``ingested``, ``already ingested``, ``not a flow file`` (a file met while
    walking a directory that is not in a known format), ``unreadable`` (nothing in it could be
    read: ``error`` says why) or ``failed`` (an error while writing: nothing was stored).
    """

    status: str = ""
    key: str = ""
    error: str = ""
    size: int = 0

    @property
    def ok(self) -> bool:
        return self.status in ("ingested", "already ingested", "not a flow file")


# ----- finding inputs and their formats ---------------------------------------------------------


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, bool]]:
    """Inputs in order, directories expanded recursively (sorted): (file, named explicitly).

    Inside a directory, hidden files and nfcapd's file in progress (``nfcapd.current.*``) are left
    out: they are not finished, and their hash would change as they grow.
    """
    out: list[tuple[Path, bool]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                rel = f.relative_to(path).parts
                if (
                    f.is_file()
                    and not any(part.startswith(".") for part in rel)
                    and not f.name.startswith("nfcapd.current")
                ):
                    out.append((f, False))
        else:
            out.append((path, True))
    return out


def detect_format(path: Path) -> str | None:
    """The format of a file from its first bytes, or None when it is not a flow file flowpivot reads."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if head[:2] == b"\x1f\x8b":  # gzip: look at what it holds (Zeek and CSV logs are often gzipped)
        head = gunzip_head(path, 65536)  # as far as it can be read: a gzip cut short is read up to the cut
        fmt = _detect_text(head)
        return fmt
    if head[:4] in PCAP_MAGICS or head[:4] == PCAPNG_MAGIC:
        return "pcap"
    if head[:2] == NFDUMP_MAGIC and head[2:4] in (b"\x01\x00", b"\x02\x00"):
        return "nfdump"
    if head[:4] == b"PAR1":
        return "parquet"
    return _detect_text(head)


def _detect_text(head: bytes) -> str | None:
    if variant := detect_variant(head):  # Zeek with stray whitespace or scope_sep, Argus CSV
        return variant
    text = head.lstrip(b"\xef\xbb\xbf")
    first = text.split(b"\n", 1)[0].strip()
    if text.startswith(b"#separator") or text.startswith(b"#fields"):
        # only conn.log holds connections; dns.log, ssl.log, ... share the id.* columns
        header = text.split(b"\n#types", 1)[0]
        if b"\n#path\tconn\n" in header or (b"#path" not in header and b"conn_state" in header):
            return "zeek"
        return None
    if first.startswith(b"{") and b'"id.orig_h"' in first and b'"conn_state"' in first:
        return "zeek"
    try:
        cols = [c.strip().strip('"') for c in first.decode("utf-8").split(",")]
    except UnicodeDecodeError:
        return None
    if tuple(cols[: len(NFDUMP_CSV_HEADER)]) == NFDUMP_CSV_HEADER or NFDUMP_CSV_ROW.match(first):
        return "nfdump-csv"
    names = set(cols)
    if {"start", "end"} <= names and ({"src_addr", "dst_addr"} <= names or {"src_addr_v4", "dst_addr_v4"} <= names):
        return "csv"
    return None


# ----- pcap (the decoder is another stage's; imported only when a pcap is met) --------------------


def read_pcap_file(path: Path, report: ReadReport, decoder: Any = None) -> Iterator[pa.RecordBatch]:
    """A pcap/pcapng of NetFlow/IPFIX export datagrams -> store batches (through flowpivot.decode)."""
    from .pcap import read_pcap  # type: ignore[import-not-found]

    if decoder is None:
        from ..decode import FlowDecoder  # type: ignore[attr-defined]

        decoder = FlowDecoder()
    return read_pcap(Path(path), report, decoder)


READERS: dict[str, Callable[[Path, ReadReport], Iterator[pa.RecordBatch]]] = {
    "nfdump": read_nfdump,
    "nfdump-csv": read_nfdump_csv,
    "zeek": read_zeek,
    "csv": read_csv,
    "parquet": read_parquet,
    "binetflow": read_binetflow,
}


# ----- the run ------------------------------------------------------------------------------------


def _progress_hooks(progress: Any) -> tuple[Callable[[Path, int], None], Callable[[int], None]]:
    if progress is None:
        return (lambda p, s: None), (lambda n: None)
    if hasattr(progress, "start_file") and hasattr(progress, "advance"):
        return progress.start_file, progress.advance
    if callable(progress):
        return (lambda p, s: None), progress
    raise TypeError("progress must be a callable(nbytes) or have start_file(path, size) and advance(nbytes)")


def ingest_paths(
    paths: Iterable[str | os.PathLike[str]],
    store: Store,
    fmt: str = "auto",
    progress: IngestProgress | Callable[[int], None] | None = None,
) -> list[IngestReport]:
    """Ingest files and directories into ``store``; one report per file, in order. Never raises for bad input.

    ``fmt`` is ``auto`` (detect each file from its content) or one of :data:`FORMATS`.
    ``progress`` is a callable given the number of bytes read, or an :class:`IngestProgress`.
    All pcaps of one run share one decoder, in argument order, so a file holding only templates
    lets the next file's data be decoded.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use auto or one of {', '.join(FORMATS)}")
    start_file, advance = _progress_hooks(progress)
    inputs = expand_paths(paths)
    plan: list[tuple[Path, bool, str | None, IngestReport]] = []
    for path, explicit in inputs:
        rep = IngestReport(str(path), progress=advance)
        f: str | None = None
        try:
            rep.size = path.stat().st_size
            f = fmt if fmt != "auto" else detect_format(path)
        except OSError as e:
            rep.status, rep.error = "unreadable", f"cannot open: {e.strerror or e}"
        else:
            if f is None:
                if explicit:
                    rep.status = "unreadable"
                    rep.error = f"format not recognised; name it with --format ({', '.join(FORMATS)})"
                else:
                    rep.status = "not a flow file"
        rep.fmt = f or ""
        plan.append((path, explicit, f, rep))

    decoder: Any = None
    last_pcap = max((i for i, (_, _, f, r) in enumerate(plan) if f == "pcap" and not r.status), default=-1)
    reports: list[IngestReport] = []
    for i, (path, _explicit, f, rep) in enumerate(plan):
        reports.append(rep)
        start_file(path, rep.size)
        if rep.status:
            advance(rep.size)
            continue
        assert f is not None
        try:
            rep.key = file_key(path, f)
        except OSError as e:
            rep.status, rep.error = "unreadable", f"cannot read: {e.strerror or e}"
            advance(rep.size)
            continue
        if f == "pcap" and decoder is None:
            try:
                from ..decode import FlowDecoder  # type: ignore[attr-defined]

                decoder = FlowDecoder()
            except ImportError as e:
                rep.status, rep.error = "unreadable", f"pcap decoding is not available: {e}"
                advance(rep.size)
                continue
        if store.has_source(rep.key):
            rep.status = "already ingested"
            if f == "pcap" and i < last_pcap:
                # later pcaps may need the templates this one carries: decode it, store nothing
                late = _drain(read_pcap_file(path, IngestReport(str(path)), decoder))
                if late:
                    rep.problem(
                        "whole file",
                        f"{late} flow(s) of files read before it were decodable only with its templates; they were "
                        "not stored because this file is already in the store (give template files first)",
                    )
            advance(rep.size)
            continue
        reader = functools.partial(read_pcap_file, decoder=decoder) if f == "pcap" else READERS[f]
        _ingest_one(path, f, rep, reader, store)
    if decoder is not None:
        waiting = sum(getattr(st, "pending", 0) for st in getattr(decoder, "stats", {}).values())
        pcaps = [r for r in reports if r.fmt == "pcap" and r.status == "ingested"]
        if waiting and pcaps:
            pcaps[-1].problem(
                "end of run",
                f"{waiting} data set(s) still wait for a template that no file of this run carried; "
                "ingest the template capture together with (before) the data capture",
            )
    return reports


def _drain(batches: Iterable[pa.RecordBatch]) -> int:
    """Read batches for their side effect on the decoder; returns how many flows came out."""
    n = 0
    try:
        for b in batches:
            n += b.num_rows
    except FlowpivotError:
        pass
    return n


def _ingest_one(
    path: Path,
    fmt: str,
    rep: IngestReport,
    reader: Callable[[Path, ReadReport], Iterator[pa.RecordBatch]],
    store: Store,
) -> None:
    info = {"path": str(path.resolve()), "format": fmt, "size": rep.size}
    outer = rep.progress
    seen = 0

    def counted(n: int) -> None:
        nonlocal seen
        n = max(0, min(n, rep.size - seen))
        seen += n
        if outer is not None and n:
            outer(n)

    rep.progress = counted
    writer = store.writer(rep.key, info)
    try:
        for batch in reader(path, rep):
            writer.write(batch)
        writer.info.update(records=rep.records, bad=rep.bad, problems=[p.as_dict() for p in rep.problems[:20]])
        writer.commit()
        rep.status = "ingested"
    except InputError as e:
        writer.abort()
        rep.status, rep.error = "unreadable", str(e)
        rep.records = 0
    except Exception as e:  # anything else: nothing stored, the run goes on with the next file
        writer.abort()
        log.debug("ingest of %s failed", path, exc_info=True)
        rep.status, rep.error = "failed", f"{type(e).__name__}: {e}"
        rep.records = 0
    except BaseException:
        writer.abort()
        raise
    finally:
        rep.progress = outer
        if outer is not None and rep.size > seen:
            outer(rep.size - seen)

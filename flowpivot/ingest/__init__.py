"""Flow files into the store: pcaps of NetFlow/IPFIX exports, nfdump files, Zeek conn.log, CSV, Parquet.

Each input file goes into the store under its own key (its format and the hash of its content,
gunzipped), in one atomic write: ingesting a file twice (or its gzip) is a no-op, a file that
grew adds only its new records, an input whose records the store already holds is refused, and a
file that fails half way leaves nothing behind. Every record passes the plausible time range
(:mod:`flowpivot.timerange`) on its way. Bad records inside a file are skipped and reported; the
rest is kept. An input that gives no flow says why.

    reports = ingest_paths(["exports/", "conn.log"], Store("store"))
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from ..errors import FlowpivotError, InputError, Problem
from ..store import Store
from ..timerange import TimeRange, check_times
from .argus import read_binetflow
from .base import ReadReport
from .dedup import REFUSE_SHARE, SAMPLE, DaySample, already_stored, write_sample
from .explain import decoder_snapshot, why_empty
from .nfdump import NFDUMP_CSV_HEADER, NFDUMP_CSV_ROW, NFDUMP_MAGIC, read_nfdump, read_nfdump_csv
from .once import content_digest, content_head, earlier_versions, remember_path
from .resume import RESUMABLE, Resume, decode_prefix, fix_places, plan_resume, tail_file
from .tabular import read_csv, read_parquet
from .textio import gunzip_head
from .variants import detect_variant
from .zeek import read_zeek

__all__ = [
    "FORMATS",
    "IngestReport",
    "IngestProgress",
    "TimeRange",
    "detect_format",
    "nothing_usable",
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
    walking a directory that is not in a known format, or a capture in it without a flow
    export), ``unreadable`` (nothing usable in it: ``error`` says why), ``already stored`` (its
    records are in the store already: refused, see :mod:`flowpivot.ingest.dedup`) or ``failed``
    (an error while writing: nothing was stored). Only ``ingested`` inputs are remembered as done.
    ``notes`` say what is worth knowing and is no bad record: why an input gave 0 flows, that a
    file grew and only its new part was read, that some of its records were in the store.
    """

    status: str = ""
    key: str = ""
    error: str = ""
    size: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("ingested", "already ingested", "not a flow file")


def nothing_usable(reports: list[IngestReport]) -> bool:
    """True when no input gave a flow and none was in the store already: the run did nothing."""
    return bool(reports) and not any(r.records or r.status == "already ingested" for r in reports)


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


def read_pcap_file(
    path: Path, report: ReadReport, decoder: Any = None, time_range: TimeRange | None = None
) -> Iterator[pa.RecordBatch]:
    """A pcap/pcapng of NetFlow/IPFIX/sFlow export datagrams -> store batches (through
    flowpivot.decode). ``time_range``: the plausible range, checked by the decoder per record
    (so a problem names its packet and record); None: the default range."""
    from .pcap import read_pcap  # type: ignore[import-not-found]

    if decoder is None:
        from ..decode import FlowDecoder  # type: ignore[attr-defined]

        decoder = FlowDecoder()
    return read_pcap(Path(path), report, decoder, time_range=time_range or TimeRange())


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
    time_range: TimeRange | None = None,
    allow_duplicates: bool = False,
) -> list[IngestReport]:
    """Ingest files and directories into ``store``; one report per file, in order. Never raises for bad input.

    ``fmt`` is ``auto`` (detect each file from its content) or one of :data:`FORMATS`.
    ``progress`` is a callable given the number of bytes read, or an :class:`IngestProgress`.
    All pcaps of one run share one decoder, in argument order, so a file holding only templates
    lets the next file's data be decoded. ``time_range`` is the plausible range of flow times
    (default: 1970 to the file's modification time plus a day); records outside it are counted
    and reported, never stored. ``allow_duplicates`` stores an input even when its sampled
    records are in the store already.
    """
    tr = time_range or TimeRange()
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
            head = content_head(path)
            prev = earlier_versions(store, path.resolve(), f, head)
            dg = content_digest(path, f, tuple(int(r.get("length", 0)) for r in prev))
        except OSError as e:
            rep.status, rep.error = "unreadable", f"cannot read: {e.strerror or e}"
            advance(rep.size)
            continue
        rep.key = dg.key
        if f == "pcap" and decoder is None:
            try:
                from ..decode import FlowDecoder  # type: ignore[attr-defined]

                decoder = FlowDecoder()
            except ImportError as e:
                rep.status, rep.error = "unreadable", f"pcap decoding is not available: {e}"
                advance(rep.size)
                continue
        if store.has_source(rep.key) or (dg.legacy_key and store.has_source(dg.legacy_key)):
            rep.status = "already ingested"
            if f == "pcap" and i < last_pcap:
                # later pcaps may need the templates this one carries: decode it, store nothing
                held = _waiting(decoder)  # data sets of files read before it, waiting for a template
                _drain(read_pcap_file(path, IngestReport(str(path)), decoder))
                released = held - _waiting(decoder)
                # only data of files stored in this run is lost; an earlier file already in the store
                # was decoded for its templates too, and its flows are stored already
                fresh = any(r.fmt == "pcap" and r.status == "ingested" for r in reports[:-1])
                if released > 0 and fresh:
                    rep.problem(
                        "whole file",
                        f"{released} data set(s) of files read before it were decodable only with its templates; "
                        "they were not stored because this file is already in the store (give template files first)",
                    )
            advance(rep.size)
            continue
        reader = functools.partial(read_pcap_file, decoder=decoder, time_range=tr) if f == "pcap" else READERS[f]
        job = _Job(path, f, rep, reader, store, tr, allow_duplicates, _explicit, decoder, dg, head)
        job.resume = _growth(path, f, dg, [r for r in prev if r.get("key") != dg.key], rep)
        _ingest_one(job)
    if decoder is not None:
        waiting = _waiting(decoder)
        pcaps = [r for r in reports if r.fmt == "pcap" and r.status in ("ingested", "unreadable", "not a flow file")]
        if waiting and pcaps:
            pcaps[-1].problem(
                "end of run",
                f"{waiting} data set(s) still wait for a template that no file of this run carried; "
                "ingest the template capture together with (before) the data capture",
            )
    return reports


def _tail_named(text: str, store: Store, path: Path) -> str:
    """A message about the file of a grown file's new part, with the grown file's name."""
    return re.sub(re.escape(str(store.root / ".grown")) + r"/\.tmp-grown-[0-9a-f]+[.\w]*", str(path), text)


def _growth(path: Path, fmt: str, dg: Any, prev: list[dict[str, Any]], rep: IngestReport) -> Resume | None:
    """Whether ``path`` grew from a version in the store (then how to read only the new part)."""
    if not prev:
        return None
    grew = next(
        (
            r
            for r in prev
            if int(r.get("length", 0)) < dg.length and dg.prefixes.get(int(r["length"]), ("",))[0] == r.get("sha256")
        ),
        None,
    )
    if grew is None:
        same = [r for r in prev if r.get("path") == str(path.resolve())]
        if not same:
            return None  # only files that began alike: nothing to say
        rep.notes.append(
            f"changed since it was ingested (not by growing: it does not start with the {int(same[0]['length']):,} "
            "bytes ingested before): read as a new input"
        )
        return None
    resume = plan_resume(path, fmt, dg, grew) if fmt in RESUMABLE else None
    if resume is None:
        rep.notes.append(
            f"grew from {int(grew['length']):,} to {dg.length:,} bytes since it was ingested, but a {fmt} file cannot "
            "be read from the middle: read whole"
        )
        return None
    rep.notes.append(
        f"grew from {int(grew['length']):,} to {dg.length:,} bytes since it was ingested"
        + ("" if grew.get("path") == str(path.resolve()) else f" (as {grew.get('path')})")
        + f": only what follows byte {resume.at:,} was read"
    )
    return resume


def _waiting(decoder: Any) -> int:
    """Data sets the decoder holds until their template arrives."""
    return sum(getattr(st, "pending", 0) for st in getattr(decoder, "stats", {}).values())


def _drain(batches: Iterable[pa.RecordBatch]) -> int:
    """Read batches for their side effect on the decoder; returns how many flows came out."""
    n = 0
    try:
        for b in batches:
            n += b.num_rows
    except FlowpivotError:
        pass
    return n


@dataclass
class _Job:
    path: Path
    fmt: str
    rep: IngestReport
    reader: Callable[[Path, ReadReport], Iterator[pa.RecordBatch]]
    store: Store
    time_range: TimeRange
    allow_duplicates: bool
    explicit: bool
    decoder: Any
    digest: Any
    head: bytes = b""
    resume: Resume | None = None


def _ingest_one(job: _Job) -> None:
    path, fmt, rep, store = job.path, job.fmt, job.rep, job.store
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
    try:
        mtime_ms: int | None = int(path.stat().st_mtime * 1000)
    except OSError:
        mtime_ms = None
    lo, hi = job.time_range.bounds(mtime_ms)
    span = (
        "its end fixed"
        if job.time_range.latest_ms is not None
        else (f"the file's modification time plus {job.time_range.slack_ms / 3_600_000:g} h")
    )
    before = None
    sample = DaySample()
    writer = store.writer(rep.key, info)
    resume = job.resume
    tail = contextlib.nullcontext(path) if resume is None else tail_file(path, resume, store.root / ".grown")
    first_problem = len(rep.problems)
    place = "record" if resume is None else "new record"
    try:
        if resume is not None:
            info.update(grown_from=resume.from_key, resumed_at=resume.at)
            writer.info.update(info)
            if fmt == "pcap":
                decode_prefix(path, resume, job.decoder)
        if fmt == "pcap":
            before = decoder_snapshot(job.decoder)  # what this file (or its new part) adds to it
        ordinal = 0
        with tail as read_from:
            for batch in job.reader(read_from, rep):
                kept, tc = check_times(batch, lo, hi, where=span)
                for row, why in tc.rejected:
                    rep.problem(f"{place} {ordinal + row + 1}", why)
                if tc.rejected:
                    rep.count("out_of_time_range", len(tc.rejected))
                    rep.records -= len(tc.rejected)
                if tc.repaired:
                    rep.count("end_before_start_repaired", tc.repaired)
                ordinal += batch.num_rows
                sample.add(kept)
                writer.write(kept)
        if resume is not None:
            fix_places(rep, first_problem, fmt, resume)
            if read_from != path:
                rep.problems[first_problem:] = [
                    Problem(p.source, p.where, p.reason.replace(str(read_from), str(path)))
                    for p in rep.problems[first_problem:]
                ]
        if rep.records == 0:
            why, usable = why_empty(rep, fmt, before, decoder_snapshot(job.decoder) if before is not None else None)
            if resume is not None and fmt != "pcap" and not rep.bad:
                why = "the part it gained holds no complete record"
            if not usable:
                writer.abort()
                nothing = fmt == "pcap" and not rep.bad and not job.explicit
                rep.status = "not a flow file" if nothing else "unreadable"
                if nothing:
                    rep.notes.append(f"0 flows: {why}")
                else:
                    rep.error = f"no usable flow in it: {why}"
                return
            rep.notes.append(f"0 flows: {why}")
        if sample.days:
            found, total, days = already_stored(store, sample)
            if found > REFUSE_SHARE * total and not job.allow_duplicates:
                writer.abort()
                rep.status = "already stored"
                rep.error = (
                    f"{found} of its {total} sampled records (1 in {SAMPLE}, by fingerprint) are in the store "
                    f"already (day {', '.join(days[:5])}{', ...' if len(days) > 5 else ''}): it holds flows the "
                    "store has, such as the store's own `flows --output csv` export; nothing was stored. "
                    "Give --allow-duplicates to store them anyway"
                )
                rep.records = 0
                return
            if found:
                rep.count("sampled_records_already_stored", found)
                rep.notes.append(
                    f"{found} of its {total} sampled records (1 in {SAMPLE}) were in the store already; stored anyway "
                    + ("(--allow-duplicates)" if found > REFUSE_SHARE * total else "(under the refusal threshold)")
                )
        writer.info.update(
            records=rep.records, bad=rep.bad, counters=dict(rep.counters), notes=list(rep.notes),
            problems=[p.as_dict() for p in rep.problems[:20]],
            content_sha256=job.digest.sha256, content_length=job.digest.length, mtime_ms=mtime_ms,
            time_range=[lo, hi],
        )  # fmt: skip
        writer.commit()
        rep.status = "ingested"
        write_sample(store, rep.key, sample)
        remember_path(store, path.resolve(), rep.key, job.digest, job.head)
    except InputError as e:
        writer.abort()
        rep.status, rep.error = "unreadable", _tail_named(str(e), store, path)
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


# `flowpivot.ingest(...)` is this package called as ingest_paths (flowpivot/_callable.py)
from .._callable import make_callable as _make_callable  # noqa: E402

_make_callable(__name__, "ingest_paths")

"""Reports from a hunt result: HTML, Markdown, STIX 2.1, MISP and abuse letters.

    write_reports(result, html=..., md=..., stix=..., misp=..., abuse_dir=..., tlp="amber", actor=None)

``actor`` is a name (``"FIN7"``: everything is attributed to it), ``"NAME=SET[,SET...]"`` (only the
seeds of those seed sets and what rests on them, see :mod:`.attribution`), or a list of them.

Each format also has its own function that returns the document instead of writing it. ``now`` (the
clock) and ``namespace`` (the uuid5 namespace behind every derived id) are injectable so that the same
result renders byte for byte the same; by default ``now`` is the current UTC time.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import stix2
from pymisp import MISPEvent

from .abuse import render_abuse_letters_for
from .attribution import Actor, Attribution, attribute, parse_actors
from .html import VENDORED, render_html_report
from .markdown import render_markdown_report
from .misp import build_event
from .model import FORMAT, NAMESPACE, Report
from .reader import load_result, read_result, report_id
from .stix import TLP2_IDS, build_bundle

__all__ = [
    "FORMAT",
    "Actor",
    "ActorSpec",
    "Attribution",
    "TLP_LEVELS",
    "DEFAULT_TLP",
    "VENDORED",
    "Report",
    "load_result",
    "read_result",
    "write_reports",
    "render_html",
    "render_markdown",
    "build_stix_bundle",
    "build_misp_event",
    "render_abuse_letters",
    "stix_json",
    "misp_json",
    "parse_actors",
]

TLP_LEVELS = tuple(TLP2_IDS)  # clear, green, amber, amber+strict, red
# Amber: a hunt names hosting customers and, through the victims, your own network; it should reach
# those who must act on it (your organisation, its providers) before anyone else. See docs/report.md.
DEFAULT_TLP = "amber"


def _tlp(tlp: str) -> str:
    t = (tlp or "").strip().lower().removeprefix("tlp:")
    if t == "white":
        t = "clear"  # TLP 1.0's WHITE is TLP 2.0's CLEAR
    if t not in TLP2_IDS:
        raise ValueError(f"unknown TLP level {tlp!r}; use one of {', '.join(TLP_LEVELS)}")
    return t


#: ``"FIN7"``, ``"FIN7=set1,set2"``, an :class:`Actor`, or a list of them.
ActorSpec = str | Actor | Sequence[str | Actor] | None


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _report(result: Mapping[str, Any] | Report) -> Report:
    return result if isinstance(result, Report) else read_result(dict(result))


@dataclass(frozen=True)
class _Rendering:
    """One rendering of one result: the checked options every format takes, and its reference."""

    report: Report
    tlp: str
    actors: tuple[Attribution, ...]
    now: datetime
    namespace: uuid.UUID

    @cached_property
    def ref(self) -> str:
        # report_id serialises the whole result: done once per rendering, not once per format
        return "FP-" + report_id(self.report.raw, self.now, self.namespace).hex[:10].upper()

    def html(self) -> str:
        return render_html_report(self.report, tlp=self.tlp, actors=self.actors, now=self.now, ref=self.ref)

    def markdown(self) -> str:
        return render_markdown_report(self.report, tlp=self.tlp, actors=self.actors, now=self.now, ref=self.ref)

    def stix(self, producer: str = "flowpivot") -> stix2.Bundle:
        return build_bundle(
            self.report, tlp=self.tlp, actors=self.actors, now=self.now, producer=producer, namespace=self.namespace
        )

    def misp(self, pap: str | None = None) -> MISPEvent:
        return build_event(
            self.report,
            tlp=self.tlp,
            actors=self.actors,
            now=self.now,
            ref=self.ref,
            pap=pap,
            namespace=self.namespace,
        )

    def abuse(self, reporter: str | None = None) -> dict[str, str]:
        return render_abuse_letters_for(
            self.report, tlp=self.tlp, actors=self.actors, now=self.now, ref=self.ref, reporter=reporter
        )


def _rendering(
    result: Mapping[str, Any] | Report, tlp: str, actor: ActorSpec, now: datetime | None, namespace: uuid.UUID
) -> _Rendering:
    report = _report(result)
    tlp = _tlp(tlp)
    return _Rendering(report, tlp, tuple(attribute(report, parse_actors(actor))), _now(now), namespace)


def render_html(
    result: Mapping[str, Any] | Report,
    *,
    tlp: str = DEFAULT_TLP,
    actor: ActorSpec = None,
    now: datetime | None = None,
    namespace: uuid.UUID = NAMESPACE,
) -> str:
    """The self-contained HTML report (str)."""
    return _rendering(result, tlp, actor, now, namespace).html()


def render_markdown(
    result: Mapping[str, Any] | Report,
    *,
    tlp: str = DEFAULT_TLP,
    actor: ActorSpec = None,
    now: datetime | None = None,
    namespace: uuid.UUID = NAMESPACE,
) -> str:
    """The Markdown summary (CommonMark + GitHub tables) for tickets and write-ups."""
    return _rendering(result, tlp, actor, now, namespace).markdown()


def build_stix_bundle(
    result: Mapping[str, Any] | Report,
    *,
    tlp: str = DEFAULT_TLP,
    actor: ActorSpec = None,
    now: datetime | None = None,
    producer: str = "flowpivot",
    namespace: uuid.UUID = NAMESPACE,
) -> stix2.Bundle:
    """A STIX 2.1 bundle (stix2.Bundle); ``bundle.serialize(pretty=True)`` gives the JSON."""
    return _rendering(result, tlp, actor, now, namespace).stix(producer)


def build_misp_event(
    result: Mapping[str, Any] | Report,
    *,
    tlp: str = DEFAULT_TLP,
    actor: ActorSpec = None,
    now: datetime | None = None,
    pap: str | None = None,
    namespace: uuid.UUID = NAMESPACE,
) -> MISPEvent:
    """A MISP event (pymisp.MISPEvent); ``event.to_json()`` gives the JSON."""
    return _rendering(result, tlp, actor, now, namespace).misp(pap)


def render_abuse_letters(
    result: Mapping[str, Any] | Report,
    *,
    tlp: str = DEFAULT_TLP,
    actor: ActorSpec = None,
    now: datetime | None = None,
    reporter: str | None = None,
    namespace: uuid.UUID = NAMESPACE,
) -> dict[str, str]:
    """One letter per provider, keyed by ``AS<number>`` (also the file stem)."""
    return _rendering(result, tlp, actor, now, namespace).abuse(reporter)


def _write_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def stix_json(bundle: stix2.Bundle) -> str:
    """The bundle as indented JSON. (stix2's own ``serialize(pretty=True)`` orders keys slowly: seconds
    for a few hundred objects; its compact form keeps the library's property order.)"""
    return json.dumps(json.loads(bundle.serialize()), indent=2, ensure_ascii=False) + "\n"


def misp_json(event: MISPEvent) -> str:
    """The event as MISP's import format: ``{"Event": {...}}``."""
    return json.dumps({"Event": json.loads(event.to_json())}, indent=2, ensure_ascii=False) + "\n"


def write_reports(
    result: Mapping[str, Any] | Report,
    *,
    html: str | Path | None = None,
    md: str | Path | None = None,
    stix: str | Path | None = None,
    misp: str | Path | None = None,
    abuse_dir: str | Path | None = None,
    tlp: str = DEFAULT_TLP,
    actor: ActorSpec = None,
    now: datetime | None = None,
    reporter: str | None = None,
    namespace: uuid.UUID = NAMESPACE,
) -> dict[str, Path]:
    """Write the asked-for reports; returns {"html"|"md"|"stix"|"misp"|"abuse:AS<n>": path}. Files are
    written atomically (temporary file, then rename)."""
    job = _rendering(result, tlp, actor, now, namespace)
    out: dict[str, Path] = {}
    if html:
        out["html"] = _write_atomic(Path(html), job.html())
    if md:
        out["md"] = _write_atomic(Path(md), job.markdown())
    if stix:
        out["stix"] = _write_atomic(Path(stix), stix_json(job.stix()))
    if misp:
        out["misp"] = _write_atomic(Path(misp), misp_json(job.misp()))
    if abuse_dir:
        d = Path(abuse_dir)
        for key, text in job.abuse(reporter).items():
            out[f"abuse:{key}"] = _write_atomic(d / f"abuse-{key}.txt", text)
    return out

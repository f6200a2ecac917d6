"""Nothing silent: why an input gave no flow, in the words of what it held.

For a capture the decoder's counters before and after the file say what it saw: how many export
datagrams, of which versions, how many of versions flowpivot does not decode (sFlow, NetFlow
v1/v7/v8), malformed, templates learned, data still waiting for a template. For the other formats
the reader's report says it: every record bad (and why, by counter), or no record at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import ReadReport

__all__ = ["DecoderSnapshot", "decoder_snapshot", "why_empty"]

_VERSION_NAMES = {5: "NetFlow v5", 9: "NetFlow v9", 10: "IPFIX"}
_STATS = ("datagrams", "flows", "malformed", "unsupported", "pending", "pending_lost", "other_records")


@dataclass
class DecoderSnapshot:
    totals: dict[str, int] = field(default_factory=dict)
    streams: dict[Any, tuple[int, ...]] = field(default_factory=dict)


def decoder_snapshot(decoder: Any) -> DecoderSnapshot:
    """The decoder's counters summed over exporters, and the state of each export stream."""
    snap = DecoderSnapshot({k: 0 for k in _STATS})
    if decoder is None:
        return snap
    for st in getattr(decoder, "stats", {}).values():
        for k in _STATS:
            snap.totals[k] += int(getattr(st, k, 0))
    for key, stream in getattr(decoder, "_streams", {}).items():
        snap.streams[key] = (
            len(getattr(stream, "templates", {})),
            getattr(stream, "records", 0),
            getattr(stream, "datagrams", 0),
            getattr(stream, "next_seq", None) or 0,
        )
    return snap


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def why_empty(
    rep: ReadReport, fmt: str, before: DecoderSnapshot | None = None, after: DecoderSnapshot | None = None
) -> tuple[str, bool]:
    """Why ``rep`` (finished) holds 0 flows; and whether the input still gave something usable
    (a capture of templates that later data needs)."""
    if fmt == "pcap" and before is not None and after is not None:
        d = {k: after.totals.get(k, 0) - before.totals.get(k, 0) for k in _STATS}
        changed = [k for k, v in after.streams.items() if before.streams.get(k) != v]
        versions = sorted({int(k[1]) for k in changed if isinstance(k, tuple) and len(k) > 1})
        templates = sum(max(0, after.streams[k][0] - before.streams.get(k, (0,))[0]) for k in changed)
        skipped = ", ".join(f"{v:,} {k}" for k, v in sorted(rep.counters.items()) if v)
        if d["datagrams"] == 0:
            if not skipped and not rep.bad:
                return "no packet in it (a capture header only)", False
            text = "no NetFlow v5/v9 or IPFIX export datagram in it"
            if skipped:
                text += f" (packets skipped: {skipped})"
            if rep.bad:
                text += f"; {_plural(rep.bad, 'problem')}, first: {rep.problems[0].where}: {rep.problems[0].reason}"
            return text, False
        parts = [_plural(d["datagrams"], "export datagram")]
        if versions:
            parts.append("versions seen: " + ", ".join(_VERSION_NAMES.get(v, f"v{v}") for v in versions))
        if d["unsupported"]:
            parts.append(f"{d['unsupported']:,} of a version flowpivot does not decode (sFlow, NetFlow v1/v7/v8)")
        if d["malformed"]:
            parts.append(f"{d['malformed']:,} malformed")
        if templates:
            parts.append(f"{_plural(templates, 'template')} learned")
        if d["pending"] > 0:
            parts.append(f"{_plural(d['pending'], 'data set')} waiting for a template no file of the run carried yet")
        if d["pending_lost"]:
            parts.append(f"{_plural(d['pending_lost'], 'data set')} dropped: its template never came")
        if d["other_records"]:
            parts.append(f"{_plural(d['other_records'], 'record')} without addresses (NAT events, packet samples)")
        if rep.bad:
            parts.append(_plural(rep.bad, "bad record"))
        # a capture of templates is usable: later data needs it. One whose data all waits for a
        # template is not, and is not remembered as done, so that it is read again with them.
        usable = templates > 0
        lead = "templates and options only: " if usable and not d["pending"] and not rep.bad else ""
        return lead + "; ".join(parts), usable
    if rep.bad:
        why = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(rep.counters.items()) if v)
        text = f"all {_plural(rep.bad, 'record')} were bad" + (f" ({why})" if why else "")
        if rep.problems:
            text += f"; first: {rep.problems[0].where}: {rep.problems[0].reason}"
        return text, False
    return "it holds no record (only a header, or nothing)", True

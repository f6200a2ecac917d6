"""The collector's counters on disk: ``STORE/collector/stats.json`` (the whole snapshot, rewritten
atomically) and ``STORE/collector/stats.jsonl`` (one line per window: what changed in it)."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path
from typing import Any

from .rotation import iso_ms

__all__ = ["StatsFiles", "stats_path", "stats_dict", "merge_exporters", "totals_of", "loss_summary", "GAUGES"]

# Per-exporter counters that are levels, not running totals: stats.jsonl shows their value, not a difference.
GAUGES = frozenset({"pending"})


def stats_path(store_root: str | os.PathLike[str]) -> Path:
    """Where a collector writing into ``store_root`` keeps its counters."""
    return Path(store_root) / "collector" / "stats.json"


def stats_dict(s: Any) -> dict[str, Any]:
    """A decoder's per-exporter counters (a dataclass, a dict or a plain object) as a dict."""
    if dataclasses.is_dataclass(s) and not isinstance(s, type):
        return dataclasses.asdict(s)
    if isinstance(s, dict):
        return dict(s)
    return {k: v for k, v in vars(s).items() if not k.startswith("_")}


def merge_exporters(decoder_stats: Any, extra: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """The decoder's per-exporter counters with the collector's time check added: its
    ``out_of_time_range`` to the decoder's ``bad_time`` and its ``end_before_start_repaired`` to the
    decoder's (where the decoder checks times too)."""
    try:
        items = list(decoder_stats.items())
    except RuntimeError:  # changed size while the decode thread updated it; try once more
        items = list(decoder_stats.items())
    out = {str(k): stats_dict(v) for k, v in items}
    for name in out.keys() | extra.keys():
        e = out.setdefault(name, {})
        mine = extra.get(name, {})
        e["out_of_time_range"] = e.get("bad_time", 0) + mine.get("out_of_time_range", 0)
        e["end_before_start_repaired"] = e.get("end_before_start_repaired", 0) + mine.get(
            "end_before_start_repaired", 0
        )
    return dict(sorted(out.items()))


def totals_of(exporters: dict[str, dict[str, Any]]) -> dict[str, int]:
    """The sum of each per-exporter counter."""
    totals: dict[str, int] = {}
    for e in exporters.values():
        for k, v in _counts(e).items():
            totals[k] = totals.get(k, 0) + v
    return totals


def loss_summary(kernel_drops: int | None, totals: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    """Everything not stored, in one place (stats.json ``loss``)."""
    return {
        "kernel_drops": kernel_drops or 0,
        "backlog_drops": 0,  # the backlog never drops: past its bound the receive threads pause
        "lost_seq": totals.get("lost_seq", 0),
        "malformed": totals.get("malformed", 0),
        "pending_lost": totals.get("pending_lost", 0),
        "out_of_time_range": totals.get("out_of_time_range", 0),
        "flows_write_failed": counts["flows_write_failed"],
        "datagrams_decode_failed": counts["datagrams_decode_failed"],
    }


def _counts(d: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in d.items() if isinstance(v, int) and not isinstance(v, bool)}


class StatsFiles:
    """Writes the snapshot and the per-window lines; remembers the counters at the last window's end."""

    def __init__(self, directory: Path):
        self.dir = directory
        self._exporters_before: dict[str, dict[str, Any]] = {}
        self._loss_before: dict[str, int] = {}
        self._problems_before = 0

    def write(
        self,
        snap: dict[str, Any],
        window_start: int,
        now_ms: int,
        committed: list[Any],
        final: bool,
        exporters: dict[str, dict[str, Any]],
    ) -> None:
        snap["final"] = final
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".tmp-stats-{uuid.uuid4().hex[:8]}.json"
        failed: OSError | None = None
        try:
            tmp.write_text(json.dumps(snap, indent=2, default=str) + "\n")
            os.replace(tmp, self.dir / "stats.json")
        except OSError as e:  # the window's line is still written
            tmp.unlink(missing_ok=True)
            failed = e
        delta = {}
        for name, cur in exporters.items():
            before = self._exporters_before.get(name, {})
            d = {k: v if k in GAUGES else v - before.get(k, 0) for k, v in _counts(cur).items()}
            if any(d.values()):
                delta[name] = d
        self._exporters_before = exporters
        loss = _counts(snap.get("loss", {}))
        loss_delta = {k: v - self._loss_before.get(k, 0) for k, v in loss.items()}
        self._loss_before = loss
        new_problems = snap["problems"] - self._problems_before
        self._problems_before = snap["problems"]
        line = {
            "window_start": iso_ms(window_start),
            "window_end": iso_ms(now_ms),
            "keys": [c.key for c in committed],
            "flows_stored": sum(c.rows for c in committed),
            "final": final,
            "kernel_drops": snap["kernel_drops"],
            "problems": new_problems,
            "recent_problems": snap["recent_problems"][-new_problems:] if new_problems else [],
            "loss": loss_delta,
            "exporters": delta,
        }
        with open(self.dir / "stats.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
        if failed is not None:
            raise failed

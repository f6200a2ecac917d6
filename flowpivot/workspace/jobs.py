"""Hunts started from the workspace, run in the background one at a time (or a small pool).

Each hunt keeps its seeds, its parameters, the stages it went through (the hunt's own ``progress``
callback: window, pivot, sessions, victims, noise, expansion, clusters, seeds, output) and, once done, its
result in ``flowpivot-hunt/1`` form, all in ``<workspace>/hunts/<id>/``. A hunt that fails keeps
the error's one line; nothing else is affected.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import Settings, inside

__all__ = ["Busy", "Hunt", "HuntJobs", "MAX_WAITING", "STAGES"]

#: Hunts queued or running at once; one more is refused (Busy) rather than queued without end.
MAX_WAITING = 16


class Busy(RuntimeError):
    """Too many hunts are waiting already."""


#: The stages a hunt reports, in order (flowpivot/hunt/engine.py ``step``).
STAGES = ("window", "pivot", "sessions", "victims", "noise", "expansion", "clusters", "seeds", "output")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Hunt:
    id: str
    dir: Path
    seeds_name: str
    params: dict[str, Any]
    created: str = field(default_factory=_now)
    status: str = "queued"  # queued, running, done, failed
    error: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    finished: str | None = None
    summary: dict[str, Any] | None = None
    label: str | None = None
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "created": self.created,
            "finished": self.finished,
            "seeds": self.seeds_name,
            "params": self.params,
            "stages": list(self.stages),
            "error": self.error,
            "summary": self.summary,
            "label": self.label,
        }

    def seed_files(self) -> list[tuple[str, str]]:
        """(set name, file) of the seeds it was given."""
        return [
            (p.name.split("-", 1)[-1].rsplit(".", 1)[0] or "seeds", str(p))
            for p in sorted((self.dir / "seeds").iterdir())
        ]

    def result(self) -> dict[str, Any] | None:
        p = self.dir / "result.json"
        return json.loads(p.read_text()) if self.status == "done" and p.exists() else None


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "clusters": len(result.get("clusters") or []),
        "members": sum(len(c.get("members") or []) for c in result.get("clusters") or []),
        "expansion": len(result.get("expansion") or []),
        "victims": len(result.get("victims") or []),
        "seeds": len(result.get("seeds") or []),
        "window": result.get("window"),
    }


class HuntJobs:
    """The workspace's hunts: start one, follow it, read its result."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.workspace / "hunts"
        self.pool = ThreadPoolExecutor(max_workers=max(1, settings.hunt_workers), thread_name_prefix="hunt")
        self.hunts: dict[str, Hunt] = {}
        self.lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        """Hunts of earlier sessions (done or failed); one left running by a stopped server is failed."""
        for d in sorted(self.root.glob("*/hunt.json")):
            try:
                meta = json.loads(d.read_text())
                h = Hunt(meta["id"], d.parent, meta["seeds"], meta.get("params") or {}, meta.get("created", ""))
                h.label = meta.get("label")
            except (OSError, ValueError, KeyError):
                continue
            h.status = meta.get("status", "failed")
            h.stages = meta.get("stages") or []
            h.finished, h.summary, h.error = meta.get("finished"), meta.get("summary"), meta.get("error")
            if h.status in ("queued", "running"):
                h.status, h.error = "failed", "the server stopped before the hunt ended"
            self.hunts[h.id] = h

    def _save(self, h: Hunt) -> None:
        meta = h.info()
        tmp = h.dir / "hunt.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(h.dir / "hunt.json")

    def all(self) -> list[Hunt]:
        return sorted(self.hunts.values(), key=lambda h: h.created, reverse=True)

    def get(self, hunt_id: str) -> Hunt | None:
        return self.hunts.get(hunt_id)

    def start(
        self,
        seeds: list[tuple[str, bytes]],
        params: dict[str, Any],
        on_done: Callable[[Hunt, dict[str, Any]], None] | None = None,
        label: str | None = None,
    ) -> Hunt:
        """Queue a hunt over ``seeds`` ((file name, content) pairs: uploads and pasted text), with
        ``params`` (HuntParams fields). Seed files are read here so that a bad one is refused at once.
        ``on_done(hunt, result)`` runs in the hunt's thread once its result is written (an
        investigation records its run there); ``label`` names what started it."""
        from ..hunt import HuntParams, read_seeds

        waiting = sum(1 for h in self.hunts.values() if h.status in ("queued", "running"))
        if waiting >= MAX_WAITING:
            raise Busy(f"{waiting} hunts are queued or running; start this one when they are done")
        HuntParams().replace(**params)  # unknown or ill-typed parameters fail before anything is queued
        hid = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        d = self.root / hid
        (d / "seeds").mkdir(parents=True)
        entries: list[tuple[str, str]] = []
        for i, (name, data) in enumerate(seeds):
            p = inside(d / "seeds", f"{i + 1:02d}-{name}")
            p.write_bytes(data)
            entries.append((Path(name).stem or "seeds", str(p)))
        seedset = read_seeds(entries)
        if not seedset.seeds:
            import shutil

            shutil.rmtree(d, ignore_errors=True)
            raise ValueError("no seed address in what was given (addresses, CIDRs, STIX, MISP or maltrail lines)")
        h = Hunt(hid, d, ", ".join(n for n, _ in seeds), params, label=label)
        with self.lock:
            self.hunts[hid] = h
        self._save(h)
        self.pool.submit(self._run, h, seedset, on_done)
        return h

    def _event(self, h: Hunt, **ev: Any) -> None:
        with h.changed:
            if "stage" in ev:
                h.stages.append({"stage": ev["stage"], "at": _now(), "t": round(time.perf_counter() - ev["t0"], 3)})
            h.changed.notify_all()

    def _run(self, h: Hunt, seedset: Any, on_done: Callable[[Hunt, dict[str, Any]], None] | None) -> None:
        from ..hunt import hunt

        t0 = time.perf_counter()
        with h.changed:
            h.status = "running"
            h.changed.notify_all()
        try:
            result = hunt(
                self.settings.store,
                seedset,
                asn_dbs=[str(p) for p in self.settings.asn_dbs],
                whois=self.settings.whois,
                progress=lambda name: self._event(h, stage=name, t0=t0),
                **h.params,
            )
            (h.dir / "result.json").write_text(json.dumps(result, indent=1))
            if on_done is not None:
                on_done(h, result)
            with h.changed:
                h.summary, h.status = summarise(result), "done"
        except Exception as e:  # a failed hunt is reported on its page, never crashes the server
            with h.changed:
                h.status, h.error = "failed", f"{type(e).__name__}: {e}"[:500]
        with h.changed:
            h.finished = _now()
            self._save(h)
            h.changed.notify_all()

    def wait(self, h: Hunt, seen: int, timeout: float) -> None:
        """Block until ``h`` has more than ``seen`` stages or has ended, at most ``timeout`` s."""
        with h.changed:
            if len(h.stages) <= seen and h.status in ("queued", "running"):
                h.changed.wait(timeout)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

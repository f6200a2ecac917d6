"""``flowpivot watch``: re-run a saved investigation when the store changes or on a schedule.

:meth:`Watcher.check` is one look: it takes the store's state (:func:`store_state`), and when
the store differs from what the last run saw, or the schedule (``every_s``) says a run is due,
or there is no run yet, it hunts the investigation's seeds with its parameters and sources,
records the run, and sends the diff from the previous run to the sinks as alerts.
:meth:`Watcher.run` loops over :meth:`check` until it is stopped (an event, Ctrl-C).

A store that is being written (an ingest of several files, a collector rotating) changes at every
look; the loop waits until two looks ``poll_s`` apart see the same state before it hunts, so
one ingest makes one run, not one per file (``check`` alone, as ``--once`` runs it, does not wait).
The state is taken before the hunt: data that lands during the hunt makes the next look run again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Problem
from ..workspace.investigations import InvalidInput, Investigation, Investigations, Run
from .alerts import Sink, make_alerts, send_all
from .diff import diff_results
from .state import store_changed, store_state

__all__ = ["CheckResult", "Watcher", "run_investigation", "investigation_seedset"]

log = logging.getLogger("flowpivot.watch")


@dataclass
class CheckResult:
    """What one look did."""

    ran: bool
    reason: str  # "first run", "store changed", "schedule", "forced", "unchanged", "not due", "settling", "failed"
    run: Run | None = None
    previous: Run | None = None
    diff: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def investigation_seedset(inv: Investigation) -> Any:
    """The investigation's seed sets as the :class:`~flowpivot.hunt.seeds.SeedSet` the hunt takes
    (each seed's source is the investigation and its set)."""
    from ..hunt.seeds import Seed, SeedSet

    out = SeedSet()
    for name, addrs in sorted(inv.seeds.items()):
        out.set_files.setdefault(name, [])
        for i, ip in enumerate(addrs, 1):
            out.add(Seed(ip=ip, source=f"investigation {inv.name}", where=f"set {name} item {i}", set=name))
    return out


def run_investigation(
    investigations: Investigations,
    ref: int | str,
    *,
    store: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Run, dict[str, Any]]:
    """Hunt the investigation's seeds over ``store`` (default: the one it was saved with), record
    the run and return it with its result."""
    from ..hunt import hunt

    inv = investigations.get(ref)
    src = inv.sources
    where = store or src.get("store")
    if not where:
        raise InvalidInput(f"investigation {inv.name!r} has no store: give one")
    if not inv.seeds or not any(inv.seeds.values()):
        raise InvalidInput(f"investigation {inv.name!r} has no seeds")
    state = store_state(where)
    result = hunt(
        where,
        investigation_seedset(inv),
        asn_dbs=src.get("asn_dbs", []),
        whois=src.get("whois"),
        allowlist=src.get("allowlist"),
        params=inv.hunt_params(),
        progress=progress,
    )
    run = investigations.record_run(inv.id, result, store_state=state)
    return run, result


def _ms(t: str | None) -> float | None:
    if not t:
        return None
    return dt.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000


def _now_iso() -> str:
    ms = int(time.time() * 1000)
    d = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class Watcher:
    """Watch one investigation of ``investigations``; see the module doc."""

    def __init__(
        self,
        investigations: Investigations,
        ref: int | str,
        *,
        store: str | Path | None = None,
        every_s: float | None = None,
        on_change: bool = True,
        sinks: Sequence[Sink] = (),
        poll_s: float = 30.0,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.investigations = investigations
        inv = investigations.get(ref)  # fails now, not at the first look
        self.name = inv.name
        self.id = inv.id
        self.store = store or inv.sources.get("store")
        if not self.store:
            raise InvalidInput(f"investigation {inv.name!r} has no store: give one")
        if every_s is not None and every_s <= 0:
            raise InvalidInput("the schedule must be a positive duration")
        if not on_change and every_s is None:
            raise InvalidInput("a watch that does not re-run on change needs a schedule")
        self.every_s = every_s
        self.on_change = on_change
        self.sinks = list(sinks)
        self.poll_s = poll_s
        self.progress = progress
        self._seen: dict[str, Any] | None = None  # the state at the previous look (settling)

    def due(self, state: dict[str, Any], last: Run | None, now: float | None = None) -> str | None:
        """Why a run is due now (None: it is not)."""
        if last is None:
            return "first run"
        if self.on_change and store_changed(last.store_state, state):
            return "store changed"
        if self.every_s is not None:
            at = _ms(last.time)
            if at is None or (now if now is not None else time.time()) * 1000 - at >= self.every_s * 1000:
                return "schedule"
        return None

    def check(self, *, force: bool = False, settle: bool = False, now: float | None = None) -> CheckResult:
        """One look: hunt, record and alert when a run is due (always with ``force``). With
        ``settle``, a changed store must look the same twice in a row before it is hunted."""
        state = store_state(self.store)
        last = self.investigations.last_run(self.id)
        reason = "forced" if force else self.due(state, last, now)
        if reason is None:
            self._seen = state
            return CheckResult(False, "unchanged" if self.every_s is None else "not due", previous=last)
        if settle and reason == "store changed" and store_changed(self._seen, state):
            self._seen = state
            return CheckResult(False, "settling", previous=last)
        self._seen = state
        log.debug("watch %s: %s, hunting", self.name, reason)
        run, result = run_investigation(self.investigations, self.id, store=self.store, progress=self.progress)
        out = CheckResult(True, reason, run=run, previous=last)
        if last is None:
            return out
        out.diff = diff = diff_results(self.investigations.run_result(last.id), result)
        out.alerts = make_alerts(
            diff["events"], investigation=self.name, run=run.id, previous_run=last.id, time=_now_iso()
        )
        if out.alerts:
            out.problems = send_all(self.sinks, out.alerts)
            for p in out.problems:
                log.warning("watch %s: %s", self.name, p)
        return out

    def run(
        self,
        stop: threading.Event | None = None,
        on_check: Callable[[CheckResult], None] | None = None,
    ) -> None:
        """Look every ``poll_s`` seconds until ``stop`` is set (or Ctrl-C, which propagates). A look
        whose hunt fails is reported (``reason`` ``failed``, with the problem) and the loop goes on:
        the next look tries again."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                res = self.check(settle=True)
            except Exception as e:  # a hunt that failed (a file expired under it, a full disk): say so, go on
                if type(e).__name__ == "InterruptException":  # DuckDB's Ctrl-C
                    raise
                log.warning("watch %s: the run failed: %s", self.name, e)
                res = CheckResult(False, "failed", problems=[Problem(str(self.store), "run", f"failed: {e}")])
            if on_check is not None:
                on_check(res)
            stop.wait(self.poll_s)

    def close(self) -> None:
        for s in self.sinks:
            s.close()

"""Watching a saved investigation: re-run it when the store changes, compare runs, check takedowns.

* :func:`store_state` (``state.py``): the store's fingerprint a run records;
* :func:`diff_results` (``diff.py``): what changed between two ``flowpivot-hunt/1`` results;
* :func:`takedown` (``takedown.py``): when each reported host went dark after the disclosure;
* :class:`Watcher` (``watcher.py``) and the alert sinks (``alerts.py``): ``flowpivot watch``.

docs/watch.md describes them.
"""

from __future__ import annotations

from .alerts import FileSink, SyslogSink, WebhookSink
from .diff import DIFF_FORMAT, diff_results
from .state import store_changed, store_state
from .takedown import TAKEDOWN_FORMAT, takedown
from .watcher import CheckResult, Watcher, investigation_seedset, run_investigation

__all__ = [
    "DIFF_FORMAT",
    "TAKEDOWN_FORMAT",
    "CheckResult",
    "FileSink",
    "SyslogSink",
    "Watcher",
    "WebhookSink",
    "diff_results",
    "investigation_seedset",
    "run_investigation",
    "store_changed",
    "store_state",
    "takedown",
]

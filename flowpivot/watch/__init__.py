"""Watching a saved investigation: re-run it when the store changes, compare runs, check takedowns.

* :func:`store_state` (``state.py``): the store's fingerprint a run records;
* :func:`diff_results` (``diff.py``): what changed between two ``flowpivot-hunt/1`` results;
* :func:`takedown` (``takedown.py``): when each reported host went dark after the disclosure;
* :class:`Watcher` (``watcher.py``) and the alert sinks (``alerts.py``): ``flowpivot watch``.
"""

from __future__ import annotations

from .state import store_changed, store_state

__all__ = ["store_changed", "store_state"]

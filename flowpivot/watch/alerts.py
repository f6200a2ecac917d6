"""Where ``watch`` sends its alerts: a JSON-lines file, syslog, a webhook. Standard library only.

An alert is one change between two runs (an event of :func:`flowpivot.watch.diff.diff_results`)
with the investigation and runs it came from::

    {"format": "flowpivot-alert/1", "time", "investigation", "run", "previous_run",
     "kind", "ip", "message", ...the event's details}

* :class:`FileSink` appends one JSON object per line (``jq``, Splunk's and Elastic's file inputs);
* :class:`SyslogSink` sends each alert through :class:`logging.handlers.SysLogHandler` (UDP to
  ``host:port``, or a local socket such as ``/dev/log``) as ``flowpivot: {json}`` at ``warning``,
  with the event's details left out so that it fits a datagram;
* :class:`WebhookSink` POSTs the alerts of one run as one JSON document
  (``{"format": "flowpivot-alerts/1", "investigation", "run", "previous_run", "text", "alerts"}``;
  ``text`` is a summary line chat webhooks show) with :mod:`urllib.request`.

A sink that fails (disk full, receiver down) is reported as a :class:`~flowpivot.errors.Problem`
and the watch goes on: the run is recorded, the next run's diff still holds the change.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import Problem

__all__ = ["ALERT_FORMAT", "Sink", "FileSink", "SyslogSink", "WebhookSink", "make_alerts", "send_all"]

ALERT_FORMAT = "flowpivot-alert/1"
#: Keys of an alert that every sink keeps (syslog drops the rest).
CORE_KEYS = ("format", "time", "investigation", "run", "previous_run", "kind", "ip", "message")


class Sink(Protocol):
    name: str

    def send(self, alerts: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def make_alerts(
    events: Sequence[dict[str, Any]], *, investigation: str, run: int, previous_run: int | None, time: str
) -> list[dict[str, Any]]:
    base = {
        "format": ALERT_FORMAT,
        "time": time,
        "investigation": investigation,
        "run": run,
        "previous_run": previous_run,
    }
    return [{**base, **e} for e in events]


class FileSink:
    """Append alerts to ``path``, one JSON object a line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = f"file {self.path}"

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        if not alerts:
            return
        text = "".join(json.dumps(a, separators=(",", ":"), default=str) + "\n" for a in alerts)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        pass


def parse_syslog_address(text: str) -> str | tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (UDP; port 514 when left out) or a socket path (``/dev/log``)."""
    t = text.strip()
    if t.startswith("/"):
        return t
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        port = rest.lstrip(":") or "514"
    elif t.count(":") == 1:
        host, _, port = t.partition(":")
    else:
        host, port = t, "514"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a syslog address: {text!r} (use host:port, e.g. 127.0.0.1:514, or /dev/log)")
    return host, int(port)


class _RaisingSysLogHandler(logging.handlers.SysLogHandler):
    """A handler whose send errors reach the caller (logging's default prints them and goes on)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        raise  # noqa: PLE0704 (called from emit's except block: re-raises what failed)


class SyslogSink:
    """Each alert as one syslog message ``flowpivot: {json}`` at warning, facility ``user`` by default."""

    def __init__(self, address: str, facility: str = "user") -> None:
        addr = parse_syslog_address(address)
        fac = logging.handlers.SysLogHandler.facility_names.get(facility)
        if fac is None:
            raise ValueError(f"unknown syslog facility {facility!r}")
        self.name = f"syslog {address}"
        self.handler = _RaisingSysLogHandler(address=addr, facility=fac, socktype=socket.SOCK_DGRAM)
        self.handler.ident = "flowpivot: "
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        for a in alerts:
            msg = json.dumps({k: a.get(k) for k in CORE_KEYS}, separators=(",", ":"), default=str)
            rec = logging.LogRecord("flowpivot.watch", logging.WARNING, __file__, 0, msg, None, None)
            self.handler.emit(rec)

    def close(self) -> None:
        self.handler.close()


class WebhookSink:
    """POST the alerts of one run as JSON to an ``http(s)`` URL."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        # the URL may carry a secret (chat webhooks do): name it by host only
        self.name = f"webhook {u.scheme}://{u.hostname}{':' + str(u.port) if u.port else ''}"

    def send(self, alerts: Sequence[dict[str, Any]]) -> None:
        if not alerts:
            return
        first = alerts[0]
        kinds: dict[str, int] = {}
        for a in alerts:
            kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
        text = f"flowpivot watch {first.get('investigation')}, run {first.get('run')}: " + ", ".join(
            f"{n} {k}" for k, n in kinds.items()
        )
        body = json.dumps(
            {
                "format": "flowpivot-alerts/1",
                "investigation": first.get("investigation"),
                "run": first.get("run"),
                "previous_run": first.get("previous_run"),
                "text": text,
                "alerts": list(alerts),
            },
            default=str,
        ).encode()
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "flowpivot-watch"},
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 (scheme checked)
            if not 200 <= resp.status < 300:
                raise OSError(f"HTTP {resp.status}")

    def close(self) -> None:
        pass


def send_all(sinks: Sequence[Sink], alerts: Sequence[dict[str, Any]]) -> list[Problem]:
    """Send to every sink; a sink that fails is a problem, the others still get the alerts."""
    problems = []
    for s in sinks:
        try:
            s.send(alerts)
        except (OSError, urllib.error.URLError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            problems.append(Problem(s.name, f"run {alerts[0].get('run')}" if alerts else "", f"not sent: {reason}"))
    return problems

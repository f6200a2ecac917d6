"""CLI for the collect stage: ``flowpivot collect``, a live NetFlow v5/v7/v9, IPFIX and sFlow v5 collector."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from ..collect import DEFAULT_RCVBUF, Collector, CollectorConfig, parse_listen
from ..store import Store, parse_duration, parse_time
from ..timerange import TimeRange
from .common import err, errors_as_exit

LOG_EVERY_S = 10.0


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _table(snap: dict[str, Any]) -> Table:
    t = Table(
        title=f"flowpivot collect on {snap['listen']}: {snap['flows_stored']:,} flows stored, "
        f"{snap['flows_decoded'] - snap['flows_stored']:,} in the open window, kernel drops {snap['kernel_drops']}",
        title_justify="left",
    )
    cols = ("datagrams", "flows", "malformed", "lost_seq")
    t.add_column("exporter")
    for c in cols:
        t.add_column(c, justify="right")
    for name, e in snap["exporters"].items():
        t.add_row(name, *(f"{e.get(c, 0):,}" for c in cols))
    return t


def _log_line(snap: dict[str, Any]) -> None:
    tot = snap["totals"]
    err.print(
        f"collect {snap['listen']}: {snap['datagrams_received']:,} datagrams, {snap['flows_decoded']:,} flows "
        f"({snap['flows_stored']:,} committed), malformed {tot.get('malformed', 0):,}, "
        f"lost to sequence gaps {tot.get('lost_seq', 0):,}, kernel drops {snap['kernel_drops']}, "
        f"outside the time range {snap.get('out_of_time_range', 0):,}, "
        f"write failures {snap.get('write_failures', 0)} ({snap.get('flows_write_failed', 0):,} flows)",
        highlight=False,
        markup=False,
    )
    for name, e in snap["exporters"].items():
        err.print(
            "  exporter " + name + ": " + ", ".join(f"{k} {v:,}" for k, v in e.items() if isinstance(v, int)),
            highlight=False,
            markup=False,
        )


def collect(
    store: Annotated[Path, typer.Option("--store", "-s", help="Flow store directory.")],
    listen: Annotated[
        list[str] | None,
        typer.Option(
            "--listen",
            "-l",
            metavar="HOST:PORT",
            help="UDP address to listen on, HOST:PORT or [V6ADDR]:PORT (port 0: any free port). Repeat it for "
            "several sockets, e.g. 2055 for NetFlow/IPFIX and 6343 for sFlow (default 127.0.0.1:2055).",
        ),
    ] = None,
    rotate: Annotated[
        str, typer.Option("--rotate", help="Commit a window to the store this often (e.g. 5m, 30s, 1h).")
    ] = "5m",
    rcvbuf: Annotated[
        int, typer.Option("--rcvbuf", help="Socket receive buffer to ask for, in bytes.")
    ] = DEFAULT_RCVBUF,
    writers: Annotated[
        int, typer.Option("--writers", min=1, max=16, help="Write threads (each writes its own file per window).")
    ] = 1,
    not_before: Annotated[
        str | None,
        typer.Option(
            "--not-before", metavar="TIME", help="Store no flow that starts or ends before this (default 1970-01-01)."
        ),
    ] = None,
    not_after: Annotated[
        str | None,
        typer.Option(
            "--not-after",
            metavar="TIME",
            help="Store no flow that starts or ends after this (default: arrival plus --future-slack).",
        ),
    ] = None,
    future_slack: Annotated[
        str,
        typer.Option(
            "--future-slack",
            metavar="DURATION",
            help="How far ahead of the collector's clock a flow time may be (an exporter's clock running fast).",
        ),
    ] = "1d",
) -> None:
    """Receive NetFlow v5, v7, v9, IPFIX and sFlow v5 over UDP into the store until SIGTERM or Ctrl-C.

    Flows dated before 1970 (or --not-before) or more than a day (--future-slack) after their arrival are counted and reported, never stored. Each rotation window is committed to the store as one file per day. On SIGTERM or SIGINT the collector drains what the kernel buffered, commits it and exits 0. Counters per exporter are shown live on stderr and written to STORE/collector/stats.json and stats.jsonl.
    """
    with errors_as_exit():
        addrs = [parse_listen(x) for x in (listen or ["127.0.0.1:2055"])]
        rotate_ms = parse_duration(rotate)
        time_range = TimeRange(
            earliest_ms=parse_time(not_before) if not_before else 0,
            latest_ms=parse_time(not_after) if not_after else None,
            slack_ms=parse_duration(future_slack),
        )
        config = CollectorConfig(
            listen=tuple(addrs), rotate_ms=rotate_ms, rcvbuf=rcvbuf, writers=writers, time_range=time_range
        )
        collector = Collector(Store(store), config=config)
        stop = threading.Event()

        def _on_signal(signum: int, _frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        collector.start()
        for sock in collector.snapshot()["sockets"]:
            h, _, p = sock["listen"].rpartition(":")
            shown = f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
            err.print(
                f"listening on {shown} (UDP), receive buffer {_size(sock['rcvbuf_effective'])} "
                f"(asked {_size(rcvbuf)}), rotating every {rotate}, writing to {store}",
                highlight=False,
                markup=False,
            )
        if collector.rcvbuf_effective is not None and collector.rcvbuf_effective < rcvbuf:
            err.print(
                "  the kernel capped the receive buffer: raise net.core.rmem_max (sysctl) or run with CAP_NET_ADMIN",
                highlight=False,
                markup=False,
            )
        try:
            if err.is_terminal:
                with Live(_table(collector.snapshot()), console=err, refresh_per_second=1, transient=False) as live:
                    while not stop.wait(1.0) and collector.alive():
                        live.update(_table(collector.snapshot()))
                    live.update(_table(collector.snapshot()))
            else:
                last = time.monotonic()
                seen = -1
                while not stop.wait(1.0) and collector.alive():
                    if time.monotonic() - last >= LOG_EVERY_S and collector.datagrams_received != seen:
                        seen = collector.datagrams_received
                        last = time.monotonic()
                        _log_line(collector.snapshot())
        finally:
            err.print("stopping: draining the socket and committing", highlight=False, markup=False)
            collector.stop()
        snap = collector.snapshot()
        _log_line(snap)
        err.print(
            f"stopped: {snap['flows_stored']:,} flows stored in {snap['windows_committed']} window(s)",
            highlight=False,
            markup=False,
        )
    logging.getLogger("flowpivot.collect").debug("exit")


def register(app: typer.Typer) -> None:
    app.command()(collect)

"""CLI for saved investigations and watching them: ``flowpivot investigation ...`` and
``flowpivot watch``, thin layers over :mod:`flowpivot.workspace.investigations` and
:mod:`flowpivot.watch` (docs/watch.md)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import EXIT_NOTHING
from ..textsafe import visible
from .common import err, errors_as_exit, fail, out, report_problems

__all__ = ["register", "investigation_app", "workspace_of"]

investigation_app = typer.Typer(
    name="investigation",
    help="Saved investigations: seeds, parameters, notes, the disclosure date and every run.",
    no_args_is_help=True,
)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar="FLOWPIVOT_WORKSPACE",
        help="Workspace folder (investigations.sqlite). Default: STORE-workspace beside --store.",
    ),
]
StoreOpt = Annotated[Path | None, typer.Option("--store", "-s", help="Flow store directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
NameArg = Annotated[str, typer.Argument(help="The investigation's name (or id).")]


def workspace_of(workspace: Path | None, store: Path | None) -> Path:
    """The workspace folder: given, or ``STORE-workspace`` beside the store (as ``flowpivot serve``)."""
    if workspace is not None:
        return workspace
    if store is not None:
        s = Path(os.path.abspath(store))
        return s.with_name(s.name + "-workspace")
    raise fail("give --workspace DIR (or --store DIR: its workspace is DIR-workspace beside it)")


def _open(workspace: Path | None, store: Path | None) -> Any:
    from ..workspace.investigations import Investigations

    return Investigations(workspace_of(workspace, store))


def _param_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--param {text!r}: use NAME=VALUE (e.g. days=10)")
    key = key.strip().replace("-", "_")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _say(text: str) -> None:
    out.print(visible(text), markup=False, highlight=False, soft_wrap=True)


@investigation_app.command("new")
def new(
    name: NameArg,
    seeds: Annotated[
        list[str],
        typer.Option("--seeds", help="Seed file, or NAME=FILE for the set NAME (any format `hunt` reads). Repeat."),
    ],
    store: StoreOpt = None,
    workspace: WorkspaceOpt = None,
    asn_db: Annotated[list[Path] | None, typer.Option("--asn-db", help="ASN database for the re-runs.")] = None,
    whois: Annotated[Path | None, typer.Option("--whois", help="RPSL whois dump for the re-runs.")] = None,
    allowlist: Annotated[Path | None, typer.Option("--allowlist", help="Allowlist for the re-runs.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="A hunt parameter, NAME=VALUE (days=10, min_seeds=3). Repeat.")
    ] = None,
    disclosed: Annotated[
        str | None, typer.Option("--disclosed", help="When the hosts were reported (ISO 8601).")
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Notes.")] = "",
    run: Annotated[bool, typer.Option("--run", help="Hunt at once and keep the result as run 1.")] = False,
) -> None:
    """Save an investigation: its seed sets, hunt parameters and the store it hunts."""
    from ..workspace.investigations import seed_sets_from_files

    with errors_as_exit():
        sets, seedset = seed_sets_from_files(seeds)
        report_problems(seedset.problems)
        params = dict(_param_value(p) for p in param or [])
        sources: dict[str, Any] = {
            "store": os.path.abspath(store) if store else None,
            "asn_dbs": [os.path.abspath(p) for p in asn_db or []],
            "whois": os.path.abspath(whois) if whois else None,
            "allowlist": os.path.abspath(allowlist) if allowlist else None,
        }
        inv = _open(workspace, store)
        it = inv.create(name, seeds=sets, params=params, notes=note, disclosed=disclosed, sources=sources)
        _say(f"investigation {it.name} (id {it.id}): {len(it.addresses())} seeds in {len(sets)} set(s), in {inv.path}")
        if run:
            _run_now(inv, it.name, store)


def _run_now(inv: Any, name: str, store: Path | None) -> None:
    from ..watch import diff_results, run_investigation

    before = inv.last_run(name)
    with err.status("hunting"):
        r, result = run_investigation(inv, name, store=store)
    s = r.summary
    _say(
        f"run {r.id}: {s['clusters']} clusters, {s['members']} members, {s['expansion']} new hosts, "
        f"{s['victims']} victims; seeds {s['seed_status']}"
    )
    if before is not None:
        _print_diff(diff_results(inv.run_result(before.id), result), before.id, r.id)


@investigation_app.command("list")
def list_(workspace: WorkspaceOpt = None, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """The saved investigations, with their runs."""
    with errors_as_exit():
        items = _open(workspace, store).list()
    if json_out:
        out.print_json(json.dumps([i.as_dict() for i in items]))
        return
    t = Table("id", "name", "seeds", "runs", "last run", "disclosed", "created")
    for i in items:
        t.add_row(
            str(i.id), i.name, str(len(i.addresses())), str(i.runs), i.last_run or "", i.disclosed or "", i.created
        )
    out.print(t)


@investigation_app.command("show")
def show(name: NameArg, workspace: WorkspaceOpt = None, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """One investigation: its seeds, parameters, notes and runs."""
    with errors_as_exit():
        inv = _open(workspace, store)
        it = inv.get(name)
        runs = inv.runs(it.id)
    if json_out:
        out.print_json(json.dumps({"investigation": it.as_dict(), "runs": [r.as_dict() for r in runs]}))
        return
    _say(f"investigation {it.name} (id {it.id}), created {it.created}")
    _say(f"store: {it.sources.get('store', '-')}; disclosed: {it.disclosed or '-'}")
    for k, v in it.seeds.items():
        _say(f"seed set {k}: {len(v)} addresses")
    if it.params:
        _say("parameters: " + ", ".join(f"{k}={v}" for k, v in it.params.items()))
    if it.notes:
        _say("notes:")
        for line in it.notes.splitlines():
            _say(f"  {line}")
    t = Table("run", "time", "window end", "clusters", "members", "new hosts", "victims", "seeds")
    for r in runs:
        s = r.summary
        t.add_row(
            str(r.id),
            r.time,
            str((s.get("window") or {}).get("end", "")),
            str(s.get("clusters")),
            str(s.get("members")),
            str(s.get("expansion")),
            str(s.get("victims")),
            ", ".join(f"{n} {k}" for k, n in (s.get("seed_status") or {}).items()),
        )
    out.print(t)


@investigation_app.command("run")
def run_cmd(name: NameArg, workspace: WorkspaceOpt = None, store: StoreOpt = None) -> None:
    """Hunt the investigation now over its store, keep the run and print what changed."""
    with errors_as_exit():
        _run_now(_open(workspace, store), name, store)


def _runs_pair(inv: Any, name: str, a: int | None, b: int | None) -> tuple[Any, Any]:
    runs = inv.runs(name)
    ids = [r.id for r in runs]
    if a is None and b is None:
        if len(runs) < 2:
            _nothing(f"{name} has {len(runs)} run(s): nothing to compare")
            raise typer.Exit(EXIT_NOTHING)
        return runs[-2], runs[-1]
    for x in (a, b):
        if x is not None and x not in ids:
            raise ValueError(f"run {x} is not a run of {name} (its runs: {', '.join(map(str, ids)) or 'none'})")
    if b is None:
        b = ids[-1]
    ra, rb = inv.run(a), inv.run(b)
    return ra, rb


def _nothing(message: str) -> None:
    err.print(f"[yellow]{escape(visible(message))}[/]", highlight=False)


def _print_diff(d: dict[str, Any], a: int, b: int) -> None:
    if not d["events"]:
        _say(f"no change from run {a} to run {b}")
        return
    kinds: dict[str, int] = {}
    for e in d["events"]:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    _say(f"run {a} -> run {b}: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    for e in d["events"]:
        _say(f"  {e['kind']}: {e['message']}")


@investigation_app.command("diff")
def diff(
    name: NameArg,
    run_a: Annotated[int | None, typer.Argument(help="The older run (default: the one before the last).")] = None,
    run_b: Annotated[int | None, typer.Argument(help="The newer run (default: the last).")] = None,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """What changed between two runs: members, seeds contacted, new hosts, victims, seeds gone dark."""
    from ..watch import diff_results

    with errors_as_exit():
        inv = _open(workspace, store)
        ra, rb = _runs_pair(inv, name, run_a, run_b)
        d = diff_results(inv.run_result(ra.id), inv.run_result(rb.id))
    if json_out:
        out.print_json(json.dumps({"a": ra.as_dict(), "b": rb.as_dict(), "diff": d}))
        return
    _print_diff(d, ra.id, rb.id)


@investigation_app.command("takedown")
def takedown_cmd(
    name: NameArg,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
    host: Annotated[
        list[str] | None, typer.Option("--host", help="Only these reported hosts (default: every seed).")
    ] = None,
    timeline: Annotated[bool, typer.Option("--timeline", help="Print each host's timeline after the table.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Did the reported hosts go dark after the disclosure date? A timeline per host, with evidence."""
    from ..watch import takedown

    with errors_as_exit():
        inv = _open(workspace, store)
        it = inv.get(name)
        if not it.disclosed:
            raise ValueError(f"{it.name} has no disclosure date: flowpivot investigation disclosed {it.name} DATE")
        runs = inv.runs(it.id)
        if not runs:
            _nothing(f"{it.name} has no run yet: flowpivot investigation run {it.name}")
            raise typer.Exit(EXIT_NOTHING)
        t = takedown([({"run": r.id, "time": r.time}, inv.run_result(r.id)) for r in runs], it.disclosed, host)
    if json_out:
        out.print_json(json.dumps(t))
        return
    _say(
        f"disclosed {t['disclosed']}; data up to {t['as_of']}: "
        + ", ".join(f"{n} {k}" for k, n in t["summary"].items())
    )
    tab = Table(
        "host", "verdict", "last answered", "hours after", "unanswered after", "knocking peers", "confirmed by run"
    )
    for h in t["hosts"]:
        ev = h.get("evidence") or {}
        tab.add_row(
            h["ip"],
            h["verdict"],
            str(ev.get("last_answered") or "-"),
            "-" if h.get("hours_after_disclosure") is None else f"{h['hours_after_disclosure']:.1f}",
            str(ev.get("unanswered_after", "-")),
            str(ev.get("knocking_peers", "-")),
            str((h.get("confirmed_by") or {}).get("run", "-")),
        )
    out.print(tab)
    if timeline:
        for h in t["hosts"]:
            _say(f"{h['ip']}  {h['verdict']}")
            for e in h["timeline"]:
                _say(f"  {e.get('time') or '?'}  {_event_text(e)}")


def _event_text(e: dict[str, Any]) -> str:
    kind = e["event"]
    if kind == "last-answer":
        return "last answer" + (f" (to {', '.join(e['peers'])})" if e.get("peers") else "")
    if kind == "unanswered":
        return f"unanswered: {e['peer']} ({e['as']})"
    if kind == "last-unanswered-attempt":
        return f"last unanswered attempt ({e.get('attempts')} after the last answer)"
    if kind == "confirmed-dark":
        return f"confirmed dark by run {e.get('run')}"
    return str(kind)


@investigation_app.command("seeds")
def seeds_cmd(
    name: NameArg,
    seeds: Annotated[
        list[str] | None,
        typer.Option("--seeds", help="Add or replace a set: NAME=FILE (any format `hunt` reads). Repeat."),
    ] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="Remove the seed set NAME. Repeat.")] = None,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Add, replace or remove seed sets (e.g. the hosts you reported, to follow their takedown)."""
    from ..workspace.investigations import seed_sets_from_files

    with errors_as_exit():
        inv = _open(workspace, store)
        it = inv.get(name)
        if seeds:
            sets, seedset = seed_sets_from_files(seeds)
            report_problems(seedset.problems)
            for k, v in sets.items():
                it = inv.set_seeds(it.id, k, v)
        for k in remove or []:
            if k not in it.seeds:
                raise ValueError(f"{it.name} has no seed set {k!r} (its sets: {', '.join(it.seeds) or 'none'})")
            it = inv.set_seeds(it.id, k, None)
    for k, v in it.seeds.items():
        _say(f"seed set {k}: {len(v)} addresses")


@investigation_app.command("note")
def note_cmd(
    name: NameArg,
    text: Annotated[str, typer.Argument(help="The note (a dated line is added).")],
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Add a dated line to the notes."""
    with errors_as_exit():
        it = _open(workspace, store).add_note(name, text)
    _say(f"{it.name}: {len(it.notes.splitlines())} note line(s)")


@investigation_app.command("disclosed")
def disclosed_cmd(
    name: NameArg,
    when: Annotated[str, typer.Argument(help="When the hosts were reported (ISO 8601); 'none' clears it.")],
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Record when the hosts were reported: takedown verification starts there."""
    with errors_as_exit():
        it = _open(workspace, store).set_disclosed(name, None if when.lower() == "none" else when)
    _say(f"{it.name}: disclosed {it.disclosed or '-'}")


@investigation_app.command("delete")
def delete_cmd(
    name: NameArg,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Delete an investigation with all its runs."""
    with errors_as_exit():
        inv = _open(workspace, store)
        it = inv.get(name)
        if not yes and not typer.confirm(f"delete {it.name} and its {it.runs} run(s)?"):
            raise typer.Exit(1)
        inv.delete(it.id)
    _say(f"deleted {it.name}")


def watch(
    name: NameArg,
    workspace: WorkspaceOpt = None,
    store: Annotated[
        Path | None, typer.Option("--store", "-s", help="Flow store (default: the investigation's).")
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", help="Re-run on a schedule (30m, 1h, 1d), changed or not, instead of on every change."),
    ] = None,
    on_change: Annotated[
        bool | None,
        typer.Option(
            "--on-change/--no-on-change",
            help="Re-run when the store changes (default: yes without --every, no with it).",
        ),
    ] = None,
    poll: Annotated[str, typer.Option("--poll", help="How often to look at the store.")] = "30s",
    once: Annotated[bool, typer.Option("--once", help="Look once (run if due), then exit.")] = False,
    alerts_file: Annotated[
        Path | None, typer.Option("--alerts-file", help="Append alerts to this file, one JSON object a line.")
    ] = None,
    syslog: Annotated[
        str | None, typer.Option("--syslog", help="Send alerts to syslog: HOST:PORT (UDP) or a socket (/dev/log).")
    ] = None,
    syslog_facility: Annotated[str, typer.Option("--syslog-facility", help="Syslog facility.")] = "user",
    webhook: Annotated[str | None, typer.Option("--webhook", help="POST alerts as JSON to this http(s) URL.")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per look (ran, reason, run, alerts) on stdout.")
    ] = False,
) -> None:
    """Re-run a saved investigation when new data lands in the store (or on a schedule), keep
    each run, and send what changed since the last run as alerts."""
    from ..store import parse_duration
    from ..watch import FileSink, SyslogSink, Watcher, WebhookSink
    from ..watch.alerts import Sink

    with errors_as_exit():
        every_s = parse_duration(every) / 1000 if every else None
        poll_s = parse_duration(poll) / 1000
        if poll_s <= 0:
            raise ValueError("--poll must be positive")
        if on_change is None:
            on_change = every_s is None
        if not on_change and every_s is None:
            raise ValueError("--no-on-change needs --every: nothing else would run the hunt")
        sinks: list[Sink] = []
        if alerts_file:
            sinks.append(FileSink(alerts_file))
        if syslog:
            sinks.append(SyslogSink(syslog, syslog_facility))
        if webhook:
            sinks.append(WebhookSink(webhook))
        inv = _open(workspace, store)
        where = Path(os.path.abspath(store)) if store else None
        w = Watcher(inv, name, store=where, every_s=every_s, on_change=on_change, sinks=sinks, poll_s=poll_s)
    stop = threading.Event()

    def report(res: Any) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if json_out:
            look = {
                "time": stamp,
                "investigation": w.name,
                "ran": res.ran,
                "reason": res.reason,
                "run": res.run.id if res.run else None,
                "previous_run": res.previous.id if res.previous else None,
                "alerts": res.alerts,
                "problems": [p.as_dict() for p in res.problems],
            }
            out.file.write(json.dumps(look, default=str) + "\n")
            out.file.flush()
            return
        if not res.ran:
            err.print(f"{stamp} {escape(w.name)}: {res.reason}", highlight=False)
            report_problems(res.problems)
            return
        _say(f"{stamp} {w.name}: run {res.run.id} ({res.reason}), {len(res.alerts)} alert(s)")
        if res.diff is not None:
            _print_diff(res.diff, res.previous.id, res.run.id)
        report_problems(res.problems)

    old_term = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with errors_as_exit():
            if once:
                report(w.check())
                return
            err.print(
                f"watching {escape(w.name)} (store {escape(str(w.store))}, looking every {poll_s:g} s"
                + (", re-run when it changes" if on_change else "")
                + (f", re-run every {escape(every)}" if every else "")
                + "); Ctrl-C stops",
                highlight=False,
            )
            w.run(stop, on_check=report)
    except KeyboardInterrupt:
        pass
    except Exception as e:
        if type(e).__name__ != "InterruptException":  # duckdb's Ctrl-C inside a query
            raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
        w.close()
    err.print("watch stopped", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(investigation_app, name="investigation")
    app.command("watch")(watch)

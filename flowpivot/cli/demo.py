"""``flowpivot demo``: simulate the FIN7 scenario, ingest it, hunt, and write every report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ..demo import run as run_demo
from .common import err, errors_as_exit, out


def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for the scenario, store, result and reports.")
    ] = Path("demo-out"),
    flows: Annotated[int | None, typer.Option(help="Flow records to simulate (default: the simulator's).")] = None,
    sampling: Annotated[int, typer.Option(help="1:N packet sampling of the simulated exporter.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed of the scenario.")] = 1,
) -> None:
    """Run the whole job on built-in data: simulate fin7, ingest, hunt, report into --out."""
    t0 = time.perf_counter()
    with errors_as_exit():
        run = run_demo(out_dir, flows=flows, sampling=sampling, seed=seed, step=lambda m: err.print(f"[bold]{m}[/]"))
    again = f" ({run.already} capture files were already in the store)" if run.already else ""
    err.print(
        f"{run.flows:,} flows ingested{again}, {run.bad_inputs} bad inputs; done in {time.perf_counter() - t0:.1f} s"
    )
    result = run.result
    for c in result["clusters"]:
        out.print(
            f"cluster {c['id']}: {len(c['members'])} IPs at {c['as_name']} (AS{c['asn']}, {c['country']})"
            f" established sessions with {len(c['seeds'])} seeds",
            highlight=False,
            soft_wrap=True,
        )
    for o in result["overlaps"]:
        out.print(f"overlap {o['clusters'][0]} / {o['clusters'][1]}: {o['count']} shared seeds", highlight=False)
    out.print(f"new infrastructure: {', '.join(e['ip'] for e in result['expansion']) or 'none'}", soft_wrap=True)
    out.print(f"result: {run.result_path}", soft_wrap=True)
    for kind, p in run.reports.items():
        out.print(f"{kind}: {p}", soft_wrap=True)
    out.print(f"[bold]open the report:[/] {run.reports.get('html', run.out_dir / 'report.html')}", soft_wrap=True)
    out.print(f"[bold]open the workspace:[/] {serve_command(run.out_dir)}", soft_wrap=True, highlight=False)


def serve_command(out_dir: Path) -> str:
    """The one command that opens the workspace (``flowpivot serve``) on the demo's store."""
    import shlex

    store, asn = out_dir / "store", out_dir / "scenario" / "asn.tsv"
    return f"flowpivot serve --store {shlex.quote(str(store))} --asn-db {shlex.quote(str(asn))}"


def register(app: typer.Typer) -> None:
    app.command()(demo)

"""``flowpivot demo``: simulate the FIN7 scenario, ingest it, hunt, and write every report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from .common import err, errors_as_exit, out


def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for the scenario, store, result and reports.")
    ] = Path("demo-out"),
    flows: Annotated[int | None, typer.Option(help="Background flows to simulate (default: the simulator's).")] = None,
    sampling: Annotated[int, typer.Option(help="1:N packet sampling of the simulated exporter.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed of the scenario.")] = 1,
) -> None:
    """Run the whole job on built-in data: simulate fin7, ingest, hunt, report into --out."""
    from ..hunt import hunt
    from ..ingest import ingest_paths
    from ..report import write_reports
    from ..simulate import Scenario, simulate
    from ..store import Store

    with errors_as_exit():
        t0 = time.perf_counter()
        scen_dir = out_dir / "scenario"
        kwargs = {"sampling": sampling, "seed": seed}
        if flows is not None:
            kwargs["flows"] = flows
        err.print(f"[bold]1/4 simulate[/] fin7 -> {scen_dir}")
        simulate(Scenario(**kwargs), scen_dir)
        store = Store(out_dir / "store")
        err.print(f"[bold]2/4 ingest[/] -> {store.root}")
        reports = ingest_paths(sorted((scen_dir / "exports").glob("*.pcap")), store)
        bad = sum(r.bad for r in reports)
        err.print(f"   {sum(r.records for r in reports):,} flows, {bad} bad inputs")
        err.print("[bold]3/4 hunt[/]")
        result = hunt(store, [scen_dir / "seeds.txt"], asn_dbs=[scen_dir / "asn.tsv"])
        result_path = out_dir / "result.json"
        result_path.write_text(json.dumps(result, indent=2))
        err.print("[bold]4/4 report[/]")
        paths = write_reports(
            result,
            html=out_dir / "report.html",
            md=out_dir / "report.md",
            stix=out_dir / "stix.json",
            misp=out_dir / "misp.json",
            abuse_dir=out_dir / "abuse",
            tlp="amber",
            actor="FIN7",
        )
    err.print(f"done in {time.perf_counter() - t0:.1f} s")
    for c in result["clusters"]:
        out.print(
            f"cluster {c['id']}: {len(c['members'])} IPs at {c['as_name']} (AS{c['asn']}, {c['country']})"
            f" established sessions with {len(c['seeds'])} seeds",
            highlight=False,
        )
    for o in result["overlaps"]:
        out.print(f"overlap {o['clusters'][0]} / {o['clusters'][1]}: {o['count']} shared seeds", highlight=False)
    out.print(f"new infrastructure: {', '.join(e['ip'] for e in result['expansion']) or 'none'}", highlight=False)
    out.print(f"result: {result_path}")
    for kind, p in paths.items():
        out.print(f"{kind}: {p}")
    out.print(f"[bold]open the report:[/] {paths.get('html', out_dir / 'report.html')}")


def register(app: typer.Typer) -> None:
    app.command()(demo)

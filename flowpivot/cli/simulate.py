"""CLI for the simulate stage: ``flowpivot simulate fin7 --out DIR``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import typer

from .common import err, errors_as_exit, out


def simulate(
    scenario: Annotated[str, typer.Argument(help="Named scenario (preset): fin7.")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for exports/*.pcap, seeds.txt, asn.tsv, truth.json.")
    ],
    flows: Annotated[int | None, typer.Option(help="Exported flow records, approximately (default 3,000,000).")] = None,
    sampling: Annotated[int | None, typer.Option(help="1 in N packet sampling of the exporters (default 100).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; the same seed gives byte-identical files.")] = None,
    ipv6: Annotated[bool, typer.Option("--ipv6", help="Seeds, controllers and new infrastructure on IPv6.")] = False,
    days: Annotated[
        int | None, typer.Option(help="Days modelled before the suspension (it happens on the last one).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="JSON object of Scenario fields (counts, providers, noise, ...).")
    ] = None,
) -> None:
    """Write a simulated NetFlow v9 scenario with ground truth (truth.json) into --out."""
    from ..simulate import load_config, preset
    from ..simulate import simulate as run

    with errors_as_exit():
        sc = preset(scenario)
        if config is not None:
            sc = load_config(config, sc)
        over: dict[str, object] = {}
        if flows is not None:
            over["flows"] = flows
        if sampling is not None:
            over["sampling"] = sampling
        if seed is not None:
            over["seed"] = seed
        if ipv6:
            over["ipv6_seeds"] = True
        if days is not None:
            over["days"] = days
            over["dark_day"] = days
        sc = dataclasses.replace(sc, **over)  # type: ignore[arg-type]
        sc.validate()
        t0 = time.perf_counter()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("[bold]simulate[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=False,
        ) as bar:  # fmt: skip
            task = bar.add_task(f"{sc.name} days", total=sc.total_days)

            def progress(day: int, total: int, n: int) -> None:
                bar.update(task, completed=day, description=f"{sc.name}: {n:,} flows, day")

            truth = run(sc, out_dir, progress=progress)
    d = truth.data
    err.print(
        f"{d['flows']['exported']:,} flow records in {len(truth.files)} files, {time.perf_counter() - t0:.1f} s",
        highlight=False,
    )
    for c in d["clusters"]:
        p = c["provider"]
        out.print(
            f"cluster {c['id']}: {len(c['members'])} controllers at AS{p['asn']} {p['name']} ({p['country']}) with {len(c['seeds'])} seeds",
            highlight=False,
        )
    out.print(
        f"overlap: {d['overlap']['count']} seeds; new infrastructure: {len(d['new_infrastructure'])}; sampling 1:{d['sampling_rate']}",
        highlight=False,
    )
    out.print(
        f"exports: {out_dir / 'exports'}  seeds: {out_dir / 'seeds.txt'}  asn: {out_dir / 'asn.tsv'}  truth: {out_dir / 'truth.json'}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(simulate)

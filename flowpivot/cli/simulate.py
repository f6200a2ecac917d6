"""CLI for the simulate stage: ``flowpivot simulate fin7 --out DIR`` and ``flowpivot simulate library FAMILY --out DIR``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import typer

from .common import err, errors_as_exit, fail, out


def simulate(
    scenario: Annotated[
        str, typer.Argument(help="Named scenario (preset): fin7; or 'library' for a family of the scenario library.")
    ],
    family: Annotated[
        str | None, typer.Argument(help="With 'library': the family to draw (see --list).", show_default=False)
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Directory for exports/*.pcap, seeds.txt, asn.tsv, truth.json."),
    ] = None,
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
    draw: Annotated[int, typer.Option("--draw", help="With 'library': the draw number (same number, same files).")] = 0,
    size: Annotated[
        str, typer.Option("--size", help="With 'library': small (seconds, for tests) or realistic (0.5-3 M flows).")
    ] = "small",
    list_: Annotated[
        bool, typer.Option("--list", help="With 'library': list the families and what they cover.")
    ] = False,
) -> None:
    """Write a simulated NetFlow v9 scenario with ground truth (truth.json) into --out.

    `flowpivot simulate library FAMILY --draw N --out DIR` draws one world of a scenario-library family instead (NetFlow v9, IPFIX or Zeek exports, seeds, asn.tsv, truth.json).

    `flowpivot simulate library --list` lists the families.
    """
    if scenario == "library":
        _library(family, out_dir, draw, size, list_)
        return
    if family is not None:
        raise fail(f"unexpected argument {family!r}: only 'library' takes a family")
    if out_dir is None:
        raise fail("missing option --out: the directory to write the scenario into")
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


def _library(family: str | None, out_dir: Path | None, draw: int, size: str, list_: bool) -> None:
    from ..simulate.library import family_names, generate, load_family

    if list_:
        for name in family_names():
            fam = load_family(name)
            out.print(f"{name}: {'; '.join(fam['covers'])}", highlight=False, soft_wrap=True)
        return
    if family is None or out_dir is None:
        raise fail("usage: flowpivot simulate library FAMILY --out DIR [--draw N] [--size small|realistic], or --list")
    with errors_as_exit():
        t0 = time.perf_counter()
        try:
            truth = generate(family, draw, out_dir, size)
        except KeyError as e:
            raise ValueError(str(e.args[0])) from None
    err.print(
        f"{truth['records']:,} flow records in {len(truth['files'])} files, {time.perf_counter() - t0:.1f} s",
        highlight=False,
    )
    exp = truth["expect"]
    for i, c in enumerate(exp["clusters"]):
        out.print(
            f"cluster #{i}: {len(c['members'])} members at AS{c['asn']} with {len(c['seeds'])} seeds", highlight=False
        )
    out.print(
        f"overlaps: {len(exp['overlaps'])}; expansion: {len(exp['expansion'])}; victims: {len(exp['victims'])}; "
        f"probes: {len(exp['probes'])}; dark seeds: {len(exp['dark_seeds'])}; limits: {len(truth['limits'])}",
        highlight=False,
    )
    formats = ", ".join(f"{v['name']} {v['format']} 1:{v['sampling']}" for v in truth["vantages"])
    out.print(
        f"exports: {formats}; seeds: {', '.join(truth['seed_files'])}; truth: {Path(out_dir) / 'truth.json'}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(simulate)

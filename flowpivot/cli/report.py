"""CLI for the report stage: ``flowpivot report result.json --html F --md F --stix F --misp F --abuse DIR``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import err, errors_as_exit, fail, report_problems


def report(
    result: Annotated[Path, typer.Argument(help="Hunt result JSON written by `flowpivot hunt` (flowpivot-hunt/1).")],
    html: Annotated[Path | None, typer.Option("--html", help="Write the self-contained HTML report here.")] = None,
    md: Annotated[Path | None, typer.Option("--md", help="Write the Markdown summary here.")] = None,
    stix: Annotated[Path | None, typer.Option("--stix", help="Write a STIX 2.1 bundle (JSON) here.")] = None,
    misp: Annotated[Path | None, typer.Option("--misp", help="Write a MISP event (JSON) here.")] = None,
    abuse: Annotated[
        Path | None,
        typer.Option("--abuse", help="Write one abuse letter per provider into this directory (abuse-AS<n>.txt)."),
    ] = None,
    tlp: Annotated[
        str, typer.Option("--tlp", help="Traffic Light Protocol 2.0 level: clear, green, amber, amber+strict or red.")
    ] = "amber",
    actor: Annotated[
        list[str] | None,
        typer.Option(
            "--actor",
            help="Threat actor: NAME (everything is attributed to it) or NAME=SET[,SET...] (only the seeds of those "
            "seed sets and the clusters and new hosts resting on them). Adds a STIX intrusion-set and MISP galaxy "
            "tags. Repeat for several actors.",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse a result with any bad entry (an address that is not canonical, an IPv6 scope id, a bad "
            "time): list them and exit 2 without writing. By default they are left out with a warning.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print what was written as JSON ({"html": PATH, ...}) on stdout.')
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not list the files written.")] = False,
) -> None:
    """Turn a hunt result into an HTML report, a Markdown summary, STIX, MISP and abuse letters.

    With no output option the Markdown summary goes to standard output.
    """
    from ..report import load_result, read_result, render_markdown, write_reports

    with errors_as_exit():
        rep = read_result(load_result(result), source=str(result))
        report_problems(rep.problems)
        if strict and rep.problems:
            raise fail(f"{result}: {len(rep.problems)} bad entries (--strict): nothing written", code=2)
        if not any((html, md, stix, misp, abuse)):
            sys.stdout.write(render_markdown(rep, tlp=tlp, actor=actor))
            return
        written = write_reports(rep, html=html, md=md, stix=stix, misp=misp, abuse_dir=abuse, tlp=tlp, actor=actor)
    if not written:
        raise fail("nothing written")
    if as_json:
        sys.stdout.write(json.dumps({k: str(v) for k, v in written.items()}, indent=2) + "\n")
    elif not quiet:
        for kind, path in written.items():
            err.print(f"wrote {kind}: {path}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)

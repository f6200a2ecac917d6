"""CLI for the hunt stage: ``flowpivot hunt``, a thin layer over :func:`flowpivot.hunt.hunt`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .common import err, errors_as_exit, out, report_problems


def hunt_command(
    store: Annotated[Path, typer.Option("--store", "-s", help="Flow store directory.")],
    seeds: Annotated[
        list[Path],
        typer.Option(
            "--seeds",
            help="Seed file: text (defanged, CIDR, ip:port), CSV with an ip column, STIX 2.1, MISP event JSON, maltrail. Repeat, or list more files after it.",
        ),
    ],
    more_seeds: Annotated[list[Path] | None, typer.Argument(help="More seed files.", show_default=False)] = None,
    asn_db: Annotated[
        list[Path] | None, typer.Option("--asn-db", help="ASN database (ip2asn TSV, MMDB, pfx2as). Repeat for several.")
    ] = None,
    whois: Annotated[
        Path | None, typer.Option("--whois", help="RPSL whois dump: group clusters by allocation, not only by ASN.")
    ] = None,
    allowlist: Annotated[
        Path | None,
        typer.Option("--allowlist", help="CIDRs and ASNs that are not actor infrastructure, each with a reason."),
    ] = None,
    days: Annotated[
        float, typer.Option("--days", help="Window length, ending at the newest flow (or at --until).")
    ] = 30,
    since: Annotated[str | None, typer.Option("--since", help="Window start (ISO 8601 or epoch seconds).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Window end (ISO 8601 or epoch seconds).")] = None,
    hops: Annotated[int, typer.Option("--hops", min=0, help="Expansion depth from cluster members.")] = 1,
    min_seeds: Annotated[
        int,
        typer.Option("--min-seeds", min=1, help="Seeds a peer must have established sessions with to be clustered."),
    ] = 2,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the result JSON here (default: stdout).")
    ] = None,
    no_index: Annotated[
        bool, typer.Option("--no-index", help="Scan the store even when its address index is usable (same result).")
    ] = False,
) -> None:
    """Pivot from seed addresses to the actor's other infrastructure: clusters, overlaps, new hosts, victims."""
    from ..hunt import hunt

    files = list(seeds) + list(more_seeds or [])
    with errors_as_exit():
        with err.status("hunting") as status:
            result = hunt(
                store,
                files,
                asn_dbs=list(asn_db or []),
                whois=whois,
                allowlist=allowlist,
                days=days,
                since=since,
                until=until,
                hops=hops,
                min_seeds=min_seeds,
                use_index=not no_index,
                progress=lambda step: status.update(f"hunting: {step} done"),
            )
    problems = result["seed_input"]["problems"] + result["allowlist"]["problems"]
    if problems:
        from ..errors import Problem

        report_problems([Problem(**p) for p in problems])
    text = json.dumps(result, indent=2)
    if output:
        output.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    _summary(result, output)


def _summary(r: dict[str, Any], output: Path | None) -> None:
    # The summary goes to stderr when the JSON itself goes to stdout.
    con = out if output else err
    seeds = r["seeds"]
    status = {k: sum(1 for s in seeds if s["status"] == k) for k in ("active", "dark", "unseen")}
    con.print(
        f"window {r['window']['start']} .. {r['window']['end']}: {len(seeds)} seeds "
        f"({status['active']} active, {status['dark']} dark, {status['unseen']} unseen), "
        f"{r['provenance']['flows_in_window']:,} flows",
        highlight=False,
    )
    t = Table(title="clusters", show_lines=False)
    for col in ("id", "provider", "members", "seeds", "initiator", "services", "first seen", "last seen", "score"):
        t.add_column(col)
    for c in r["clusters"]:
        prov = f"AS{c['asn']} {c['as_name'] or ''} {c['country'] or ''}".strip() if c["asn"] is not None else "unknown"
        svc = ", ".join(f"{s['port']}/{ {6: 'tcp', 17: 'udp'}.get(s['proto'], s['proto']) }" for s in c["services"][:3])
        t.add_row(
            c["id"],
            prov,
            str(len(c["members"])),
            str(len(c["seeds"])),
            c["initiator"],
            svc,
            c["first_seen"][:10],
            c["last_seen"][:10],
            f"{c['score']:.2f}",
        )
    con.print(t)
    for o in r["overlaps"]:
        con.print(
            f"overlap {o['clusters'][0]}/{o['clusters'][1]}: {o['count']} shared seeds, Jaccard {o['jaccard']:.2f}",
            highlight=False,
        )
    if r["expansion"]:
        con.print(
            "new infrastructure: " + ", ".join(f"{e['ip']} (AS{e['asn']})" for e in r["expansion"]), highlight=False
        )
    if r["victims"]:
        con.print(
            "victims: "
            + ", ".join(
                f"{v['ip']} -> {','.join(v['seeds'])}:{v['port']} every {v['interval_s']:g}s" for v in r["victims"]
            ),
            highlight=False,
        )
    reasons: dict[str, int] = {}
    for e in r["excluded"]:
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    if reasons:
        con.print("excluded: " + ", ".join(f"{n} {k}" for k, n in sorted(reasons.items())), highlight=False)
    if output:
        con.print(f"result: {output}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("hunt")(hunt_command)


__all__ = ["register", "hunt_command"]

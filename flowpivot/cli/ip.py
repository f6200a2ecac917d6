"""CLI for address profiles: ``flowpivot ip ADDR... --store DIR``, a thin layer over :func:`flowpivot.profile.profile`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..errors import EXIT_NOTHING
from .common import err, errors_as_exit, fail, out


def _t(v: Any) -> Text:
    """A value for the terminal: control characters made visible, no markup."""
    if v is None:
        return Text("-", style="dim")
    s = str(v)
    return Text("".join(c if c.isprintable() else repr(c)[1:-1] for c in s))


def _n(v: Any) -> str:
    return f"{int(v):,}" if v is not None else "-"


def ip(
    addrs: Annotated[list[str], typer.Argument(help="Addresses to profile (IPv4 or IPv6).", show_default=False)],
    store: Annotated[Path, typer.Option("--store", "-s", help="Flow store directory.")],
    asn_db: Annotated[
        list[Path] | None, typer.Option("--asn-db", help="ASN database (ip2asn TSV, MMDB, pfx2as). Repeat for several.")
    ] = None,
    whois: Annotated[
        Path | None, typer.Option("--whois", help="RPSL whois dump: the allocation chain (and a reseller).")
    ] = None,
    result: Annotated[
        Path | None, typer.Option("--result", help="A hunt result (flowpivot-hunt/1): what the hunt made of it.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only flows that start at or after this time.")] = None,
    until: Annotated[str | None, typer.Option(help="Only flows that start before this time.")] = None,
    window: Annotated[
        str | None,
        typer.Option(help="A duration (30d, 12h) ending at the store's newest flow. Default: the whole store."),
    ] = None,
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="Peers to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the profiles as JSON (flowpivot-ip/1).")] = False,
) -> None:
    """Everything your flows say about an address: owner, activity, peers with session state, and its hunt status.

    Example: flowpivot ip 87.236.146.32 --store flows --asn-db iptoasn.mmdb --result result.json
    """
    from ..profile import profile

    res = None
    if result is not None:
        try:
            res = json.loads(result.read_text())
        except (OSError, ValueError) as e:
            raise fail(f"--result {result}: {e}") from None
    if since and window:
        raise fail("give --window or --since, not both")
    with errors_as_exit():
        profiles = profile(
            store, addrs, asn_dbs=list(asn_db or []), whois=whois, result=res,
            since=since, until=until, window=window, top=top,
        )  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(profiles if len(profiles) > 1 else profiles[0], indent=2) + "\n")
    else:
        for p in profiles:
            print_profile(p)
    if all(p["activity"] is None for p in profiles):
        err.print(
            f"warning: no flow in {profiles[0]['window']['start']} .. {profiles[0]['window']['end']} has "
            + ("this address" if len(profiles) == 1 else "any of these addresses"),
            highlight=False,
            markup=False,
        )
        raise typer.Exit(EXIT_NOTHING)


def print_profile(p: dict[str, Any]) -> None:
    o = p["owner"]
    head = Text(p["ip"], style="bold")
    if o.get("special"):
        sp = o["special"]
        head.append(f"  {sp['name']} ({sp['range']}, {sp['rfc']})", style="yellow")
    elif o.get("asn"):
        head.append(f"  AS{o['asn']} ")
        head.append_text(_t(o.get("as_name")))
        head.append(f"  {o.get('country') or '-'}  {o.get('prefix') or ''}")
    elif o.get("status") is None:
        head.append("  owner unknown: give --asn-db", style="dim")
    else:
        head.append("  unrouted: no database announces it", style="dim")
    out.print(head)
    for x in o.get("allocation") or []:
        line = Text("  allocation: ")
        line.append_text(
            _t(f"{x.get('netname') or '?'} [{x.get('status') or '?'}] {x.get('org_name') or ''} {x.get('range') or ''}")
        )
        out.print(line)
    if o.get("reseller"):
        r = o["reseller"]
        out.print(Text("  reseller: ").append_text(_t(r.get("org_name") or r.get("org") or r.get("netname"))))
    a = p["activity"]
    w = p["window"]
    if a is None:
        out.print(Text(f"  no flows in {w['start']} .. {w['end']}", style="dim"))
    else:
        rates = ", ".join(f"1:{r}" for r in a["sampling_rates"])
        out.print(
            f"  seen {a['first_seen']} .. {a['last_seen']} on {len(a['days'])} day(s): {_n(a['flows'])} flows "
            f"({_n(a['flows_as_source'])} as source), {_n(a['packets'])} packets, {_n(a['bytes'])} bytes exported; "
            f"estimated {_n(a['packets_est'])} packets, {_n(a['bytes_est'])} bytes (sampling {rates}); "
            f"{_n(a['peers'])} peers",
            highlight=False,
            markup=False,
        )
        if a["days"]:
            top = max(d["flows"] for d in a["days"])
            spark = "".join(" ▁▂▃▄▅▆▇█"[min(8, round(8 * d["flows"] / top))] for d in a["days"][-60:])
            out.print(
                f"  flows per active day (last {min(60, len(a['days']))}): {spark}", highlight=False, markup=False
            )
    if p["peers"]:
        t = Table(
            title=f"top {len(p['peers'])} of {p['peers_total']:,} peers (by estimated bytes)", title_justify="left"
        )
        for c in ("peer", "AS", "dir", "session", "ports", "flags out/in", "flows", "bytes est", "first .. last seen"):
            t.add_column(c, justify="right" if c in ("flows", "bytes est") else "left", overflow="fold")
        for q in p["peers"]:
            ports = ", ".join(
                f"{x['proto']}/{x['port']}" + ("" if x["side"] == "peer" else "*") for x in q["ports"][:3]
            )
            asn = q.get("special") or (f"AS{q['asn']} {q.get('as_name') or ''}".strip() if q.get("asn") else "-")
            t.add_row(
                _t(q["ip"]), _t(asn[:40]), q["direction"], q["session"], ports or "-",
                f"{q['flags_out']} {q['flags_in']}", _n(q["flows"]), _n(q["bytes_est"]),
                f"{(q['first_seen'] or '')[:16]} .. {(q['last_seen'] or '')[:16]}",
            )  # fmt: skip
        out.print(t)
        out.print(
            Text(
                "  dir: out = it opened the sessions, in = the peer did; ports: the peer's service (* its own)",
                style="dim",
            )
        )
    h = p.get("hunt")
    if h:
        for r in h["roles"]:
            role = r["role"]
            extra = {
                "seed": lambda r: f"status {r.get('status')}, sets {', '.join(r.get('sets') or []) or '-'}",
                "member": lambda r: (
                    f"of cluster {r.get('cluster')} (AS{r.get('asn')}, {r.get('seeds')} seeds), "
                    f"confidence {r.get('confidence')}"
                ),
                "seed-of-cluster": lambda r: f"of cluster {r.get('cluster')} ({r.get('members')} members)",
                "excluded": lambda r: f"as {r.get('reason')}: {(r.get('detail') or {}).get('detail', '')}",
                "near-miss": lambda r: f"{r.get('reason') or ''} {(r.get('detail') or {}).get('detail', '')}",
                "victim": lambda r: _contact(r.get("detail") or {}, "connections"),
                "probe": lambda r: (
                    f"{(r.get('detail') or {}).get('kind', '')}: " + _contact(r.get("detail") or {}, "attempts")
                ),
                "new-infrastructure": lambda r: (
                    f"contacted by {', '.join(map(str, (r.get('detail') or {}).get('contacted_by') or []))}"
                ),
            }.get(role, lambda r: "")(r)
            out.print(Text("  hunt: ").append_text(_t(f"{role} {extra}".strip())))
    out.print()


def _contact(d: dict[str, Any], count: str) -> str:
    """A victim's or probe's contact with its seed: where, in what state, how often."""
    given = d.get("seeds")
    seeds: list[Any] = given if isinstance(given, list) else [d.get("seed")]
    where = f"of {','.join(str(x) for x in seeds if x)}:{d.get('port', '?')}"
    return f"{where}, {d.get('state') or '?'}, {_n(d.get(count))} {count}"


def register(app: typer.Typer) -> None:
    app.command()(ip)

"""CLI for the enrich stage: ``flowpivot enrich``, a thin layer over :class:`flowpivot.enrich.Enricher`."""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..errors import Problem
from .common import err, errors_as_exit, fail, out, report_problems

MAX_CELL = 80


def _safe(v: Any) -> Text:
    """A value for the terminal: control characters shown escaped, never interpreted (no markup)."""
    if v is None:
        return Text("-", style="dim")
    s = str(v)
    s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
    if len(s) > MAX_CELL:
        s = s[: MAX_CELL - 1] + "…"
    return Text(s)


def _read_ip_file(path: str, problems: list[Problem]) -> list[str]:
    """Addresses, one a line (first field; ``#`` comments and blank lines skipped). ``-`` is stdin."""
    fh = sys.stdin.buffer if path == "-" else open(path, "rb")
    ips: list[str] = []
    try:
        for n, raw in enumerate(fh, 1):
            line = raw.decode("utf-8", "replace").split("#", 1)[0].strip()
            if not line:
                continue
            token = line.replace(",", " ").split()[0]
            try:
                ips.append(str(ipaddress.ip_address(token)))
            except ValueError:
                problems.append(Problem(path, f"line {n}", f"not an IP address: {token[:60]!r}"))
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
    return ips


def enrich(
    ips: Annotated[
        list[str] | None, typer.Argument(help="Addresses to look up (IPv4 or IPv6).", show_default=False)
    ] = None,
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="Read addresses from this file, one a line ('-' for stdin).")
    ] = None,
    asn_db: Annotated[
        list[Path] | None,
        typer.Option(
            "--asn-db",
            help="ASN/country database: MMDB, ip2asn TSV, pfx2as or as2org (repeat to layer; the first given wins). Default: $FLOWPIVOT_ASN_DB.",
        ),
    ] = None,
    whois: Annotated[
        list[Path] | None,
        typer.Option(
            "--whois",
            help="RPSL whois dump file or directory of split dumps (indexed once, then reused), or a built index.",
        ),
    ] = None,
    rdap: Annotated[
        bool,
        typer.Option(
            "--rdap", help="Ask RDAP (network) for addresses the whois data does not cover; answers are cached."
        ),
    ] = False,
    rdap_url: Annotated[str, typer.Option("--rdap-url", help="RDAP base URL.")] = "https://rdap.org",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of answers instead of a table.")] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Where flattened databases and the whois index are kept. Default: $FLOWPIVOT_CACHE_DIR, else $XDG_CACHE_HOME/flowpivot.",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Rebuild the lookup tables instead of using the cache.")
    ] = False,
    store: Annotated[
        Path | None,
        typer.Option("--store", "-s", help="Flow store: add each address's first and last seen, flows and peers."),
    ] = None,
) -> None:
    """Look up who holds addresses: ASN, AS name, country, prefix and the whois allocation chain (with the reseller).

    Example: flowpivot enrich 5.133.76.1 91.199.147.152 --asn-db iptoasn.mmdb --whois ripe-dumps/
    """
    from ..enrich import Enricher

    problems: list[Problem] = []
    addrs = list(ips or [])
    if file:
        addrs += _read_ip_file(file, problems)
    if not addrs:
        raise fail("give addresses as arguments or with --file")
    dbs = list(asn_db or [])
    if not dbs and os.environ.get("FLOWPIVOT_ASN_DB"):
        dbs = [Path(p) for p in os.environ["FLOWPIVOT_ASN_DB"].split(os.pathsep) if p]
    if not dbs and not whois and not rdap:
        raise fail("give at least one --asn-db (or set FLOWPIVOT_ASN_DB), --whois or --rdap")
    with errors_as_exit():
        enr = Enricher.open(
            dbs, whois if whois else None, rdap=rdap, cache_dir=cache_dir, rdap_base=rdap_url, use_cache=not no_cache
        )
        answers = enr.lookup(addrs)
    for s in enr.sources:
        err.print(
            f"source: {s['name']} ({s['kind']}, {s['entries'] if s['entries'] is not None else '?'} entries"
            + (f", built {s['build_date']}" if s.get("build_date") else "")
            + f") {s['path']}",
            markup=False,
            highlight=False,
        )
    problems.extend(enr.problems)
    if store is not None:
        from ..profile import profile

        valid = [a["ip"] for a in answers if a["status"] != "invalid"]
        with errors_as_exit():
            seen = {p["ip"]: p["activity"] for p in profile(store, valid, top=1)} if valid else {}
        for a in answers:
            act = seen.get(a["ip"]) or {}
            a["first_seen"], a["last_seen"] = act.get("first_seen"), act.get("last_seen")
            a["flows"], a["peers"] = act.get("flows", 0), act.get("peers", 0)
    for a in answers:
        if a["status"] == "invalid":
            problems.append(Problem("arguments", repr(a["ip"])[:60], "not an IP address"))
    report_problems(problems)
    enr.close()
    if as_json:
        sys.stdout.write(json.dumps(answers, indent=2, ensure_ascii=True) + "\n")
        return
    with_chain = any(a["allocation"] for a in answers)
    srcs = {a["source"] for a in answers if a["status"] != "invalid"}
    cols = ["ip", "asn", "as_name", "country", "prefix", "status"] + (["source"] if len(srcs) > 1 else [])
    cols += ["allocation (most specific first)", "reseller", "abuse"] if with_chain else []
    cols += ["flows", "peers", "first seen", "last seen"] if store is not None else []
    t = Table(title_justify="left", caption=f"source: {srcs.pop()}" if len(srcs) == 1 else None, caption_justify="left")
    for c in cols:
        t.add_column(c, overflow="fold")
    for a in answers:
        chain = " < ".join(
            f"{x.get('netname') or '?'} [{x.get('status') or '?'}] {x.get('org_name') or ''}".strip()
            for x in a["allocation"]
        )
        res = a.get("reseller")
        cells = {
            "ip": a["ip"],
            "asn": a["asn"] and f"AS{a['asn']}",
            "as_name": a["as_name"],
            "country": a["country"],
            "prefix": a["prefix"],
            "status": a["status"] + (f" ({a['special']['name']}, {a['special']['rfc']})" if a.get("special") else ""),
            "source": a["source"],
            "flows": a.get("flows"),
            "peers": a.get("peers"),
            "first seen": a.get("first_seen"),
            "last seen": a.get("last_seen"),
            "allocation (most specific first)": chain or None,
            "reseller": res and (res.get("org_name") or res.get("org") or res.get("netname")),
            "abuse": a.get("abuse_mailbox"),
        }
        t.add_row(*(_safe(cells[c]) for c in cols))
    out.print(t)


def register(app: typer.Typer) -> None:
    app.command()(enrich)

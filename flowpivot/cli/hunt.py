"""CLI for the hunt stage: ``flowpivot hunt``, a thin layer over :func:`flowpivot.hunt.hunt`.

Every field of :class:`~flowpivot.hunt.params.HuntParams` is an option named after it
(``min_seeds`` -> ``--min-seeds``; a boolean ``use_index`` -> ``--use-index/--no-index``), with
its help from ``PARAM_HELP``; the options are made from the dataclass, so a new field is a new
option without touching this file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import sys
import types
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import EXIT_NOTHING
from ..hunt.params import PARAM_HELP, HuntParams
from ..textsafe import visible
from .common import err, errors_as_exit, out, report_problems

__all__ = ["register", "hunt_command", "summary_lines"]

PANEL = "Hunt parameters"
ENGINE_PANEL = "Engine"
# Option names that differ from --field-name (kept from before the parameters were one dataclass).
_DECLS = {"use_index": "--use-index/--no-index"}
# Bounds click checks before the hunt starts.
_BOUNDS: dict[str, dict[str, int]] = {
    "days": {"min": 0},
    "hops": {"min": 0},
    "min_seeds": {"min": 1},
    "min_members": {"min": 1},
    "alpha": {"min": 0, "max": 1},
    "min_specificity": {"min": 0, "max": 1},
    "similarity": {"min": 0, "max": 1},
    "local_prefix_v4": {"min": 0, "max": 32},
    "small_connection_packets": {"min": 1},
    "victim_max_seeds": {"min": 0},
    "min_beacon_starts": {"min": 1},
    "probe_min_attempts": {"min": 1},
    "burst_span_s": {"min": 0},
    "max_pairs": {"min": 0},
    "max_near_misses": {"min": 0},
    "threads": {"min": 1},
}
_NO_LIMIT = ("", "none", "off")  # --memory-limit none: let DuckDB use what it likes


def _cli_type(hint: Any) -> tuple[Any, bool]:
    """The type click parses a field as, and whether it may be None. A field that takes a number
    or a string (``since: int | str | None``) is read as a string: the library parses both."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else ()
    if not args:
        return hint, False
    rest = [a for a in args if a is not type(None)]
    base = str if str in rest else rest[0]
    return base, len(rest) < len(args)


def _param_options() -> list[inspect.Parameter]:
    """One keyword parameter per HuntParams field, annotated for typer."""
    hints = typing.get_type_hints(HuntParams)
    opts = []
    for f in dataclasses.fields(HuntParams):
        if f.name == "extra":
            continue
        base, optional = _cli_type(hints[f.name])
        decl = _DECLS.get(f.name, "--" + f.name.replace("_", "-"))
        if base is bool and "/" not in decl:
            decl = f"{decl}/--no-{decl.removeprefix('--')}"
        help_text = PARAM_HELP.get(f.name, f.name.replace("_", " "))
        if f.name == "memory_limit":
            help_text += " 'none': no limit."
        bounds = _BOUNDS.get(f.name, {})
        option = typer.Option(decl, help=help_text, rich_help_panel=PANEL, min=bounds.get("min"), max=bounds.get("max"))
        annotation = Annotated[base | None if optional else base, option]  # type: ignore[valid-type]
        opts.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=annotation))
    return opts


def _inputs(
    store: Annotated[
        str,
        typer.Option(
            "--store", "-s", help="Flow store directory (with --engine spark also a URL: s3a://, hdfs://, abfss://)."
        ),
    ],
    seeds: Annotated[
        list[str],
        typer.Option(
            "--seeds",
            help="Seed file, or NAME=FILE to put its seeds in the set NAME (a plain file's set is its stem); "
            "text (defanged, CIDR, ip:port), CSV with an ip column, STIX 2.1, MISP event JSON, maltrail. "
            "Repeat, or list more files after it.",
        ),
    ],
    more_seeds: Annotated[
        list[str] | None, typer.Argument(help="More seed files (FILE or NAME=FILE).", show_default=False)
    ] = None,
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
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the result JSON here (default: stdout).")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No summary and no progress: only the result JSON and warnings.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Query engine: duckdb (embedded) or spark (Apache Spark; docs/scale.md).",
            rich_help_panel=ENGINE_PANEL,
        ),
    ] = "duckdb",
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="Spark master URL (spark://HOST:7077, yarn, k8s://..., local[N]); default local[*].",
            rich_help_panel=ENGINE_PANEL,
        ),
    ] = None,
    spark_conf: Annotated[
        list[str] | None,
        typer.Option(
            "--spark-conf", help="A Spark setting KEY=VALUE. Repeat for several.", rich_help_panel=ENGINE_PANEL
        ),
    ] = None,
) -> None:
    """(Only its signature is used: the options that are not hunt parameters.)"""


class _Silent:
    """A status line that shows nothing (``--quiet``)."""

    def update(self, *_: Any) -> None:
        pass


def hunt_command(**kw: Any) -> None:
    """Pivot from seed addresses to the actor's other infrastructure: clusters, overlaps, new hosts, victims."""
    params = _params(kw)
    files = list(kw["seeds"]) + list(kw.get("more_seeds") or [])
    output: Path | None = kw.get("output")
    with errors_as_exit():
        with contextlib.nullcontext(_Silent()) if kw.get("quiet") else err.status("hunting") as status:
            result = _run(
                kw["store"],
                files,
                asn_dbs=list(kw.get("asn_db") or []),
                whois=kw.get("whois"),
                allowlist=kw.get("allowlist"),
                params=params,
                progress=lambda step: status.update(f"hunting: {step} done"),
                engine=_engine(kw),
            )
    problems = (result.get("seed_input") or {}).get("problems", []) + (result.get("allowlist") or {}).get(
        "problems", []
    )
    if problems:
        from ..errors import Problem

        report_problems([Problem(**p) for p in problems])
    warnings = result.get("warnings") or []
    for w in warnings:
        err.print(f"[yellow]warning:[/] {escape(w['message'])}", highlight=False, soft_wrap=True)
    text = json.dumps(result, indent=2)
    if output:
        output.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    # The summary goes to stderr when the JSON itself goes to stdout.
    if not kw.get("quiet"):
        print_summary(result, out if output else err, output)
    if any(w.get("nothing") for w in warnings):
        raise typer.Exit(EXIT_NOTHING)


_fixed = list(inspect.signature(_inputs, eval_str=True).parameters.values())
hunt_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    _fixed[:6] + [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in _param_options()] + _fixed[6:]
)


def _params(kw: dict[str, Any]) -> HuntParams:
    values = {name: kw[name] for name in HuntParams.names() if name in kw}
    if isinstance(values.get("memory_limit"), str) and values["memory_limit"].strip().lower() in _NO_LIMIT:
        values["memory_limit"] = None
    return HuntParams(**values)


def _engine(kw: dict[str, Any]) -> dict[str, Any]:
    """The engine options for the library (none for the default engine)."""
    engine = kw.get("engine") or "duckdb"
    if engine not in ("duckdb", "spark"):
        raise typer.BadParameter(f"--engine is duckdb or spark, not {engine!r}")
    if engine == "duckdb":
        if kw.get("spark_master") or kw.get("spark_conf"):
            raise typer.BadParameter("--spark-master and --spark-conf need --engine spark")
        return {}
    from ..spark.session import parse_conf

    try:
        conf = parse_conf(kw.get("spark_conf") or [])
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    return {"engine": "spark", "spark_master": kw.get("spark_master"), "spark_conf": conf}


def _run(
    store: str | Path,
    files: list[str],
    *,
    asn_dbs: list[Path],
    whois: Path | None,
    allowlist: Path | None,
    params: HuntParams,
    progress: Callable[[str], None],
    engine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Call the library: with ``params=`` when it takes it, else with the fields it takes as keywords
    (an engine from before HuntParams); a field it does not take is reported when it was changed."""
    from ..hunt import hunt

    common: dict[str, Any] = {"asn_dbs": asn_dbs, "whois": whois, "allowlist": allowlist, "progress": progress}
    common.update(engine or {})
    accepted = inspect.signature(hunt).parameters
    if "params" in accepted:
        return hunt(store, files, params=params, **common)
    defaults = HuntParams()
    kw = {k: getattr(params, k) for k in HuntParams.names() if k in accepted}
    ignored = [k for k in HuntParams.names() if k not in accepted and getattr(params, k) != getattr(defaults, k)]
    if ignored:
        names = ", ".join("--" + k.replace("_", "-") for k in ignored)
        err.print(f"warning: this hunt engine does not take {names} yet; ignored", markup=False, highlight=False)
    return hunt(store, files, **kw, **common)


# ---- the summary -----------------------------------------------------------------------------------------
# Written against any flowpivot-hunt/1 result, with or without the keys added later (probes,
# near_misses, victims' state, seeds' unanswered status): every key is read with a default.

TOP = 5  # probes, victims and near-misses listed by name; the rest are counted
_STATUSES = ("active", "dark", "unanswered", "unseen")


def _list(r: dict[str, Any], key: str) -> list[dict[str, Any]]:
    v = r.get(key)
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _n(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _proto(p: Any) -> str:
    return {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp"}.get(p, str(p)) if p is not None else "?"


def _more(n: int, shown: int) -> list[str]:
    return [f"  ... and {n - shown:,} more"] if n > shown else []


def _seed_line(r: dict[str, Any]) -> str:
    seeds = _list(r, "seeds")
    status = Counter(str(s.get("status") or "unseen") for s in seeds)
    parts = [f"{status.get(k, 0)} {k}" for k in _STATUSES]
    parts += [f"{n} {k}" for k, n in sorted(status.items()) if k not in _STATUSES]
    window: dict[str, Any] = r["window"] if isinstance(r.get("window"), dict) else {}
    flows = (r.get("provenance") or {}).get("flows_in_window")
    line = f"window {window.get('start', '?')} .. {window.get('end', '?')}: {len(seeds)} seeds ({', '.join(parts)})"
    return line + (f", {flows:,} flows" if isinstance(flows, int) else "")


def _sets_line(r: dict[str, Any]) -> list[str]:
    sets = (r.get("seed_input") or {}).get("sets")
    if not isinstance(sets, dict) or not sets:
        return []
    bits = [f"{name} ({_n(v.get('count')) if isinstance(v, dict) else '?'})" for name, v in sets.items()]
    return ["seed sets: " + ", ".join(bits)]


def _victim_lines(r: dict[str, Any]) -> list[str]:
    victims = _list(r, "victims")
    if not victims:
        return []
    lines = [f"victims: {len(victims)}"]
    for v in sorted(victims, key=lambda v: -_n(v.get("connections")))[:TOP]:
        seeds: list[Any] = v["seeds"] if isinstance(v.get("seeds"), list) else []
        line = f"  {v.get('ip', '?')} -> {','.join(map(str, seeds)) or '?'}:{v.get('port', '?')}"
        bits = []
        if v.get("state"):
            bits.append(str(v["state"]))
        if isinstance(v.get("connections"), int):
            bits.append(f"{v['connections']:,} connections")
        if isinstance(v.get("interval_s"), int | float):
            bits.append(f"every {v['interval_s']:,.0f}s")
        lines.append(line + (" " + ", ".join(bits) if bits else ""))
    return lines + _more(len(victims), TOP)


def _probe_lines(r: dict[str, Any]) -> list[str]:
    probes = _list(r, "probes")
    if not probes:
        return []
    kinds = Counter(str(p.get("kind") or "?") for p in probes)
    lines = [f"probes: {len(probes)} (" + ", ".join(f"{n} {k}" for k, n in kinds.most_common()) + ")"]
    for p in sorted(probes, key=lambda p: -_n(p.get("attempts")))[:TOP]:
        span = p.get("span_s")
        when = f" in {span:g} s" if isinstance(span, int | float) else ""
        lines.append(
            f"  {p.get('ip', '?')} -> {p.get('seed', '?')}:{p.get('port', '?')}/{_proto(p.get('proto'))} "
            f"{p.get('kind') or '?'}, {p.get('state') or '?'}, {_n(p.get('attempts')):,} attempts{when}"
        )
    return lines + _more(len(probes), TOP)


def _near_miss_lines(r: dict[str, Any]) -> list[str]:
    near = _list(r, "near_misses")
    total = r.get("near_misses_total")
    total = total if isinstance(total, int) and total >= len(near) else len(near)
    if not total:
        return []
    reasons = Counter(str(x.get("reason") or "?") for x in near)
    listed = f", {len(near)} listed" if len(near) < total else ""
    lines = [f"near misses: {total}{listed} (" + ", ".join(f"{n} {k}" for k, n in reasons.most_common()) + ")"]
    for x in near[:TOP]:
        detail = f": {x['detail']}" if x.get("detail") else ""
        lines.append(f"  {x.get('ip', '?')} {x.get('reason') or '?'}{detail}")
    return lines + _more(len(near), TOP)


def summary_lines(r: dict[str, Any]) -> list[str]:
    """The summary's plain lines (the clusters table aside), for any hunt result."""
    lines = [_seed_line(r), *_sets_line(r)]
    for o in _list(r, "overlaps"):
        ids: list[Any] = o["clusters"] if isinstance(o.get("clusters"), list) else []
        jac = o.get("jaccard")
        lines.append(
            f"overlap {'/'.join(map(str, ids))}: {_n(o.get('count'))} shared seeds"
            + (f", Jaccard {jac:.2f}" if isinstance(jac, int | float) else "")
        )
    expansion = _list(r, "expansion")
    if expansion:

        def host(e: dict[str, Any]) -> str:
            conf = e.get("confidence")
            return f"{e.get('ip', '?')} (AS{e.get('asn')}" + (
                f", confidence {conf:.2f})" if isinstance(conf, int | float) else ")"
            )

        lines.append("new infrastructure: " + ", ".join(host(e) for e in expansion))
    lines += _victim_lines(r) + _probe_lines(r) + _near_miss_lines(r)
    reasons = Counter(str(e.get("reason") or "?") for e in _list(r, "excluded"))
    if reasons:
        lines.append("excluded: " + ", ".join(f"{n} {k}" for k, n in sorted(reasons.items())))
    return lines


def _clusters_table(r: dict[str, Any]) -> Table | None:
    clusters = _list(r, "clusters")
    if not clusters:
        return None
    conf = any("confidence" in c for c in clusters)
    t = Table(title="clusters", show_lines=False)
    cols = ["id", "provider", "members", "seeds", "initiator", "services", "first seen", "last seen", "score"]
    for col in cols + (["confidence"] if conf else []):
        t.add_column(col)

    def num(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, int | float) else "–"

    for c in clusters:
        asn = c.get("asn")
        prov = f"AS{asn} {c.get('as_name') or ''} {c.get('country') or ''}".strip() if asn is not None else "unknown"
        svc = ", ".join(
            f"{s.get('port')}/{_proto(s.get('proto'))}" for s in (c.get("services") or [])[:3] if isinstance(s, dict)
        )
        row = [
            str(c.get("id", "?")),
            prov,
            str(len(c.get("members") or [])),
            str(len(c.get("seeds") or [])),
            str(c.get("initiator") or "–"),
            svc,
            str(c.get("first_seen") or "")[:10],
            str(c.get("last_seen") or "")[:10],
            num(c.get("score")),
        ] + ([num(c.get("confidence"))] if conf else [])
        t.add_row(*(Text(visible(x)) for x in row))  # Text: a value from the result is never markup
    return t


def _interval(s: Any) -> str:
    """A beacon interval that keeps its precision: 0.69 s, 42 s, 1,026 s, 2.5 h."""
    if not isinstance(s, int | float):
        return "-"
    if s < 10:
        return f"{s:.2g} s"
    if s < 3 * 3600:
        return f"{s:,.0f} s"
    return f"{s / 3600:.3g} h"


def _victims_table(r: dict[str, Any]) -> Table:
    """The victims as a table (the summary's plain lines list them one a line)."""
    t = Table(title_justify="left", show_edge=False, pad_edge=False)
    for c in ("victim", "seed:port", "state", "connections", "every", "first seen", "last seen"):
        t.add_column(c, justify="right" if c in ("connections", "every") else "left")
    victims = sorted(_list(r, "victims"), key=lambda v: -_n(v.get("connections")))
    for v in victims[:TOP]:
        seeds: list[Any] = v["seeds"] if isinstance(v.get("seeds"), list) else []
        every = v.get("interval_s")
        row = [
            str(v.get("ip", "?")),
            f"{','.join(map(str, seeds)) or '?'}:{v.get('port', '?')}",
            str(v.get("state") or "?"),
            f"{_n(v.get('connections')):,}",
            _interval(every),
            str(v.get("first_seen") or "")[:19],
            str(v.get("last_seen") or "")[:19],
        ]
        t.add_row(*(Text(visible(x)) for x in row))  # a value from the result: never markup, controls visible
    return t


def print_summary(r: dict[str, Any], con: Console, output: Path | None = None) -> None:
    lines = [visible(x) for x in summary_lines(r)]  # values from the result: controls made visible
    con.print(lines[0], markup=False, highlight=False, soft_wrap=True)
    table = _clusters_table(r)
    if table is not None:
        con.print(table)
    vl = _victim_lines(r)
    skip = set(range(lines.index(vl[0]) + 1, lines.index(vl[0]) + len(vl))) if vl and vl[0] in lines else set()
    for i, line in enumerate(lines[1:], 1):
        if i in skip:
            if i == min(skip):
                con.print(_victims_table(r))
                if len(_list(r, "victims")) > TOP:
                    con.print(_more(len(_list(r, "victims")), TOP)[0], markup=False, highlight=False)
            continue
        con.print(line, markup=False, highlight=False, soft_wrap=True)
    if output:
        con.print(f"result: {output}", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("hunt")(hunt_command)

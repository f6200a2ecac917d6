"""The workspace's HTTP API over the store: address profiles, flows, statistics and enrichment.

Each route is a thin layer over the library (flowpivot.profile, flowpivot.query, flowpivot.enrich),
answering the JSON the matching command prints with ``--json``. A request the library refuses (a
bad filter, a bad address, an unknown statistic) gets 400 with the library's own sentence.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from ..errors import FlowpivotError
from .config import Settings

__all__ = ["router", "Problem", "ERRORS", "bad_request", "classify_search"]


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The request is not valid (the reason is in detail)."},
    401: {"model": Problem, "description": "No valid workspace token."},
    403: {"model": Problem, "description": "Cross-site request or missing form token."},
    404: {"model": Problem, "description": "No such item."},
    413: {"model": Problem, "description": "Request body over the upload limit."},
    429: {"model": Problem, "description": "Too many hunts queued or running."},
}

router = APIRouter(prefix="/api", responses=ERRORS)


def settings_of(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def bad_request(e: Exception) -> HTTPException:
    return HTTPException(400, str(e) or type(e).__name__)


class Profile(BaseModel, extra="allow"):
    """An address's profile, ``flowpivot-ip/1`` (docs/ip.md)."""

    format: str
    ip: str
    window: dict[str, Any]
    owner: dict[str, Any]
    activity: dict[str, Any] | None
    peers: list[dict[str, Any]]
    peers_total: int


def ip_profile(
    settings: Settings,
    addr: str,
    *,
    since: str | None = None,
    until: str | None = None,
    window: str | None = None,
    top: int = 10,
    result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from ..profile import profile

    try:
        if since and window:
            raise ValueError("give window or since, not both")
        return profile(
            settings.store, [addr], asn_dbs=settings.asn_dbs, whois=settings.whois, result=result,
            since=since, until=until, window=window, top=top,
        )[0]  # fmt: skip
    except (FlowpivotError, ValueError) as e:
        raise bad_request(e) from None


@router.get("/ip/{addr}", response_model=Profile, summary="Everything the flows say about an address")
def get_ip(
    request: Request,
    addr: str,
    since: Annotated[str | None, Query(description="Only flows that start at or after this time.")] = None,
    until: Annotated[str | None, Query(description="Only flows that start before this time.")] = None,
    window: Annotated[str | None, Query(description="A duration (30d, 12h) ending at the newest flow.")] = None,
    top: Annotated[int, Query(ge=1, le=1000, description="Peers to list.")] = 10,
    hunt: Annotated[str | None, Query(description="A workspace hunt id: what that hunt made of it.")] = None,
) -> dict[str, Any]:
    """``flowpivot ip ADDR --json``: owner, activity per day, peers with session state, hunt roles."""
    s = settings_of(request)
    result = None
    if hunt:
        h = request.app.state.jobs.get(hunt)
        if h is None:
            raise HTTPException(404, f"no hunt {hunt!r}")
        result = h.result()
    return ip_profile(s, addr, since=since, until=until, window=window, top=top, result=result)


class Flows(BaseModel):
    flows: list[dict[str, Any]]
    count: int
    limit: int


def select(
    settings: Settings,
    filter_expr: str | None,
    ips: list[str] | None,
    port: int | None,
    since: str | None,
    until: str | None,
) -> tuple[Any, Any, int | None, int | None]:
    from ..query import AsnTable, flows_filter
    from ..store import parse_time

    lo = parse_time(since) if since else None
    hi = parse_time(until) if until else None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"since {since} is after until {until}")
    asn = AsnTable.open(settings.asn_dbs) if settings.asn_dbs and filter_expr and "as" in filter_expr else None
    return flows_filter(filter_expr, ips, port, asn), asn, lo, hi


def flows_json(
    settings: Settings,
    filter_expr: str | None = None,
    ips: list[str] | None = None,
    port: int | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    from ..query import select_flows
    from ..store.check import require_store
    from ..store.export import text_table

    try:
        st = require_store(settings.store)
        node, _, lo, hi = select(settings, filter_expr, ips, port, since, until)
        table = select_flows(st, node, lo, hi, limit)
    except (FlowpivotError, ValueError) as e:
        raise bad_request(e) from None
    except Exception as e:  # DuckDB refusing a value of the filter (an out-of-range number)
        if type(e).__module__.startswith("duckdb"):
            raise bad_request(e) from None
        raise
    rows = [{k: v for k, v in r.items() if v is not None} for r in text_table(table).to_pylist()]
    return {"flows": rows, "count": len(rows), "limit": limit}


FilterQ = Annotated[
    str | None, Query(alias="filter", description="nfdump filter, e.g. 'dst port 443 and not net 10.0.0.0/8'.")
]
IpQ = Annotated[list[str] | None, Query(description="Address or CIDR on either side; repeat for any of several.")]
PortQ = Annotated[int | None, Query(ge=0, le=65535, description="Port on either side.")]
SinceQ = Annotated[str | None, Query(description="Only flows that end at or after this time (ISO 8601 or epoch).")]
UntilQ = Annotated[str | None, Query(description="Only flows that start before this time.")]


@router.get("/flows", response_model=Flows, summary="Flows matching an nfdump-style filter, oldest first")
def get_flows(
    request: Request,
    filter_expr: FilterQ = None,
    ip: IpQ = None,
    port: PortQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> dict[str, Any]:
    """``flowpivot flows -f EXPR --json``: canonical flow records (docs/flows.md)."""
    return flows_json(settings_of(request), filter_expr, ip, port, since, until, limit)


class Stat(BaseModel):
    field: str
    order: str
    rows: list[dict[str, Any]]
    totals: dict[str, int]


class Stats(BaseModel):
    stats: list[Stat]


def stats_json(
    settings: Settings,
    stat: list[str],
    filter_expr: str | None = None,
    ips: list[str] | None = None,
    port: int | None = None,
    since: str | None = None,
    until: str | None = None,
    top: int = 10,
) -> dict[str, Any]:
    from ..query import AsnTable, parse_stats, top_n, where_sql
    from ..store.check import require_store

    try:
        st = require_store(settings.store)
        specs = [spec for s in stat for spec in parse_stats(s)]
        node, asn, lo, hi = select(settings, filter_expr, ips, port, since, until)
        if asn is None and settings.asn_dbs and any(sp.field.endswith("as") for sp in specs):
            asn = AsnTable.open(settings.asn_dbs)
        where, params = where_sql(node, lo, hi)
        con = st.connect()
        out = []
        for spec in specs:
            rows, totals = top_n(con, spec, where, params, top, asn)
            out.append({"field": spec.field, "order": spec.order, "rows": rows, "totals": totals})
    except (FlowpivotError, ValueError) as e:
        raise bad_request(e) from None
    except Exception as e:
        if type(e).__module__.startswith("duckdb"):
            raise bad_request(e) from None
        raise
    return {"stats": out}


@router.get("/stats", response_model=Stats, summary="Top-N statistics as nfdump -s")
def get_stats(
    request: Request,
    stat: Annotated[list[str], Query(min_length=1, description="FIELD or FIELD/ORDER: srcip/bytes, dstport ...")],
    filter_expr: FilterQ = None,
    ip: IpQ = None,
    port: PortQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    top: Annotated[int, Query(ge=0, le=10000, description="Rows per statistic (0 = all).")] = 10,
) -> dict[str, Any]:
    """``flowpivot flows -s FIELD/ORDER -n N -o jsonl``: value, first, last, flows, packets, bytes."""
    return stats_json(settings_of(request), stat, filter_expr, ip, port, since, until, top)


_enricher: dict[int, Any] = {}
_enricher_lock = threading.Lock()


def enricher(settings: Settings) -> Any:
    """The workspace's one Enricher (opening the databases takes seconds: done once)."""
    from ..enrich import Enricher

    with _enricher_lock:
        key = id(settings)
        if key not in _enricher:
            _enricher[key] = Enricher.open(settings.asn_dbs, settings.whois)
        return _enricher[key]


class Answer(BaseModel, extra="allow"):
    ip: str
    status: str


@router.get("/enrich", response_model=list[Answer], summary="Who holds addresses: ASN, name, country, allocation")
def get_enrich(
    request: Request,
    ip: Annotated[list[str], Query(min_length=1, max_length=10000, description="Addresses to look up.")],
) -> list[dict[str, Any]]:
    """``flowpivot enrich ADDR... --json`` with the workspace's --asn-db and --whois."""
    s = settings_of(request)
    if not s.asn_dbs and not s.whois:
        raise HTTPException(400, "the workspace was started without --asn-db or --whois: nothing to look up")
    try:
        answers: list[dict[str, Any]] = enricher(s).lookup(list(ip))
    except (FlowpivotError, ValueError) as e:
        raise bad_request(e) from None
    return answers


def classify_search(q: str) -> tuple[str, str]:
    """What the search box was given: ("ip", canonical address), ("cidr", network) or ("filter", text)."""
    from ..profile import canonical_ip

    t = q.strip()
    try:
        return "ip", canonical_ip(t)
    except ValueError:
        pass
    if "/" in t and " " not in t:
        try:
            return "cidr", str(ipaddress.ip_network(t, strict=False))
        except ValueError:
            pass
    return "filter", t

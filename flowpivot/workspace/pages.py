"""The workspace's pages, server-rendered with Jinja2 (autoescaped, controls made visible), over the
same functions as the API. Forms post here (not to /api) and carry the form token."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import ChainableUndefined, Environment, PackageLoader, Undefined
from markupsafe import Markup

from ..textsafe import visible
from . import charts
from .api import classify_search, flows_json, ip_profile, settings_of, stats_json
from .api_hunts import ExportIn, HuntParamsIn, hunt_or_404, jobs_of, start_hunt, write_export
from .config import PathRefused, upload_name

__all__ = ["router", "render"]

router = APIRouter(include_in_schema=False)


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def _num(v: Any) -> str:
    """A count with thousands separators; nothing for a missing value (an unseen seed has no flows)."""
    if v is None or isinstance(v, Undefined):
        return ""
    try:
        return f"{int(v):,}"
    except (TypeError, ValueError):
        return str(v)


def _iso_ms(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iplink(ip: Any, hunt: str | None = None) -> str:
    q = f"?{urlencode({'hunt': hunt})}" if hunt else ""
    return f"/ip/{quote(str(ip), safe='')}{q}"


@cache
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("flowpivot.workspace", "templates"),
        autoescape=True,
        undefined=ChainableUndefined,  # result fields are optional: a missing one shows nothing
        finalize=_finalize,
    )
    env.filters["num"] = _num
    env.filters["iplink"] = _iplink
    env.filters["t"] = visible
    return env


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    s = settings_of(request)
    html = _env().get_template(name).render(csrf=s.form_token, store=str(s.store), request_path=request.url.path, **ctx)
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def _error(request: Request, e: HTTPException) -> HTMLResponse:
    return render(request, "error.html", status=e.status_code, detail=str(e.detail))


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    from ..store.check import require_store

    s = settings_of(request)
    files: int | str
    try:
        st = require_store(s.store)
        rng = st.time_range()
        span = tuple(_iso_ms(x) for x in rng) if rng else None
        files = len(st.files())
    except Exception as e:  # a store that cannot be read is said on the page
        span, files = None, f"unreadable: {e}"
    return render(request, "index.html", hunts=jobs_of(request).all()[:20], span=span, files=files,
                  asn_dbs=[str(p) for p in s.asn_dbs])  # fmt: skip


@router.get("/search")
def search(q: Annotated[str, Query(max_length=2000)] = "") -> RedirectResponse:
    """An address opens its profile; a CIDR or a filter opens the flows that match."""
    if not q.strip():
        return RedirectResponse("/", 303)
    kind, value = classify_search(q)
    if kind == "ip":
        return RedirectResponse(_iplink(value), 303)
    key = "ip" if kind == "cidr" else "filter"
    return RedirectResponse(f"/flows?{urlencode({key: value})}", 303)


@router.get("/ip/{addr}", response_class=HTMLResponse)
def ip_page(
    request: Request,
    addr: str,
    hunt: str | None = None,
    window: Annotated[str | None, Query(max_length=20)] = None,
    top: Annotated[int, Query(ge=1, le=500)] = 25,
) -> HTMLResponse:
    s = settings_of(request)
    try:
        result = hunt_or_404(request, hunt).result() if hunt else None
        p = ip_profile(s, addr, window=window, top=top, result=result)
    except HTTPException as e:
        return _error(request, e)
    days = (p.get("activity") or {}).get("days") or []
    return render(request, "ip.html", p=p, hunt=hunt, bars=charts.day_bars(days), window=window)


@router.get("/flows", response_class=HTMLResponse)
def flows_page(
    request: Request,
    filter_expr: Annotated[str | None, Query(alias="filter", max_length=2000)] = None,
    ip: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> HTMLResponse:
    s = settings_of(request)
    try:
        stats = stats_json(s, ["ip/bytes", "dstport/flows", "proto/flows"], filter_expr, ip, top=10)["stats"]
        rows = flows_json(s, filter_expr, ip, limit=limit)["flows"]
    except HTTPException as e:
        return _error(request, e)
    return render(request, "flows.html", stats=stats, rows=rows, filter=filter_expr, ip=ip or [], limit=limit)


@router.post("/hunts")
async def hunt_form(
    request: Request,
    files: Annotated[list[UploadFile] | None, File()] = None,
    seeds: Annotated[str | None, Form(max_length=2_000_000)] = None,
    days: Annotated[str | None, Form(max_length=8)] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Any:
    given: list[tuple[str, bytes]] = []
    try:
        for f in files or []:
            if f.filename:
                given.append((upload_name(f.filename), await f.read()))
        if seeds and seeds.strip():
            given.append(("pasted.txt", seeds.encode()))
        if not given:
            raise HTTPException(400, "give seed files or paste seeds")
        params = HuntParamsIn(days=int(days) if days and days.strip() else None).given()
        h = start_hunt(jobs_of(request), given, params)
    except PathRefused as e:
        return _error(request, HTTPException(400, str(e)))
    except ValueError as e:
        return _error(request, HTTPException(400, str(e)))
    except HTTPException as e:
        return _error(request, e)
    return RedirectResponse(f"/hunts/{h.id}", 303)


def _hunt_view(request: Request, hunt_id: str) -> tuple[Any, dict[str, Any] | None]:
    h = hunt_or_404(request, hunt_id)
    return h, h.result()


@router.get("/hunts/{hunt_id}", response_class=HTMLResponse)
def hunt_page(request: Request, hunt_id: str) -> HTMLResponse:
    try:
        h, r = _hunt_view(request, hunt_id)
    except HTTPException as e:
        return _error(request, e)
    ctx: dict[str, Any] = {"h": h.info(), "r": r, "stages": charts_stages(h.info()["stages"])}
    if r is not None:
        ctx["g"] = charts.cluster_graph(r)
        ctx["seed_spans"] = charts.spans(sorted(r.get("seeds") or [], key=lambda s: s.get("first_seen") or ""))
        ctx["cluster_bars"] = {str(c.get("id")): charts.day_bars(c.get("timeline") or [], width=420, height=60)
                               for c in r.get("clusters") or []}  # fmt: skip
        ctx["exports"] = ("stix", "misp", "markdown", "html", "abuse")
    return render(request, "hunt.html", **ctx)


def charts_stages(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from .jobs import STAGES

    seen = {d["stage"]: d for d in done}
    return [{"stage": s, "done": s in seen, "t": (seen.get(s) or {}).get("t")} for s in STAGES]


@router.get("/hunts/{hunt_id}/clusters/{cluster_id}", response_class=HTMLResponse)
def cluster_page(request: Request, hunt_id: str, cluster_id: str) -> HTMLResponse:
    try:
        h, r = _hunt_view(request, hunt_id)
        c = next((c for c in (r or {}).get("clusters") or [] if str(c.get("id")) == cluster_id), None)
        if c is None:
            raise HTTPException(404, f"hunt {hunt_id} has no cluster {cluster_id!r}")
    except HTTPException as e:
        return _error(request, e)
    ev = c.get("evidence") if isinstance(c.get("evidence"), dict) else {}
    sub = dict(r or {}, clusters=[c], expansion=[e for e in (r or {}).get("expansion") or []
                                                 if cluster_id in (e.get("clusters") or [])])  # fmt: skip
    return render(request, "cluster.html", h=h.info(), c=c, ev=ev or {}, g=charts.cluster_graph(sub),
                  bars=charts.day_bars(c.get("timeline") or []))  # fmt: skip


@router.post("/hunts/{hunt_id}/export")
def export_form(
    request: Request,
    hunt_id: str,
    format: Annotated[str, Form()],
    name: Annotated[str, Form(max_length=200)],
    actor: Annotated[str | None, Form(max_length=200)] = None,
    tlp: Annotated[str, Form(max_length=20)] = "amber",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Any:
    try:
        h, r = _hunt_view(request, hunt_id)
        if r is None:
            raise HTTPException(404, f"hunt {hunt_id} has no result")
        out = write_export(settings_of(request), r, ExportIn(format=format, name=name, actor=actor or None, tlp=tlp))  # type: ignore[arg-type]
    except HTTPException as e:
        return _error(request, e)
    except (PathRefused, FileExistsError, ValueError) as e:
        return _error(request, HTTPException(400, str(e)))
    return render(request, "exported.html", h=h.info(), out=out)

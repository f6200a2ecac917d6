"""Pages of saved investigations: the list, one investigation with its runs and notes, the diff of
two runs. Forms post here with the form token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from .api import settings_of
from .api_hunts import hunt_or_404, jobs_of
from .api_investigations import diff_runs, get_investigation_or_404, rerun, save_hunt, store_of, takedown_of
from .investigations import WorkspaceError
from .pages import _error, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _get(request: Request, ref: str) -> Any:
    return get_investigation_or_404(store_of(request), ref)


@router.get("/investigations", response_class=HTMLResponse)
def list_page(request: Request) -> HTMLResponse:
    return render(request, "investigations.html", items=store_of(request).list())


@router.post("/hunts/{hunt_id}/save")
def save_form(
    request: Request,
    hunt_id: str,
    name: Annotated[str, Form(max_length=64)],
    notes: Annotated[str, Form(max_length=100_000)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Any:
    try:
        it = save_hunt(settings_of(request), store_of(request), hunt_or_404(request, hunt_id), name.strip(), notes)
    except HTTPException as e:
        return _error(request, e)
    except (WorkspaceError, ValueError) as e:
        return _error(request, HTTPException(400, str(e)))
    return RedirectResponse(f"/investigations/{it.id}", 303)


@router.get("/investigations/{ref}", response_class=HTMLResponse)
def investigation_page(request: Request, ref: str) -> HTMLResponse:
    try:
        it = _get(request, ref)
    except HTTPException as e:
        return _error(request, e)
    inv = store_of(request)
    runs = inv.runs(it.id)
    running = [h.info() for h in jobs_of(request).all() if h.label == f"investigation {it.name}"]
    return render(request, "investigation.html", it=it, runs=runs, running=running[:5])


@router.post("/investigations/{ref}/rerun")
def rerun_form(request: Request, ref: str, csrf_token: Annotated[str | None, Form()] = None) -> Any:
    try:
        it = _get(request, ref)
        h = rerun(settings_of(request), store_of(request), jobs_of(request), it)
    except HTTPException as e:
        return _error(request, e)
    except (WorkspaceError, ValueError, TypeError, RuntimeError) as e:
        return _error(request, HTTPException(400, str(e)))
    return RedirectResponse(f"/hunts/{h.id}?investigation={it.id}", 303)


@router.post("/investigations/{ref}/note")
def note_form(
    request: Request,
    ref: str,
    text: Annotated[str, Form(min_length=1, max_length=100_000)],
    csrf_token: Annotated[str | None, Form()] = None,
) -> Any:
    try:
        it = _get(request, ref)
        store_of(request).add_note(it.id, text)
    except HTTPException as e:
        return _error(request, e)
    return RedirectResponse(f"/investigations/{it.id}", 303)


@router.post("/investigations/{ref}/disclosed")
def disclosed_form(
    request: Request,
    ref: str,
    disclosed: Annotated[str, Form(max_length=64)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Any:
    try:
        it = _get(request, ref)
        store_of(request).set_disclosed(it.id, disclosed.strip() or None)
    except HTTPException as e:
        return _error(request, e)
    except WorkspaceError as e:
        return _error(request, HTTPException(400, str(e)))
    return RedirectResponse(f"/investigations/{it.id}", 303)


@router.get("/investigations/{ref}/diff", response_class=HTMLResponse)
def diff_page(
    request: Request,
    ref: str,
    a: Annotated[int | None, Query()] = None,
    b: Annotated[int | None, Query()] = None,
) -> HTMLResponse:
    try:
        it = _get(request, ref)
        d = diff_runs(store_of(request), it, a, b)
    except HTTPException as e:
        return _error(request, e)
    except (WorkspaceError, ValueError) as e:
        return _error(request, HTTPException(400, str(e)))
    return render(request, "diff.html", it=it, d=d, runs=store_of(request).runs(it.id))


@router.get("/investigations/{ref}/takedown", response_class=HTMLResponse)
def takedown_page(request: Request, ref: str) -> HTMLResponse:
    try:
        it = _get(request, ref)
        t = takedown_of(store_of(request), it)
    except HTTPException as e:
        return _error(request, e)
    except (WorkspaceError, ValueError) as e:
        return _error(request, HTTPException(400, str(e)))
    return render(request, "takedown.html", it=it, t=t)

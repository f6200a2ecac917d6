"""Saved investigations over HTTP, on :mod:`flowpivot.workspace.investigations` (the SQLite file of
the workspace folder): save a done hunt as an investigation, list them, re-run one on the store as
it is now, keep notes and the disclosure date, read any run's result, and compare two runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from .api import ERRORS, bad_request, settings_of
from .api_hunts import HuntInfo, hunt_or_404, jobs_of
from .config import Settings
from .investigations import Investigations, NotFound, WorkspaceError, seed_sets_from_files
from .jobs import Busy, Hunt, HuntJobs

__all__ = ["router", "get_investigation_or_404", "store_of", "save_hunt", "rerun", "diff_runs", "takedown_of"]

router = APIRouter(prefix="/api", responses=ERRORS)


def store_of(request: Request) -> Investigations:
    inv: Investigations = request.app.state.investigations
    return inv


def _state(settings: Settings) -> dict[str, Any]:
    from ..watch import store_state

    return dict(store_state(settings.store))


class InvestigationOut(BaseModel):
    id: int
    name: str
    created: str
    notes: str
    disclosed: str | None
    seeds: dict[str, list[str]]
    params: dict[str, Any]
    sources: dict[str, Any]
    runs: int
    last_run: str | None


class RunOut(BaseModel):
    id: int
    investigation: int
    time: str
    store_state: dict[str, Any]
    summary: dict[str, Any]


class InvestigationDetail(BaseModel):
    investigation: InvestigationOut
    runs: list[RunOut]


class SaveIn(BaseModel, extra="forbid"):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    hunt: str = Field(..., max_length=64, description="The id of a done workspace hunt.")
    notes: str = Field("", max_length=100_000)
    disclosed: str | None = Field(default=None, max_length=64, description="When the hosts were reported (ISO 8601).")


def save_hunt(
    settings: Settings, inv: Investigations, h: Hunt, name: str, notes: str = "", disclosed: Any = None
) -> Any:
    """A new investigation from a done hunt: its seed sets, parameters and sources, its result as run 1."""
    result = h.result()
    if result is None:
        raise ValueError(f"hunt {h.id} has no result ({h.status})")
    sets, _ = seed_sets_from_files([f"{n}={p}" for n, p in h.seed_files()])
    sources = {"store": str(settings.store), "asn_dbs": [str(p) for p in settings.asn_dbs]}
    if settings.whois:
        sources["whois"] = str(settings.whois)
    it = inv.create(name, seeds=sets, params=h.params, notes=notes, disclosed=disclosed, sources=sources)
    inv.record_run(it.id, result, store_state=_state(settings))
    return inv.get(it.id)


@router.get("/investigations", response_model=list[InvestigationOut], summary="Saved investigations")
def list_investigations(request: Request) -> list[dict[str, Any]]:
    return [i.as_dict() for i in store_of(request).list()]


@router.post("/investigations", response_model=InvestigationOut, status_code=201, summary="Save a hunt")
def post_investigation(request: Request, body: SaveIn) -> dict[str, Any]:
    """Save a done hunt as a named investigation (its result is the first run)."""
    h = hunt_or_404(request, body.hunt)
    try:
        it = save_hunt(settings_of(request), store_of(request), h, body.name, body.notes, body.disclosed)
    except (WorkspaceError, ValueError) as e:
        raise bad_request(e) from None
    d: dict[str, Any] = it.as_dict()
    return d


def _get(inv: Investigations, ref: str) -> Any:
    """By id or name; 404 when there is none. (A reference of Unicode digits such as '²' is no id:
    the library's ``isdigit`` test lets it through to ``int()``, which raises ValueError.)"""
    try:
        return inv.get(ref)
    except ValueError:
        raise HTTPException(404, f"no investigation {ref!r}") from None
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    except WorkspaceError as e:
        raise bad_request(e) from None


@router.get("/investigations/{ref}", response_model=InvestigationDetail, summary="An investigation and its runs")
def get_investigation(request: Request, ref: str) -> dict[str, Any]:
    inv = store_of(request)
    it = _get(inv, ref)
    return {"investigation": it.as_dict(), "runs": [r.as_dict() for r in inv.runs(it.id)]}


def rerun(settings: Settings, inv: Investigations, jobs: HuntJobs, it: Any) -> Hunt:
    """Hunt the investigation's seeds again over the store as it is now, in the background; the
    result becomes its newest run."""
    seeds = [(f"{name}.txt", ("\n".join(addrs) + "\n").encode()) for name, addrs in sorted(it.seeds.items())]

    def record(h: Hunt, result: dict[str, Any]) -> None:
        inv.record_run(it.id, result, store_state=_state(settings))

    return jobs.start(seeds, dict(it.params), on_done=record, label=f"investigation {it.name}")


class RunIn(BaseModel, extra="forbid"):
    """A re-run (a JSON body, ``{}``: a state-changing request carries JSON or the form token)."""


@router.post("/investigations/{ref}/runs", response_model=HuntInfo, status_code=202, summary="Run it again")
def post_run(request: Request, ref: str, body: RunIn) -> dict[str, Any]:
    """Re-run the investigation on the store as it is now; the hunt's result becomes its newest run."""
    inv = store_of(request)
    it = _get(inv, ref)
    try:
        return rerun(settings_of(request), inv, jobs_of(request), it).info()
    except Busy as e:
        raise HTTPException(429, str(e)) from None
    except (WorkspaceError, ValueError, TypeError) as e:
        raise bad_request(e) from None


class NoteIn(BaseModel, extra="forbid"):
    text: str = Field(..., min_length=1, max_length=100_000)


@router.post("/investigations/{ref}/notes", response_model=InvestigationOut, summary="Add a dated note")
def post_note(request: Request, ref: str, body: NoteIn) -> dict[str, Any]:
    inv = store_of(request)
    it = _get(inv, ref)
    d: dict[str, Any] = inv.add_note(it.id, body.text).as_dict()
    return d


class DisclosedIn(BaseModel, extra="forbid"):
    disclosed: str | None = Field(..., max_length=64, description="ISO 8601, or null to clear it.")


@router.put("/investigations/{ref}/disclosed", response_model=InvestigationOut, summary="Record the disclosure")
def put_disclosed(request: Request, ref: str, body: DisclosedIn) -> dict[str, Any]:
    """When the analyst reported the hosts: the takedown timeline starts there."""
    inv = store_of(request)
    it = _get(inv, ref)
    try:
        d: dict[str, Any] = inv.set_disclosed(it.id, body.disclosed).as_dict()
    except WorkspaceError as e:
        raise bad_request(e) from None
    return d


def _run_of(inv: Investigations, it: Any, run_id: int) -> Any:
    try:
        r = inv.run(run_id)
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    if r.investigation != it.id:
        raise HTTPException(404, f"run {run_id} is not a run of {it.name}")
    return r


@router.get("/investigations/{ref}/runs/{run_id}/result", summary="One run's result (flowpivot-hunt/1)")
def get_run_result(request: Request, ref: str, run_id: int) -> dict[str, Any]:
    inv = store_of(request)
    it = _get(inv, ref)
    _run_of(inv, it, run_id)
    return inv.run_result(run_id)


def diff_runs(inv: Investigations, it: Any, a: int | None, b: int | None) -> dict[str, Any]:
    """The difference between runs ``a`` (older) and ``b`` (newer); by default the last two."""
    from ..watch import diff_results

    runs = inv.runs(it.id)
    if len(runs) < 2 and (a is None or b is None):
        raise ValueError(f"{it.name} has {len(runs)} run(s): two are needed to compare")
    ra = _run_of(inv, it, a) if a is not None else runs[-2]
    rb = _run_of(inv, it, b) if b is not None else runs[-1]
    d: dict[str, Any] = diff_results(inv.run_result(ra.id), inv.run_result(rb.id))
    return {"investigation": it.name, "a": ra.as_dict(), "b": rb.as_dict(), "diff": d}


@router.get("/investigations/{ref}/diff", summary="What changed between two runs")
def get_diff(
    request: Request,
    ref: str,
    a: Annotated[int | None, Query(description="The older run's id (default: the one before the last).")] = None,
    b: Annotated[int | None, Query(description="The newer run's id (default: the last).")] = None,
) -> dict[str, Any]:
    """New members and seeds contacted, new expansion hosts, victims that appeared or stopped, seeds
    gone dark and back (flowpivot.watch)."""
    inv = store_of(request)
    it = _get(inv, ref)
    try:
        return diff_runs(inv, it, a, b)
    except (WorkspaceError, ValueError) as e:
        raise bad_request(e) from None


def takedown_of(inv: Investigations, it: Any) -> dict[str, Any]:
    """Takedown verification over every run of ``it`` since its disclosure date (flowpivot.watch)."""
    from ..watch import takedown

    if not it.disclosed:
        raise ValueError(f"{it.name} has no disclosure date: record when the hosts were reported first")
    runs = inv.runs(it.id)
    if not runs:
        raise ValueError(f"{it.name} has no run")
    pairs = [({"run": r.id, "time": r.time}, inv.run_result(r.id)) for r in runs]
    out: dict[str, Any] = takedown(pairs, it.disclosed)
    return out


@router.get("/investigations/{ref}/takedown", summary="Did the reported hosts go dark after the disclosure")
def get_takedown(request: Request, ref: str) -> dict[str, Any]:
    """``flowpivot-takedown/1``: per seed its verdict, when it went dark, the last answered session
    and the attempts left unanswered after it, over every run (flowpivot.watch.takedown)."""
    inv = store_of(request)
    it = _get(inv, ref)
    try:
        return takedown_of(inv, it)
    except (WorkspaceError, ValueError) as e:
        raise bad_request(e) from None


get_investigation_or_404 = _get

"""Hunts and exports over HTTP: start a hunt from pasted or uploaded seeds, follow its stages as a
server-sent event stream, fetch the ``flowpivot-hunt/1`` result, and write STIX, MISP, Markdown,
HTML or abuse letters into the workspace's ``exports/`` folder under a name the client gives
(a plain file name: anything that could leave the folder is refused)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from .api import ERRORS, bad_request, settings_of
from .config import PathRefused, Settings, inside, upload_name
from .jobs import Busy, Hunt, HuntJobs

__all__ = ["router", "HuntParamsIn", "start_hunt", "write_export", "EXPORT_FORMATS"]

router = APIRouter(prefix="/api", responses=ERRORS)


class HuntParamsIn(BaseModel, extra="forbid"):
    """The hunt parameters a workspace user sets (the rest keep their defaults, docs/hunt.md)."""

    days: int | None = Field(
        default=None, ge=1, le=3660, description="Window length in days, ending at the newest flow."
    )
    since: str | None = Field(default=None, max_length=64, description="Window start (ISO 8601).")
    until: str | None = Field(default=None, max_length=64, description="Window end (ISO 8601).")
    min_seeds: int | None = Field(default=None, ge=1, le=100000)
    min_members: int | None = Field(default=None, ge=1, le=100000)
    hops: int | None = Field(default=None, ge=0, le=3)

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class HuntStart(HuntParamsIn):
    seeds: str = Field(..., min_length=1, max_length=2_000_000, description="Seed indicators, one a line.")
    name: str = Field("pasted", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$", description="The seed set's name.")


class HuntInfo(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    created: str
    finished: str | None
    seeds: str
    params: dict[str, Any]
    stages: list[dict[str, Any]]
    error: str | None
    summary: dict[str, Any] | None
    label: str | None = None


def jobs_of(request: Request) -> HuntJobs:
    j: HuntJobs = request.app.state.jobs
    return j


def hunt_or_404(request: Request, hunt_id: str) -> Hunt:
    h = jobs_of(request).get(hunt_id)
    if h is None:
        raise HTTPException(404, f"no hunt {hunt_id!r}")
    return h


def start_hunt(jobs: HuntJobs, seeds: list[tuple[str, bytes]], params: dict[str, Any]) -> Hunt:
    from ..errors import FlowpivotError

    try:
        return jobs.start(seeds, params)
    except Busy as e:
        raise HTTPException(429, str(e)) from None
    except (FlowpivotError, ValueError, TypeError) as e:
        raise bad_request(e) from None


@router.post("/hunts", response_model=HuntInfo, status_code=202, summary="Start a hunt from pasted seeds")
def post_hunt(request: Request, body: HuntStart) -> dict[str, Any]:
    """Queue a hunt; follow it at ``/api/hunts/{id}/events``, read it at ``/api/hunts/{id}/result``."""
    seeds = [(f"{body.name}.txt", body.seeds.encode())]
    return start_hunt(
        jobs_of(request), seeds, HuntParamsIn(**body.model_dump(exclude={"seeds", "name"})).given()
    ).info()


@router.post("/hunts/upload", response_model=HuntInfo, status_code=202, summary="Start a hunt from seed files")
async def post_hunt_upload(
    request: Request,
    files: Annotated[list[UploadFile] | None, File(description="Seed files (text, CSV, STIX, MISP, maltrail).")] = None,
    seeds: Annotated[str | None, Form(max_length=2_000_000, description="Pasted seeds, one a line.")] = None,
    days: Annotated[int | None, Form(ge=1, le=3660)] = None,
    csrf_token: Annotated[str | None, Form(description="The workspace's form token.")] = None,
) -> dict[str, Any]:
    """A multipart form: seed files and/or pasted seeds (set ``pasted``). Needs the form token."""
    given: list[tuple[str, bytes]] = []
    for f in files or []:
        if not f.filename:
            continue
        given.append((upload_name(f.filename), await f.read()))
    if seeds and seeds.strip():
        given.append(("pasted.txt", seeds.encode()))
    if not given:
        raise HTTPException(400, "give seed files or paste seeds")
    return start_hunt(jobs_of(request), given, HuntParamsIn(days=days).given()).info()


@router.get("/hunts", response_model=list[HuntInfo], summary="The workspace's hunts, newest first")
def list_hunts(request: Request) -> list[dict[str, Any]]:
    return [h.info() for h in jobs_of(request).all()]


@router.get("/hunts/{hunt_id}", response_model=HuntInfo, summary="A hunt's state and stages")
def get_hunt(request: Request, hunt_id: str) -> dict[str, Any]:
    return hunt_or_404(request, hunt_id).info()


def events(jobs: HuntJobs, h: Hunt) -> Iterator[str]:
    """The stages as server-sent events (``event: stage``), then one ``event: end`` with the status."""
    sent = 0
    idle = 0
    while True:
        jobs.wait(h, sent, timeout=1.0)
        stages = list(h.stages)
        for st in stages[sent:]:
            yield f"event: stage\ndata: {json.dumps(st)}\n\n"
        if len(stages) == sent:
            idle += 1
            if idle % 15 == 0:
                yield ": still running\n\n"
        sent = len(stages)
        if h.status in ("done", "failed"):
            yield f"event: end\ndata: {json.dumps({'status': h.status, 'error': h.error})}\n\n"
            return


@router.get(
    "/hunts/{hunt_id}/events",
    summary="The hunt's progress as a server-sent event stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "stage events, then end"}},
)
def hunt_events(request: Request, hunt_id: str) -> StreamingResponse:
    h = hunt_or_404(request, hunt_id)
    return StreamingResponse(
        events(jobs_of(request), h),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@router.get("/hunts/{hunt_id}/result", summary="The hunt's result (flowpivot-hunt/1)")
def hunt_result(request: Request, hunt_id: str) -> dict[str, Any]:
    """The result as ``flowpivot hunt`` writes it (docs/hunt.md); 404 until the hunt is done."""
    h = hunt_or_404(request, hunt_id)
    r = h.result()
    if r is None:
        raise HTTPException(404, f"hunt {hunt_id} has no result ({h.status})")
    return r


EXPORT_FORMATS = ("stix", "misp", "markdown", "html", "abuse")


class ExportIn(BaseModel, extra="forbid"):
    format: Literal["stix", "misp", "markdown", "html", "abuse"]
    name: str = Field(..., min_length=1, max_length=200, description="File name in exports/ (abuse: a folder).")
    tlp: str = Field("amber", max_length=20)
    actor: str | None = Field(default=None, max_length=200, description="FIN7, or NAME=SET[,SET...].")
    overwrite: bool = False


class ExportOut(BaseModel):
    name: str
    format: str
    files: list[str]


def write_export(settings: Settings, result: dict[str, Any], e: ExportIn) -> dict[str, Any]:
    """Write one export of ``result`` into ``<workspace>/exports/<name>`` (abuse: a folder of letters)."""
    from .. import report as rp

    target = inside(settings.workspace / "exports", e.name)  # PathRefused for anything but a plain name
    if target.exists() and not e.overwrite:
        raise FileExistsError(f"exports/{e.name} exists; give another name or overwrite")
    kw: dict[str, Any] = {"tlp": e.tlp, "actor": e.actor}
    if e.format == "abuse":
        letters = rp.render_abuse_letters(result, **kw)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for key, text in letters.items():
            (tmp / f"abuse-{key}.txt").write_text(text, encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        files = sorted(f"{e.name}/{p.name}" for p in target.iterdir())
    else:
        text = {
            "stix": lambda: rp.stix_json(rp.build_stix_bundle(result, **kw)),
            "misp": lambda: rp.misp_json(rp.build_misp_event(result, **kw)),
            "markdown": lambda: rp.render_markdown(result, **kw),
            "html": lambda: rp.render_html(result, **kw),
        }[e.format]()
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        files = [e.name]
    return {"name": e.name, "format": e.format, "files": files}


@router.post("/hunts/{hunt_id}/exports", response_model=ExportOut, status_code=201, summary="Export a hunt")
def post_export(request: Request, hunt_id: str, body: ExportIn) -> dict[str, Any]:
    """STIX 2.1, MISP, Markdown, HTML or abuse letters of a done hunt, written to exports/NAME."""
    h = hunt_or_404(request, hunt_id)
    r = h.result()
    if r is None:
        raise HTTPException(404, f"hunt {hunt_id} has no result ({h.status})")
    try:
        return write_export(settings_of(request), r, body)
    except (PathRefused, FileExistsError, ValueError) as e:
        raise bad_request(e) from None


@router.get("/exports", response_model=list[str], summary="The files in the workspace's exports folder")
def list_exports(request: Request) -> list[str]:
    root = settings_of(request).workspace / "exports"
    out = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        out += [f"{p.name}/{q.name}" for q in sorted(p.iterdir())] if p.is_dir() else [p.name]
    return out


@router.get(
    "/exports/{name}",
    summary="One exported file",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the file"}},
)
def get_export(request: Request, name: str, part: str | None = None) -> FileResponse:
    """``exports/NAME`` (``part``: a letter inside an abuse-letters folder). Names are plain file names."""
    try:
        p = inside(settings_of(request).workspace / "exports", name, *([part] if part else []))
    except PathRefused as e:
        raise bad_request(e) from None
    if not p.is_file():
        raise HTTPException(404, f"no export {name!r}" + (f" / {part!r}" if part else ""))
    media = {".json": "application/json", ".md": "text/markdown", ".html": "text/html", ".txt": "text/plain"}
    return FileResponse(
        p,
        media_type=media.get(p.suffix, "application/octet-stream"),
        filename=p.name,
        content_disposition_type="attachment",
    )

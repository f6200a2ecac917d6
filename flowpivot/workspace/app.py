"""The workspace app: FastAPI routes (API and pages), static files, the security layer, the hunts.

``create_app(settings)`` gives the ASGI app uvicorn serves (``flowpivot serve``); the security
checks (flowpivot/workspace/security.py) wrap everything, static files and errors included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.staticfiles import StaticFiles

from .. import __version__
from .config import Settings
from .security import SecurityMiddleware, check_form_token

__all__ = ["create_app"]


async def form_guard(request: Request) -> None:
    """A state-changing request that is not JSON carries the form token (security.py)."""
    s: Settings = request.app.state.settings
    ctype = request.headers.get("content-type", "")
    field = None
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and not ctype.lower().startswith("application/json"):
        if ctype.lower().startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            try:
                form = await request.form()
            except Exception:
                raise HTTPException(400, "the form cannot be read") from None
            v = form.get("csrf_token")
            field = v if isinstance(v, str) else None
    why = check_form_token(s, request.method, ctype, request.headers.get("x-csrf-token"), field)
    if why:
        raise HTTPException(403, why)


def create_app(settings: Settings, bound_host: str = "127.0.0.1") -> Any:
    """The ASGI app: FastAPI wrapped in :class:`SecurityMiddleware`. The FastAPI app itself is
    ``.app`` of the result (its ``openapi()``, ``state``)."""
    from . import api, api_hunts, api_investigations, pages, pages_investigations
    from .investigations import Investigations
    from .jobs import HuntJobs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.jobs.close()

    app = FastAPI(
        title="flowpivot workspace",
        version=__version__,
        description="Profiles, flows, statistics, enrichment, hunts, exports and saved investigations over "
        "the analyst's own flow store (docs/workspace.md).",
        dependencies=[Depends(form_guard)],
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.jobs = HuntJobs(settings)
    app.state.investigations = Investigations(settings.workspace)
    for mod in (api, api_hunts, api_investigations, pages, pages_investigations):
        app.include_router(mod.router)
    static = resources.files(__package__).joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    outer = SecurityMiddleware(app, settings, bound_host)
    return outer

"""Who may use the workspace, and what a request may do.

- **Token.** With a token (always when bound beyond loopback), every request presents it: an
  ``Authorization: Bearer`` header, an ``X-Flowpivot-Token`` header, or the ``flowpivot_token``
  cookie. ``GET /?token=...`` (the address printed at start) sets the cookie (HttpOnly,
  SameSite=Strict) and redirects to the same address without the token.
- **Host.** Bound to loopback without a token, a request must name a loopback host (``Host:``
  ``127.0.0.1``, ``localhost`` or ``[::1]``): a DNS-rebinding page cannot reach the API by a name
  of its own.
- **Cross-site requests.** A state-changing request (POST, PUT, PATCH, DELETE) is refused when the
  browser says it comes from another site (``Sec-Fetch-Site`` other than ``same-origin``/``none``)
  or its ``Origin`` is not the server's own; when it is not JSON (a form, an upload: the kinds a
  foreign page can send without asking), it must also carry the form token (field ``csrf_token`` or
  header ``X-CSRF-Token``), which only the workspace's own pages know.
- **Size.** A request body larger than ``Settings.max_upload`` is refused with 413, by its
  ``Content-Length`` or while it streams.
- Every answer carries a strict Content-Security-Policy: scripts, styles and images from the
  server itself only.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .config import Settings, is_loopback

__all__ = ["SecurityMiddleware", "check_form_token", "SECURITY_HEADERS", "COOKIE"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "flowpivot_token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" would make Chromium send "Origin: null" on forms
    (b"cross-origin-resource-policy", b"same-origin"),
]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def presented_token(h: dict[str, str]) -> str | None:
    auth = h.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if "x-flowpivot-token" in h:
        return h["x-flowpivot-token"].strip()
    if "cookie" in h:
        c: SimpleCookie = SimpleCookie()
        try:
            c.load(h["cookie"])
        except Exception:  # a malformed Cookie header is no token
            return None
        if COOKIE in c:
            return c[COOKIE].value
    return None


def check_form_token(settings: Settings, method: str, content_type: str, header: str | None, field: str | None) -> str:
    """Why a state-changing request without JSON must be refused, or "" when it may go on."""
    if method not in UNSAFE:
        return ""
    if content_type.split(";")[0].strip().lower() == "application/json":
        return ""  # a foreign page cannot send JSON here without a CORS preflight, which is never granted
    if _same(header, settings.form_token) or _same(field, settings.form_token):
        return ""
    return "a form or upload must carry the workspace's form token (csrf_token); reload the page and try again"


class SecurityMiddleware:
    """The checks of the module's docstring, before any route runs."""

    def __init__(self, app: ASGIApp, settings: Settings, bound_host: str = "127.0.0.1") -> None:
        self.app = app
        self.settings = settings
        self.loopback_only = settings.token is None
        self.bound_host = bound_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        h = _headers(scope)
        method = scope.get("method", "GET")
        host = h.get("host", "")
        token = self.settings.token
        if token is None:
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            if not is_loopback(name.strip("[]")):
                await _refuse(send, 421, f"this workspace answers only to a loopback host name, not {host!r}")
                return
        else:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = presented_token(h)
            if not _same(given, token):
                if method == "GET" and _same(query.get("token"), token):
                    rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
                    where = scope.get("path", "/") + (f"?{rest}" if rest else "")
                    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                    await _redirect(send, where, cookie)
                    return
                await _refuse(send, 401, "a valid workspace token is needed (see how the server was started)")
                return
        if method in UNSAFE:
            site = h.get("sec-fetch-site")
            if site is not None and site not in ("same-origin", "none"):
                await _refuse(send, 403, f"cross-site request refused (Sec-Fetch-Site: {site})")
                return
            origin = h.get("origin")
            if origin is not None:
                scheme = scope.get("scheme", "http")
                if origin != f"{scheme}://{host}":
                    await _refuse(send, 403, "cross-site request refused (Origin is not this workspace)")
                    return
            length = h.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.settings.max_upload):
                await _refuse(send, 413, f"request body over the limit of {self.settings.max_upload:,} bytes")
                return
        limit = self.settings.max_upload
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg.get("type") == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    # answer now; the route sees the client gone and whatever it sends is dropped
                    refused = True
                    if not started:
                        await _refuse(send, 413, f"request body over the limit of {limit:,} bytes")
                    return {"type": "http.disconnect"}
            return msg

        async def sending(msg: Message) -> None:
            nonlocal started
            if refused:
                return
            if msg["type"] == "http.response.start":
                started = True
                msg["headers"] = list(msg.get("headers") or []) + SECURITY_HEADERS
            await send(msg)

        try:
            await self.app(scope, counted, sending)
        except Exception:
            if not refused:
                raise


async def _refuse(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + SECURITY_HEADERS,
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, where: str, cookie: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", where.encode()), (b"set-cookie", cookie.encode()), (b"content-length", b"0")]
            + SECURITY_HEADERS,
        }
    )
    await send({"type": "http.response.body", "body": b""})

"""What every dashboard page shares: the sign-in check, CSRF, rendering with the security headers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from optibridge import __version__
from optibridge.runtime import Runtime
from optibridge.web.auth import ApiError, Principal, principal_for_hash
from optibridge.web.dashboard.session import SESSION_COOKIE, Session, SessionSigner, load_secret
from optibridge.web.optimove_probe import ProbeCache

WEB_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
PREFIX = "/ui"
PAGE_SIZE = 50
SECURITY_HEADERS = {
    # Previews of e-mail HTML sit in a sandboxed iframe (no scripts); their remote images stay blocked,
    # inline styles are allowed (e-mail HTML is made of them; CSS cannot run code).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-src 'self' about:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def number(n: float | int | None) -> str:
    if n is None:
        return "—"
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.1f}"
    return f"{int(n):,}"


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    session: Session
    csrf: str


def safe_next(value: str | None) -> str:
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX + "/campaigns"


def secure(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


# What a page shows, loaded for the signed-in viewer (Dashboard.view).
Loader = Callable[[Viewer], Awaitable[dict[str, Any]]]


class Dashboard:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
        env = self.templates.env
        env.filters["duration"] = duration
        env.filters["number"] = number
        env.globals["version"] = __version__
        env.globals["prefix"] = PREFIX
        self._signer: SessionSigner | None = None
        self.probes = ProbeCache(runtime)

    async def signer(self) -> SessionSigner:
        if self._signer is None:
            async with self.runtime.pool.connection() as conn:
                self._signer = SessionSigner(await load_secret(conn, self.runtime.box))
        return self._signer

    async def viewer(self, request: Request) -> Viewer | None:
        signer = await self.signer()
        session = signer.verify(request.cookies.get(SESSION_COOKIE), int(time.time()))
        if session is None:
            return None
        async with self.runtime.pool.connection() as conn:
            principal = await principal_for_hash(conn, session.key_hash)
        if principal is None:
            return None
        return Viewer(principal, session, signer.csrf_token(session))

    def page(self, request: Request, name: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        response = self.templates.TemplateResponse(request, name, context, status_code=http_status)
        response.headers.update(SECURITY_HEADERS)
        return response

    def login_redirect(self, request: Request) -> Response:
        if request.headers.get("x-requested-with") == "fetch":
            return Response("session ended", status_code=401, headers=SECURITY_HEADERS)
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")
        return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)

    def error(self, request: Request, viewer: Viewer | None, exc: ApiError) -> HTMLResponse:
        return self.page(request, "error.html", exc.status, viewer=viewer, error=exc.error, detail=exc.detail)

    async def view(
        self,
        request: Request,
        load: Loader,
        name: str,
        **context: Any,
    ) -> Response:
        """A read-only page behind the login: `load` its data for the viewer (an ApiError becomes
        the error page), then render template `name` with it and `context`."""
        viewer = await self.viewer(request)
        if viewer is None:
            return self.login_redirect(request)
        try:
            data = await load(viewer)
        except ApiError as exc:
            return self.error(request, viewer, exc)
        return self.page(request, name, viewer=viewer, **context, **data)

    async def csrf_ok(self, request: Request, viewer: Viewer) -> bool:
        form = await request.form()
        token = form.get("csrf_token")
        signer = await self.signer()
        return signer.check_csrf(viewer.session, token if isinstance(token, str) else None)

    async def csrf_refused(self, request: Request, viewer: Viewer) -> HTMLResponse | None:
        """The error page if the form's CSRF token is missing or wrong; None if it is right."""
        if await self.csrf_ok(request, viewer):
            return None
        return self.error(request, viewer, ApiError(403, "forbidden", "missing or wrong CSRF token"))

"""The operator dashboard under /ui: server-rendered pages (Jinja2) and one small script that
refreshes fragments (`static/poll.js`), no build step. Same API keys as the admin API, through a
login page and a signed session cookie (see session.py). See docs/dashboard.md."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from optibridge import __version__
from optibridge import campaigns as campaign_store
from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec
from optibridge.core import telemetry
from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.runtime import Runtime
from optibridge.web import queue
from optibridge.web.api.campaigns import parse_after
from optibridge.web.api.common import encode_cursor
from optibridge.web.api.templates import PreviewRequest, check_template, render_preview
from optibridge.web.api.tenants import load_tenants
from optibridge.web.auth import ApiError, Principal, hash_key, looks_like_key, principal_for_hash
from optibridge.web.dashboard.session import (
    LOGIN_COOKIE,
    MAX_AGE_S,
    SESSION_COOKIE,
    Session,
    SessionSigner,
    load_secret,
)
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


def parse_sample(text: str) -> dict[str, str | int | float | bool | None]:
    """Sample attributes from the preview form: a JSON object, or NAME=value lines."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the JSON must be an object")
        return {
            str(k): v if isinstance(v, str | int | float | bool) or v is None else str(v)
            for k, v in data.items()
        }
    out: dict[str, str | int | float | bool | None] = {}
    for number_, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"line {number_}: write NAME=value")
        out[name.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    session: Session
    csrf: str


def _safe_next(value: str | None) -> str:
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX + "/campaigns"


def _secure(request: Request) -> bool:
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


def router(runtime: Runtime) -> APIRouter:
    ui = Dashboard(runtime)
    api = APIRouter(prefix=PREFIX, include_in_schema=False)

    # -- login ----------------------------------------------------------------------------------

    @api.get("")
    @api.get("/")
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/campaigns", status_code=303)

    def login_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
        token = request.cookies.get(LOGIN_COOKIE) or _new_login_token()
        response = ui.page(
            request,
            "login.html",
            status,
            viewer=None,
            error=error,
            login_token=token,
            next=_safe_next(request.query_params.get("next")),
        )
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            max_age=3600,
            httponly=True,
            secure=_secure(request),
            samesite="strict",
            path=PREFIX,
        )
        return response

    @api.get("/login")
    async def login_form(request: Request) -> Response:
        return login_page(request)

    @api.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        key = str(form.get("api_key") or "").strip()
        token = str(form.get("login_token") or "")
        cookie = request.cookies.get(LOGIN_COOKIE) or ""
        if not token or not cookie or token != cookie:
            return login_page(request, "The login form expired; please try again.", 400)
        principal = None
        if looks_like_key(key):
            async with runtime.pool.connection() as conn:
                principal = await principal_for_hash(conn, hash_key(key))
        if principal is None:
            return login_page(request, "That API key is not valid (or was revoked).", 401)
        signer = await ui.signer()
        target = _safe_next(str(form.get("next") or ""))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            signer.issue(principal.key_hash, int(time.time())),
            max_age=MAX_AGE_S,
            httponly=True,
            secure=_secure(request),
            samesite="strict",
            path=PREFIX,
        )
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    @api.post("/logout")
    async def logout(request: Request) -> Response:
        viewer = await ui.viewer(request)
        if viewer is not None and not await ui.csrf_ok(request, viewer):
            return ui.error(request, viewer, ApiError(403, "forbidden", "missing or wrong CSRF token"))
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # -- campaigns -------------------------------------------------------------------------------

    async def campaign_rows(viewer: Viewer, request: Request) -> dict[str, Any]:
        q = request.query_params
        tenant = q.get("tenant") or None
        if tenant is not None:
            viewer.principal.require_tenant(tenant)
        else:
            tenant = viewer.principal.tenant_id
        status = q.get("status") or None
        if status is not None and status not in campaign_store.CAMPAIGN_STATUSES:
            raise ApiError(422, "invalid request", f"unknown status {status!r}")
        flt = campaign_store.CampaignFilter(tenant_id=tenant, status=status)
        after = parse_after(q.get("cursor"))
        async with runtime.pool.connection() as conn:
            rows = await campaign_store.list_campaigns(conn, flt, after=after, limit=PAGE_SIZE + 1)
            failures = await campaign_store.failure_reasons(conn, [c.key for c in rows[:PAGE_SIZE]])
        next_cursor = None
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE]
            last = rows[-1]
            next_cursor = encode_cursor(
                [last.created_at.isoformat(), last.tenant_id, last.channel_id, last.campaign_id]
            )
        return {
            "campaigns": rows,
            "failures": failures,
            "next_cursor": next_cursor,
            "tenant": tenant,
            "status": status,
        }

    @api.get("/campaigns")
    async def campaigns_page(request: Request) -> Response:
        return await ui.view(
            request,
            lambda viewer: campaign_rows(viewer, request),
            "campaigns.html",
            nav="campaigns",
            query=request.url.query,
            statuses=campaign_store.CAMPAIGN_STATUSES,
        )

    @api.get("/campaigns/rows")
    async def campaigns_rows(request: Request) -> Response:
        return await ui.view(request, lambda viewer: campaign_rows(viewer, request), "_campaign_rows.html")

    async def campaign_detail(
        viewer: Viewer, tenant: str, channel: str, campaign_id: int
    ) -> campaign_store.CampaignDetail:
        viewer.principal.require_tenant(tenant)
        async with runtime.pool.connection() as conn:
            try:
                return await campaign_store.get_campaign(conn, tenant, channel, campaign_id)
            except NotFoundError as exc:
                raise ApiError(404, "not found", str(exc)) from None

    def detail_of(tenant: str, channel: str, campaign_id: int) -> Loader:
        async def load(viewer: Viewer) -> dict[str, Any]:
            return {"d": await campaign_detail(viewer, tenant, channel, campaign_id)}

        return load

    @api.get("/campaigns/{tenant}/{channel}/{campaign_id}")
    async def campaign_page(request: Request, tenant: str, channel: str, campaign_id: int) -> Response:
        outcome = request.query_params.get("outcome")
        load = detail_of(tenant, channel, campaign_id)
        return await ui.view(request, load, "campaign.html", nav="campaigns", outcome=outcome)

    @api.get("/campaigns/{tenant}/{channel}/{campaign_id}/progress")
    async def campaign_progress(request: Request, tenant: str, channel: str, campaign_id: int) -> Response:
        return await ui.view(request, detail_of(tenant, channel, campaign_id), "_campaign_progress.html")

    @api.post("/campaigns/{tenant}/{channel}/{campaign_id}/{action}")
    async def campaign_action(
        request: Request, tenant: str, channel: str, campaign_id: int, action: str
    ) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        if not await ui.csrf_ok(request, viewer):
            return ui.error(request, viewer, ApiError(403, "forbidden", "missing or wrong CSRF token"))
        if action not in ("pause", "resume", "cancel"):
            return ui.error(request, viewer, ApiError(404, "not found", f"no action {action!r}"))
        try:
            viewer.principal.require_tenant(tenant)
            async with runtime.pool.connection() as conn:
                outcome = await campaign_store.act(conn, tenant, channel, campaign_id, action)  # type: ignore[arg-type]
        except ApiError as exc:
            return ui.error(request, viewer, exc)
        except NotFoundError as exc:
            return ui.error(request, viewer, ApiError(404, "not found", str(exc)))
        except ConflictError as exc:
            return ui.error(request, viewer, ApiError(409, "conflict", str(exc)))
        target = f"{PREFIX}/campaigns/{quote(tenant)}/{quote(channel)}/{campaign_id}?outcome={quote(outcome)}"
        return RedirectResponse(target, status_code=303)

    # -- templates -------------------------------------------------------------------------------

    @api.get("/templates")
    async def templates_page(request: Request) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        async with runtime.pool.connection() as conn:
            tenants = await load_tenants(conn, viewer.principal.tenant_id, None, 1000)
            rows = []
            for t in tenants:
                rows += await catalog.list_templates(conn, t.id)
        return ui.page(request, "templates.html", viewer=viewer, nav="templates", templates=rows)

    async def template_view(
        request: Request, viewer: Viewer, tenant: str, channel: str, template_id: int, sample_text: str | None
    ) -> Response:
        try:
            viewer.principal.require_tenant(tenant)
            async with runtime.pool.connection() as conn:
                t = await catalog.get(conn, tenant, channel, template_id)
                kind, channel_id = await catalog.channel_kind(conn, tenant, channel)
        except ApiError as exc:
            return ui.error(request, viewer, exc)
        except NotFoundError as exc:
            return ui.error(request, viewer, ApiError(404, "not found", str(exc)))
        spec = TemplateSpec(
            template_id=t.template_id,
            name=t.name,
            body=t.body,
            subject=t.subject,
            text_body=t.text_body,
            app_id=t.app_id,
            defaults=t.defaults,
        )
        preview, problem = None, None
        if sample_text is None:
            sample_text = "\n".join(f"{a}=" for a in t.attributes)
        else:
            try:
                compiled = check_template(kind, spec)
                preview = render_preview(
                    compiled,
                    PreviewRequest(attributes=parse_sample(sample_text)),
                    tenant_id=tenant,
                    channel_id=channel_id,
                    template_id=template_id,
                    now=datetime.now(UTC),
                )
            except ApiError as exc:
                problem = exc.detail
            except ValueError as exc:
                problem = f"sample attributes: {exc}"
        return ui.page(
            request,
            "template.html",
            viewer=viewer,
            nav="templates",
            t=t,
            kind=kind,
            sample=sample_text,
            preview=preview,
            problem=problem,
        )

    @api.get("/templates/{tenant}/{channel}/{template_id}")
    async def template_page(request: Request, tenant: str, channel: str, template_id: int) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        return await template_view(request, viewer, tenant, channel, template_id, None)

    @api.post("/templates/{tenant}/{channel}/{template_id}/preview")
    async def template_preview(request: Request, tenant: str, channel: str, template_id: int) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        if not await ui.csrf_ok(request, viewer):
            return ui.error(request, viewer, ApiError(403, "forbidden", "missing or wrong CSRF token"))
        form = await request.form()
        sample = form.get("sample")
        return await template_view(
            request, viewer, tenant, channel, template_id, sample if isinstance(sample, str) else ""
        )

    # -- tenants and health ----------------------------------------------------------------------

    @api.get("/tenants")
    async def tenants_page(request: Request) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        async with runtime.pool.connection() as conn:
            tenants = await load_tenants(conn, viewer.principal.tenant_id, None, 1000)
        errors = sorted(telemetry.provider_error_totals().items())
        return ui.page(
            request, "tenants.html", viewer=viewer, nav="tenants", tenants=tenants, provider_errors=errors
        )

    @api.get("/tenants/{tenant}/probe")
    async def tenant_probe(request: Request, tenant: str) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        try:
            viewer.principal.require_tenant(tenant)
            result = await ui.probes.get(tenant)
        except ApiError as exc:
            return ui.error(request, viewer, exc)
        except NotFoundError as exc:
            return ui.error(request, viewer, ApiError(404, "not found", str(exc)))
        return ui.page(request, "_probe.html", viewer=viewer, r=result)

    # -- job queue -------------------------------------------------------------------------------

    @api.get("/jobs")
    async def jobs_page(request: Request) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        try:
            viewer.principal.require_admin("the job queue")
        except ApiError as exc:
            return ui.error(request, viewer, exc)
        async with runtime.pool.connection() as conn:
            stats = await queue.queue_stats(conn)
            workers = await queue.live_workers(conn)
            attention = await queue.attention_jobs(conn)
        return ui.page(
            request, "jobs.html", viewer=viewer, nav="jobs", stats=stats, workers=workers, attention=attention
        )

    return api


def _new_login_token() -> str:
    import secrets

    return secrets.token_urlsafe(24)

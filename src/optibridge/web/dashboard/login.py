"""Signing in with an API key (a login form with its own anti-forgery cookie) and out."""

from __future__ import annotations

import secrets
import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from optibridge.web.auth import hash_key, looks_like_key, principal_for_hash
from optibridge.web.dashboard.common import PREFIX, Dashboard, safe_next, secure
from optibridge.web.dashboard.session import LOGIN_COOKIE, MAX_AGE_S, SESSION_COOKIE
from optibridge.web.ratelimit import client_ip, limiter_of


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def add_routes(api: APIRouter, ui: Dashboard) -> None:
    runtime = ui.runtime

    @api.get("")
    @api.get("/")
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/campaigns", status_code=303)

    def login_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
        token = request.cookies.get(LOGIN_COOKIE) or new_login_token()
        response = ui.page(
            request,
            "login.html",
            status,
            viewer=None,
            error=error,
            login_token=token,
            next=safe_next(request.query_params.get("next")),
        )
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            max_age=3600,
            httponly=True,
            secure=secure(request),
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
        # Failed sign-ins count against the client IP with the admin API's failures (web/ratelimit.py):
        # over the limit, a key not seen to work in this process is refused without a lookup.
        limiter = limiter_of(request.app.state, runtime.settings)
        client = client_ip(request.scope.get("client"))
        key_hash = hash_key(key) if looks_like_key(key) else None
        wait = limiter.refuse(client, key_hash)
        if wait is not None:
            page = login_page(request, f"Too many failed sign-ins; try again in {wait} s.", 429)
            page.headers["Retry-After"] = str(wait)
            return page
        principal = None
        if key_hash is not None:
            async with runtime.pool.connection() as conn:
                principal = await principal_for_hash(conn, key_hash)
        if principal is None:
            limiter.failed(client)
            return login_page(request, "That API key is not valid (or was revoked).", 401)
        limiter.succeeded(principal.key_hash)
        signer = await ui.signer()
        target = safe_next(str(form.get("next") or ""))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            signer.issue(principal.key_hash, int(time.time())),
            max_age=MAX_AGE_S,
            httponly=True,
            secure=secure(request),
            samesite="strict",
            path=PREFIX,
        )
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    @api.post("/logout")
    async def logout(request: Request) -> Response:
        viewer = await ui.viewer(request)
        if viewer is not None and (refused := await ui.csrf_refused(request, viewer)):
            return refused
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

"""The operator dashboard under /ui: server-rendered pages (Jinja2) and one small script that
refreshes fragments (`static/poll.js`), no build step. Same API keys as the admin API, through a
login page and a signed session cookie (see session.py). See docs/dashboard.md.

One module per page group (login, campaigns, templates, tenants, jobs), each adding its routes;
common.py has what they share (the sign-in check, CSRF, rendering)."""

from __future__ import annotations

from fastapi import APIRouter

from optibridge.runtime import Runtime
from optibridge.web.dashboard import campaigns, health, jobs, login, templates, tenants
from optibridge.web.dashboard.common import PREFIX, STATIC_DIR, Dashboard, duration, number
from optibridge.web.dashboard.templates import parse_sample

__all__ = ["PREFIX", "STATIC_DIR", "duration", "number", "parse_sample", "router"]


def router(runtime: Runtime) -> APIRouter:
    ui = Dashboard(runtime)
    api = APIRouter(prefix=PREFIX, include_in_schema=False)
    for pages in (login, campaigns, templates, tenants, health, jobs):
        pages.add_routes(api, ui)
    return api

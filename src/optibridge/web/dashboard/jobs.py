"""The job queue page (admin keys only): per-queue counts, live workers, jobs to look at."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from optibridge.web import queue
from optibridge.web.auth import ApiError
from optibridge.web.dashboard.common import Dashboard


def add_routes(api: APIRouter, ui: Dashboard) -> None:
    runtime = ui.runtime

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

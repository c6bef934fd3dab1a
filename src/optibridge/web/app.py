"""The FastAPI application served by `optibridge serve`."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from optibridge import __version__
from optibridge.core.feedback_settings import feedback_settings
from optibridge.runtime import Runtime
from optibridge.web import (
    admin,
    aggregator,
    api,
    engagement_webhook,
    health,
    limits,
    listener,
    provider_receipts,
    receipts,
    tracking,
)
from optibridge.web.apigate import ApiAuthGate
from optibridge.web.ratelimit import limiter_of


def create_app(runtime: Runtime, *, expect_workers: bool = True) -> FastAPI:
    app = FastAPI(title="optibridge", version=__version__)
    app.state.runtime = runtime

    @app.get("/healthz", tags=["operations"], summary="Database and job engine health")
    async def healthz() -> JSONResponse:
        """200 when the database answers and a worker is alive; 503 otherwise, with reasons."""
        result = await health.probe(runtime.db.url)
        code, body = health.assess(
            result, embedded=runtime.db.embedded is not None, expect_workers=expect_workers
        )
        return JSONResponse(body, status_code=code)

    app.include_router(listener.router(runtime))
    app.include_router(engagement_webhook.router(runtime))  # event 14
    app.include_router(aggregator.router(runtime))  # SMS aggregator batches
    app.include_router(aggregator.admin_router(runtime), prefix=api.PREFIX)
    # Kept on the app so an in-process caller (the demo) can flush buffered hits before a push.
    app.state.tracking_recorder = tracking.make_recorder(runtime, feedback_settings(runtime.settings))
    app.include_router(tracking.router(runtime, recorder=app.state.tracking_recorder))
    app.include_router(receipts.router(runtime))
    app.include_router(provider_receipts.router(runtime))  # SES, SendGrid, Mailgun, Postmark, Vonage, Plivo
    admin.install(app, runtime)  # /api/v1, /ui, /ui/static, /metrics, /livez, /readyz
    # Outermost last: body limits first (413/408 before anything runs), then the admin API's auth
    # gate (429/401 before its body is read). Both before any database access.
    app.add_middleware(
        ApiAuthGate, runtime=runtime, limiter=limiter_of(app.state, runtime.settings), prefix=api.PREFIX
    )
    limits.install(app, runtime.settings)
    return app

"""The emulator as an ASGI app: `create_app(config)` for tests, run by `optibridge emulator`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI

from optibridge.emulator import aggregator, api, control, engagement, engagement_events
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.state import EmulatorState
from optibridge.optimove.clock import SYSTEM_CLOCK, Clock

API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def create_app(config: EmulatorConfig | None = None, *, clock: Clock | None = None) -> FastAPI:
    """A fresh emulator with its own state. `clock` drives token expiry and rate windows."""
    state = EmulatorState(config or EmulatorConfig(), clock or SYSTEM_CLOCK)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pooled session for listener notifications, opened inside the server's loop.
        app.state.http = aiohttp.ClientSession()
        try:
            yield
        finally:
            background: set[asyncio.Task[Any]] = app.state.background
            for task in list(background):
                task.cancel()
            await app.state.http.close()

    app = FastAPI(
        title="Optimove emulator",
        description=(
            "Speaks the Optimove REST API (`/current/{category}/{Function}`) for many tenants, "
            "with a control API under `/emulator` to create campaigns, fire listener "
            "notifications, inject faults and read back what was reported."
        ),
        lifespan=lifespan,
    )
    app.state.emulator = state
    app.state.background = set()
    app.include_router(control.router)
    app.include_router(aggregator.router)  # SMS aggregator: handshake, batches, delivery reports
    app.include_router(engagement.router)  # event 14: GCS files + webhook
    # saveEvent (another Optimove host, routed by path) must come before the catch-all.
    app.include_router(engagement_events.control_router)
    app.include_router(engagement_events.router)
    # Registered last: a catch-all for the Optimove API, outside the OpenAPI schema.
    app.add_api_route("/{path:path}", api.handle, methods=API_METHODS, include_in_schema=False)
    return app

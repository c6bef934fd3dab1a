"""The listener endpoints Optimove calls: token check, validation, store, enqueue, answer fast.

    POST /optimove/{tenant}/{token}/events                          general listener (events 2, 3, 4, 5)
    POST /optimove/{tenant}/{token}/channels/{channel_id}/events    one channel (events 1, 4, 13)

Unknown tenant, wrong token or unknown channel: 404 with no detail (nothing to learn by probing).
A body that is not a notification: 400 with the reason, and nothing stored. Accepted: 200 once the
notification, its effects and their jobs are committed.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from optibridge.core.logs import get_logger
from optibridge.intake import notifications
from optibridge.intake.accept import accept
from optibridge.runtime import Runtime
from optibridge.store import listener_tokens, tenants

log = get_logger(__name__)

BODY_TIMEOUT_S = 11.0  # the listener's own cap, behind web/limits.py's body_timeout_s (10 s)
MAX_BODY = 64 * 1024
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
NOT_FOUND = JSONResponse({"error": "not found"}, status_code=404)


def _bad(reason: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


async def _read_json(request: Request, timeout_s: float = BODY_TIMEOUT_S) -> Any:
    """The body as JSON, or a JSONResponse saying why not. Content-Type is not trusted either way.

    Defence in depth: the app's body limits (web/limits.py) refuse a body over 64 KiB or slower than
    `body_timeout_s` before this runs out; these checks only matter for an app built without them."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return _bad(f"body larger than {MAX_BODY} bytes", 413)
    body = b""
    try:
        async with asyncio.timeout(timeout_s):  # a trickled body must not hold a request slot
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    return _bad(f"body larger than {MAX_BODY} bytes", 413)
    except TimeoutError:
        return _bad(f"body not received within {timeout_s:g} s", 408)
    if not body.strip():
        return _bad("empty body: expected a JSON object")
    try:
        # Decoded explicitly: json.loads(bytes) would guess UTF-16/32 from the first bytes.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _bad("body is not UTF-8")
    try:
        return json.loads(text)
    except ValueError as exc:
        return _bad(f"body is not valid JSON: {exc}")
    except RecursionError:  # nested deeper than the parser's stack allows
        return _bad("body is not valid JSON: nested too deeply")


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(tags=["optimove listener"])

    async def handle(request: Request, tenant: str, token: str, channel_id: int | None) -> JSONResponse:
        if not _TENANT.match(tenant):
            return NOT_FOUND
        # The body is read before a database connection is taken: a slow sender must not hold one
        # (25 trickled uploads once emptied the pool). It is bounded in size and time.
        # A second after the middleware's deadline (10 s by default), so that its 408 is the one a
        # client gets: two timers due in the same loop turn would leave this one's answer (a 404
        # for a wrong token) instead.
        body = await _read_json(request, min(BODY_TIMEOUT_S, runtime.settings.body_timeout_s + 1))
        async with runtime.pool.connection() as conn:
            if not await listener_tokens.is_valid(conn, tenant, token, datetime.now(UTC)):
                return NOT_FOUND
            if channel_id is not None and not await tenants.channel_exists(conn, tenant, channel_id):
                return NOT_FOUND
            if isinstance(body, JSONResponse):
                return body
            try:
                note = notifications.parse(body, channel_known=channel_id is not None)
            except notifications.InvalidNotification as exc:
                log.warning("listener: rejected notification", tenant=tenant, reason=str(exc))
                return _bad(str(exc))
            if note.problems:
                log.warning(
                    "listener: unreadable optional fields", tenant=tenant, problems=list(note.problems)
                )
            outcomes = await accept(conn, runtime.job_app, tenant, channel_id, note, body)
        log.info(
            "listener: notification",
            tenant=tenant,
            event_type=int(note.event_type),
            campaign=note.campaign_id,
            channel=channel_id,
            outcome=outcomes,
        )
        return JSONResponse({"status": "accepted", "outcome": outcomes})

    @api.post("/optimove/{tenant}/{token}/events", summary="General listener (events 2, 3, 4, 5)")
    async def general(request: Request, tenant: str, token: str) -> JSONResponse:
        return await handle(request, tenant, token, None)

    @api.post(
        "/optimove/{tenant}/{token}/channels/{channel_id}/events",
        summary="Channel listener (events 1, 4, 13)",
    )
    async def channel(request: Request, tenant: str, token: str, channel_id: str) -> JSONResponse:
        # Taken as text so that a malformed id is a 404 like any other unknown URL, not a 422.
        if not channel_id.isdigit() or len(channel_id) > 9:
            return NOT_FOUND
        return await handle(request, tenant, token, int(channel_id))

    return api

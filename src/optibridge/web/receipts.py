"""Provider receipts: what happened to a message after we handed it over.

    POST /r/twilio/{token}    Twilio StatusCallback (form-encoded); the token names the message
    POST /r/generic/{tenant}  generic delivery reports (JSON), signed per tenant:
                              X-Optibridge-Signature: sha256=<hex HMAC-SHA256 of the raw body>

What the provider said at send time (bounces) is optibridge.feedback.send_results.

Unknown or tampered token, bad signature: 404, nothing recorded. A body we cannot read: 400,
nothing recorded (a generic report is all or nothing). Repeats are answered 200 and insert nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from optibridge.core.feedback_settings import FeedbackSettings, feedback_settings
from optibridge.core.logs import get_logger
from optibridge.feedback.events import Event, record_events
from optibridge.feedback.keys import TrackingKeys, verify_body_signature
from optibridge.feedback.receipt_parsing import InvalidReceipt, generic_events, twilio_event
from optibridge.feedback.tokens import InvalidToken, TokenKind, decode
from optibridge.runtime import Runtime

log = get_logger(__name__)

Clock = Callable[[], datetime]
SIGNATURE_HEADER = "X-Optibridge-Signature"
MAX_FORM_BODY = 16 * 1024
MAX_JSON_BODY = 1024 * 1024
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _not_found() -> JSONResponse:
    return JSONResponse({"error": "not found"}, status_code=404)


def _bad(reason: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body


def router(
    runtime: Runtime,
    *,
    settings: FeedbackSettings | None = None,
    keys: TrackingKeys | None = None,
    clock: Clock = _utcnow,
) -> APIRouter:
    cfg = settings or feedback_settings(runtime.settings)
    tracking_keys = keys or TrackingKeys.from_settings(runtime.settings)
    api = APIRouter(tags=["provider receipts"])

    async def record(events: list[Event]) -> int:
        async with runtime.pool.connection() as conn:
            return await record_events(conn, events)

    @api.post("/r/twilio/{token}", include_in_schema=False)
    async def twilio_status(request: Request, token: str) -> Response:
        try:
            parsed = decode(tracking_keys, token, TokenKind.SMS_STATUS)
        except InvalidToken:
            return _not_found()
        body = await _read_body(request, MAX_FORM_BODY)
        if body is None:
            return _bad("body too large", 413)
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100))
            event = twilio_event(form, parsed.message_id, clock())
        except (UnicodeDecodeError, ValueError) as exc:
            # InvalidReceipt is a ValueError; so is parse_qsl's "too many fields".
            return _bad(str(exc)[:200] if isinstance(exc, InvalidReceipt) else "malformed form body")
        if event is not None:
            await record([event])
        # Twilio wants a 2xx and ignores the body; an empty one avoids TwiML parsing warnings.
        return Response(status_code=200)

    @api.post("/r/generic/{tenant}", include_in_schema=False)
    async def generic(request: Request, tenant: str) -> JSONResponse:
        if not _TENANT.match(tenant):
            return _not_found()
        body = await _read_body(request, MAX_JSON_BODY)
        if body is None:
            return _bad("body too large", 413)
        if not verify_body_signature(
            tracking_keys.receipt_keys(tenant), body, request.headers.get(SIGNATURE_HEADER)
        ):
            return _not_found()
        try:
            data: Any = json.loads(body)
            events = generic_events(data, tenant, clock(), max_events=cfg.max_receipt_events)
        except (UnicodeDecodeError, ValueError) as exc:
            reason = str(exc)[:200] if isinstance(exc, InvalidReceipt) else "body is not valid JSON"
            return _bad(reason)
        except RecursionError:
            return _bad("body is nested too deeply")
        recorded = await record(events)
        log.info("generic receipts", tenant=tenant, received=len(events), recorded=recorded)
        return JSONResponse({"received": len(events), "recorded": recorded})

    return api

"""Provider receipts: what happened to a message after we handed it over.

    POST /r/twilio/{token}    Twilio StatusCallback (form-encoded); the token names the message,
                              X-Twilio-Signature proves Twilio sent it
    POST /r/generic/{tenant}  generic delivery reports (JSON), signed per tenant:
                              X-Optibridge-Signature: sha256=<hex HMAC-SHA256 of the raw body>

What the provider said at send time (bounces) is optibridge.feedback.send_results.

Unknown or tampered token, bad generic signature: 404, nothing recorded. A body we cannot read:
400, nothing recorded (a generic report is all or nothing). Repeats are answered 200 and insert
nothing.

Twilio callbacks, in this order: a token we did not make -> 404; a token older than the reporting
window plus a day (`tokens.callback_max_age`) -> 410; a missing or wrong X-Twilio-Signature -> 403.
The signature is Twilio's HMAC-SHA1 with the auth token of the Twilio account(s) configured on the
message's channel, over the URL Twilio called: the configured public URL (`public_url`) + the path
+ the query, never the Host header we received (a reverse proxy rewrites that). Without a public
URL (tests, local runs: no callback URL is then handed to Twilio) the request's own URL is used.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from optibridge.core.feedback_settings import FeedbackSettings, feedback_settings
from optibridge.core.logs import get_logger
from optibridge.core.reporting_settings import reporting_settings
from optibridge.feedback.events import Event, record_events
from optibridge.feedback.keys import TrackingKeys, verify_body_signature
from optibridge.feedback.links import TWILIO_PATH
from optibridge.feedback.receipt_parsing import (
    InvalidReceipt,
    form_pairs,
    generic_events,
    twilio_auth_tokens,
    twilio_event,
    twilio_signature_valid,
)
from optibridge.feedback.tokens import InvalidToken, TokenKind, callback_max_age, decode, expired
from optibridge.runtime import Runtime
from optibridge.store import tenants as tenant_store

log = get_logger(__name__)

Clock = Callable[[], datetime]
SIGNATURE_HEADER = "X-Optibridge-Signature"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
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
    max_age = callback_max_age(timedelta(days=reporting_settings(runtime.settings).window_days))
    public_url = runtime.settings.public_url
    api = APIRouter(tags=["provider receipts"])

    def called_url(request: Request, token: str) -> str:
        """The URL Twilio signed: the one we gave it (public URL + path), with the query it sent."""
        if not public_url:
            return str(request.url)
        query = request.url.query
        return f"{public_url.rstrip('/')}{TWILIO_PATH}{token}" + (f"?{query}" if query else "")

    async def twilio_tokens(message_id: uuid.UUID) -> list[str]:
        async with runtime.pool.connection() as conn:
            found = await tenant_store.message_channel_provider_settings(conn, runtime.box, message_id)
        return twilio_auth_tokens(found) if found is not None else []

    async def record(events: list[Event]) -> int:
        async with runtime.pool.connection() as conn:
            return await record_events(conn, events)

    @api.post("/r/twilio/{token}", include_in_schema=False)
    async def twilio_status(request: Request, token: str) -> Response:
        try:
            parsed = decode(tracking_keys, token, TokenKind.SMS_STATUS)
        except InvalidToken:
            return _not_found()
        now = clock()
        if expired(parsed, now, max_age):
            return _bad("callback expired", 410)
        signature = request.headers.get(TWILIO_SIGNATURE_HEADER)
        if not signature:
            return _bad("missing X-Twilio-Signature", 403)
        body = await _read_body(request, MAX_FORM_BODY)
        if body is None:
            return _bad("body too large", 413)
        try:
            pairs = form_pairs(body)
        except InvalidReceipt as exc:
            return _bad(str(exc))
        auth_tokens = await twilio_tokens(parsed.message_id)
        if not twilio_signature_valid(auth_tokens, called_url(request, token), pairs, signature):
            log.warning("twilio callback refused: bad signature", message_id=str(parsed.message_id))
            return _bad("bad X-Twilio-Signature", 403)
        try:
            event = twilio_event(dict(pairs), parsed.message_id, now)
        except InvalidReceipt as exc:
            return _bad(str(exc)[:200])
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

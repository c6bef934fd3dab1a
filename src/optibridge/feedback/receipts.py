"""Provider receipts: what happened to a message after we handed it over.

    POST /r/twilio/{token}    Twilio StatusCallback (form-encoded); the token names the message
    POST /r/generic/{tenant}  generic delivery reports (JSON), signed per tenant:
                              X-Optibridge-Signature: sha256=<hex HMAC-SHA256 of the raw body>

And, for the dispatcher, `record_send_results`: what the provider said at send time (an SMTP 5xx
on RCPT, an FCM UNREGISTERED token) recorded as bounces in the transaction that marks the messages.

Unknown or tampered token, bad signature: 404, nothing recorded. A body we cannot read: 400,
nothing recorded (a generic report is all or nothing). Repeats are answered 200 and insert nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from optibridge.delivery.channels.base import Outcome, SendResult
from optibridge.feedback.config import FeedbackSettings, feedback_settings
from optibridge.feedback.events import Conn, Event, EventKind, Source, record_events
from optibridge.feedback.keys import TrackingKeys, verify_body_signature
from optibridge.feedback.receipt_parsing import InvalidReceipt, generic_events, twilio_event
from optibridge.feedback.tokens import InvalidToken, TokenKind, decode
from optibridge.logs import get_logger
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


def send_result_events(results: Iterable[tuple[uuid.UUID | str, SendResult]], now: datetime) -> list[Event]:
    """The events that send-time results mean: a bounce for a bad recipient, nothing otherwise.

    Accepted (SENT) needs no event: `sent` is counted from the message state the dispatcher sets.
    A PERMANENT failure that is not the recipient's fault is counted as dropped from the 'failed'
    state; only `bounce` (bad mailbox/number) and `unregistered` (dead push token) are bounces.
    """
    events = []
    for message_id, result in results:
        if result.outcome is not Outcome.PERMANENT or not (result.bounce or result.unregistered):
            continue
        mid = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(str(message_id))
        reason = result.reason or ("push token unregistered" if result.unregistered else "bounced")
        events.append(
            Event(
                message_id=mid,
                kind=EventKind.BOUNCED,
                source=Source.SEND,
                dedupe_key=f"send:{mid}:bounced",
                occurred_at=now,
                reason=reason,
            )
        )
    return events


async def record_send_results(
    conn: Conn, results: Iterable[tuple[uuid.UUID | str, SendResult]], *, now: datetime
) -> int:
    """Record what the provider answered at send time; returns how many bounces were new.

    Call it with every (message id, SendResult) of a slice, on the connection and inside the
    transaction that moves those messages to 'sent'/'failed'; the bounced addresses (and dead push
    tokens) go on the suppression list in the same transaction.
    """
    return await record_events(conn, send_result_events(results, now))


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

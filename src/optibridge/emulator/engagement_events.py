"""The emulated engagement-metrics endpoint (`POST metric-<tenant>.optimove.net/api/saveEvent`,
optimove-api §9.3) and its control calls.

The emulator serves every host on one port, so the metric tenant id is taken from the Host header
(`metric-<tenant>.optimove.net`, any domain) or, for a client on loopback, from the path:
`http://127.0.0.1:PORT/metric-<tenant>/api/saveEvent` (set the tenant's engagement base URL to
`http://127.0.0.1:PORT/metric-<tenant>`). The metric tenant id is the emulator tenant's id.

Checks, in order (no kinder than the real endpoint is said to be): body size (413); tenant known
(404) with a token set (401); `X-Optimove-Signature-Version: 1` (401); the HMAC-SHA256 of the raw
body with the tenant's token (403 when wrong, 401 when absent); JSON (400); each event: `event`,
`category`, `timestamp` (UTC, at most 7 days old, at most 5 minutes in the future), `customer`
or `visitor` (400 naming the first bad event; nothing of that request is kept). Accepted events
are kept in memory, readable at `GET /emulator/tenants/{id}/engagement-events`.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from optibridge.emulator.state import EmulatorState
from optibridge.optimove.engagement_events import (
    MAX_EVENT_AGE,
    SIGNATURE_HEADER,
    SIGNATURE_VERSION,
    SIGNATURE_VERSION_HEADER,
    signature_matches,
)

MAX_BODY_BYTES: Final = 1_000_000
MAX_EVENTS: Final = 1000
FUTURE_SKEW: Final = timedelta(minutes=5)
KEPT_EVENTS: Final = 200_000  # per tenant; older ones are forgotten first

router = APIRouter()
control_router = APIRouter(prefix="/emulator", tags=["emulator control"])


@dataclass(slots=True)
class TenantEvents:
    token: str | None = None
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEPT_EVENTS))
    accepted_requests: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # by HTTP status


@dataclass(slots=True)
class EngagementBook:
    tenants: dict[str, TenantEvents] = field(default_factory=dict)

    def of(self, tenant_id: str) -> TenantEvents:
        entry = self.tenants.get(tenant_id)
        if entry is None:
            entry = self.tenants[tenant_id] = TenantEvents()
        return entry


class Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _book(request: Request) -> EngagementBook:
    book = getattr(request.app.state, "engagement", None)
    if not isinstance(book, EngagementBook):
        book = request.app.state.engagement = EngagementBook()
    return book


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def tenant_from_host(host: str | None) -> str | None:
    """`metric-123.optimove.net[:port]` -> "123"; None for any other host."""
    if not host:
        return None
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    first = name.split(".", 1)[0].lower()
    if not first.startswith("metric-"):
        return None
    return first[len("metric-") :] or None


def parse_timestamp(value: object) -> datetime | None:
    """An ISO 8601 timestamp (`Z` or an offset; none means UTC), or None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def check_event(event: object, now: datetime) -> str | None:
    """Why one event is refused, or None."""
    if not isinstance(event, dict):
        return "not an object"
    if not isinstance(event.get("event"), str) or not event["event"]:
        return "event is required (a string)"
    if not isinstance(event.get("category"), str) or not event["category"]:
        return "category is required (a string)"
    customer, visitor = event.get("customer"), event.get("visitor")
    if not (isinstance(customer, str) and customer) and not (isinstance(visitor, str) and visitor):
        return "customer or visitor is required (a string)"
    if "context" in event and not isinstance(event["context"], dict):
        return "context must be an object"
    when = parse_timestamp(event.get("timestamp"))
    if when is None:
        return "timestamp is required (an ISO 8601 UTC time)"
    if now - when > MAX_EVENT_AGE:
        return "timestamp is more than 7 days old"
    if when - now > FUTURE_SKEW:
        return "timestamp is in the future"
    return None


def _verify(request: Request, tenant: TenantEvents, body: bytes) -> None:
    if tenant.token is None:
        raise Refusal(401, "no engagement token is set for this tenant")
    if request.headers.get(SIGNATURE_VERSION_HEADER, "").strip() != SIGNATURE_VERSION:
        raise Refusal(401, f"{SIGNATURE_VERSION_HEADER} must be {SIGNATURE_VERSION}")
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise Refusal(401, f"{SIGNATURE_HEADER} is missing")
    if not signature_matches(body, tenant.token, signature):
        raise Refusal(403, "signature does not match")


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise Refusal(413, f"body over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refusal(413, f"body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _events(body: bytes, now: datetime) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except ValueError:
        raise Refusal(400, "body is not JSON") from None
    events = data if isinstance(data, list) else [data]
    if not events:
        raise Refusal(400, "no events")
    if len(events) > MAX_EVENTS:
        raise Refusal(400, f"more than {MAX_EVENTS} events in one request")
    for i, event in enumerate(events):
        reason = check_event(event, now)
        if reason is not None:
            raise Refusal(400, f"event {i}: {reason}")
    return events


async def _save(request: Request, tenant_id: str | None) -> Response:
    book = _book(request)
    state = _state(request)
    entry: TenantEvents | None = None
    try:
        if tenant_id is None or tenant_id not in state.tenants:
            raise Refusal(404, "no such metric tenant")
        entry = book.of(tenant_id)
        body = await _read_body(request)
        _verify(request, entry, body)
        events = _events(body, state.clock.now())
    except Refusal as refusal:
        if entry is not None:
            entry.refused[refusal.status] += 1
        return JSONResponse({"status": refusal.status, "message": refusal.message}, refusal.status)
    received = state.clock.now().isoformat()
    for event in events:
        entry.events.append({**event, "received_at": received})
    entry.accepted_requests += 1
    return JSONResponse({"status": 200, "accepted": len(events)})


@router.post("/api/saveEvent", include_in_schema=False)
async def save_event(request: Request) -> Response:
    return await _save(request, tenant_from_host(request.headers.get("host")))


@router.post("/metric-{tenant_id}/api/saveEvent", include_in_schema=False)
async def save_event_by_path(request: Request, tenant_id: str) -> Response:
    return await _save(request, tenant_id)


class EngagementToken(BaseModel):
    token: str = Field(min_length=1, description="HMAC key the tenant's saveEvent bodies are signed with")


class EngagementEvents(BaseModel):
    events: list[dict[str, Any]]
    accepted_requests: int
    refused: dict[int, int] = Field(description="refused requests by HTTP status")


def _tenant_id(request: Request, tenant_id: str) -> str:
    if tenant_id not in _state(request).tenants:
        raise HTTPException(404, f"no tenant {tenant_id!r}")
    return tenant_id


@control_router.put("/tenants/{tenant_id}/engagement-token", status_code=204)
async def set_engagement_token(request: Request, tenant_id: str, body: EngagementToken) -> Response:
    """Set the token saveEvent signatures of this tenant are checked against."""
    _book(request).of(_tenant_id(request, tenant_id)).token = body.token
    return Response(status_code=204)


@control_router.get("/tenants/{tenant_id}/engagement-events")
async def engagement_events(request: Request, tenant_id: str) -> EngagementEvents:
    """The events accepted for this tenant (oldest first), and the refused requests' count."""
    entry = _book(request).of(_tenant_id(request, tenant_id))
    return EngagementEvents(
        events=list(entry.events), accepted_requests=entry.accepted_requests, refused=dict(entry.refused)
    )

"""Event 14's webhook (Optimove's Scheduled Campaign Integration flow), one per tenant and channel:

    POST /optimove/{tenant}/{token}/channels/{channel_id}/engagements

The token is the tenant's listener token (store/listener_tokens.py): the same secret, rotation and
404-on-anything-wrong as the listeners. The body (16 KiB at most, web/limits.py) is read before a
database connection is taken; a valid one is answered 202 once the engagement, its campaign and
its ingest job are committed. The GCS work happens in that job (intake/engagement_tasks.py).
A repeated POST of the same EngagementID is answered 202 again and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from optibridge.core.logs import get_logger
from optibridge.intake.engagement_accept import accept_engagement
from optibridge.intake.engagement_payload import InvalidEngagement, parse_event
from optibridge.runtime import Runtime
from optibridge.store import channels, listener_tokens
from optibridge.web.limits import ENGAGEMENT_BYTES
from optibridge.web.listener import _TENANT, BODY_TIMEOUT_S, NOT_FOUND, _bad, _read_json

log = get_logger(__name__)


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(tags=["optimove listener"])

    @api.post(
        "/optimove/{tenant}/{token}/channels/{channel_id}/engagements",
        summary="Event 14 webhook (Scheduled Campaign Integration: metadata and Avro files in GCS)",
        status_code=202,
    )
    async def engagement(request: Request, tenant: str, token: str, channel_id: str) -> JSONResponse:
        if not _TENANT.match(tenant) or not channel_id.isdigit() or len(channel_id) > 9:
            return NOT_FOUND
        if len(token) > 200:
            return NOT_FOUND
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > ENGAGEMENT_BYTES:
            return _bad(f"body larger than {ENGAGEMENT_BYTES} bytes", 413)
        body = await _read_json(request, min(BODY_TIMEOUT_S, runtime.settings.body_timeout_s + 1))
        channel = int(channel_id)
        async with runtime.pool.connection() as conn:
            if not await listener_tokens.is_valid(conn, tenant, token, datetime.now(UTC)):
                return NOT_FOUND
            name = (await channels.names_by_id(conn, tenant)).get(channel)
            if name is None:
                return NOT_FOUND
            if isinstance(body, JSONResponse):
                return body
            try:
                event = parse_event(body)
            except InvalidEngagement as exc:
                log.warning("engagement webhook: rejected", tenant=tenant, reason=str(exc))
                return _bad(str(exc))
            if event.channel_id is not None and event.channel_id != channel:
                return _bad(f"ChannelID {event.channel_id} is not this webhook's channel {channel}")
            outcome = await accept_engagement(
                conn, runtime.job_app, runtime.box, tenant, channel, name, event, body
            )
        log.info(
            "engagement webhook",
            tenant=tenant,
            channel=channel,
            campaign=event.campaign_id,
            engagement=event.engagement_id,
            outcome=outcome,
            problems=list(event.problems) or None,
        )
        return JSONResponse({"status": "accepted", "outcome": outcome}, status_code=202)

    return api

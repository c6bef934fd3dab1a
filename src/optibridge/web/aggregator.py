"""The SMS aggregator flow's HTTP edges (docs/flows/sms-aggregator.md, reference §12).

Public, for Optimove:

    POST /aggregator/{tenant}/{token}/channels/{channel_id}/campaigns    a campaign batch

Checked in this order, each before anything more is read or parsed: the URL (tenant pattern,
channel digits), the `X-API-Key` and `x-hub-signature` headers present (401), the listener token
(404, like the listeners: nothing to learn by probing) and the aggregator key (401), both looked up
on a connection given back at once; then the body, bounded in size and time (web/limits.py's
"aggregator" rule, and here again); then the signature over the raw bytes (401); only then JSON.
A body that is not a batch: 400 with the reason, nothing stored. Accepted: 200 once the batch and
every recipient's message row are committed.

Admin API (under /api/v1, bearer keys like every admin route):

    GET/PUT/DELETE /tenants/{t}/channels/{channel_id}/aggregator        settings (secrets never echoed)
    POST           /tenants/{t}/channels/{channel_id}/aggregator/handshake   run it now
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from optibridge.channels.setting_checks import CONTROL, check_http_url
from optibridge.core.errors import ConfigError, NotFoundError
from optibridge.core.logs import get_logger
from optibridge.intake import aggregator_batch, aggregator_intake
from optibridge.intake.aggregator_tasks import defer_handshake
from optibridge.optimove.aggregator import (
    AGGREGATOR_KEY_HEADER,
    SIGNATURE_HEADER,
    key_matches,
    signature_valid,
)
from optibridge.runtime import Runtime
from optibridge.store import aggregator as store
from optibridge.store import listener_tokens
from optibridge.web.api.common import (
    COMMON_RESPONSES,
    CONFLICT,
    NOT_FOUND,
    Auth,
    ErrorBody,
    SafeRoute,
    TenantId,
    translate,
)
from optibridge.web.auth import ApiError

log = get_logger(__name__)

MAX_BODY = 4 * 1024 * 1024  # 10,000 recipients of ~400 bytes; web/limits.py refuses more first
BODY_TIMEOUT_S = 11.0
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


async def read_body(request: Request, timeout_s: float) -> bytes | JSONResponse:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return _error(413, f"body larger than {MAX_BODY} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    return _error(413, f"body larger than {MAX_BODY} bytes")
    except TimeoutError:
        return _error(408, f"body not received within {timeout_s:g} s")
    return bytes(body)


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(tags=["optimove sms aggregator"])

    @api.post(
        "/aggregator/{tenant}/{token}/channels/{channel_id}/campaigns",
        summary="SMS aggregator campaign batch (Optimove -> us, signed)",
    )
    async def campaign_batch(request: Request, tenant: str, token: str, channel_id: str) -> JSONResponse:
        if not _TENANT.match(tenant) or not channel_id.isdigit() or len(channel_id) > 9:
            return _error(404, "not found")
        key = request.headers.get(AGGREGATOR_KEY_HEADER)
        signed = request.headers.get(SIGNATURE_HEADER)
        if not key or not signed or len(key) > 200:
            return _error(401, f"{AGGREGATOR_KEY_HEADER} and {SIGNATURE_HEADER} are required")
        cid = int(channel_id)
        async with runtime.pool.connection() as conn:
            if not await listener_tokens.is_valid(conn, tenant, token, datetime.now(UTC)):
                return _error(404, "not found")
            channel = await store.by_key(conn, runtime.box, tenant, cid, key)
        if channel is None or not key_matches(channel.aggregator_key, key):
            log.warning("aggregator: batch with a wrong X-API-Key", tenant=tenant, channel=cid)
            return _error(401, f"wrong {AGGREGATOR_KEY_HEADER}")
        body = await read_body(request, min(BODY_TIMEOUT_S, runtime.settings.body_timeout_s + 1))
        if isinstance(body, JSONResponse):
            return body
        if not signature_valid(channel.shared_secret, body, signed):
            log.warning("aggregator: batch with a wrong signature", tenant=tenant, channel=cid)
            return _error(401, f"wrong {SIGNATURE_HEADER}")
        try:
            data = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            return _error(400, "body is not UTF-8")
        except (ValueError, RecursionError) as exc:
            return _error(400, f"body is not valid JSON: {str(exc)[:200]}")
        try:
            batch = aggregator_batch.parse(data, tenant, cid, datetime.now(UTC))
        except aggregator_batch.InvalidBatch as exc:
            log.warning("aggregator: batch refused", tenant=tenant, channel=cid, reason=str(exc))
            return _error(400, str(exc))
        async with runtime.pool.connection() as conn:
            stored = await aggregator_intake.store_batch(conn, tenant, cid, batch)
        log.info(
            "aggregator: batch",
            tenant=tenant,
            channel=cid,
            campaign=batch.campaign_id,
            batch=batch.batch_id,
            recipients=batch.recipients,
            inserted=stored.inserted,
            duplicate=stored.duplicate,
        )
        return JSONResponse(
            {
                "status": "duplicate" if stored.duplicate else "accepted",
                "batchId": batch.batch_id,
                "requestId": batch.request_id,
                "recipients": batch.recipients,
                "accepted": stored.accepted,
                "notes": stored.notes,
            }
        )

    return api


# -- admin API --------------------------------------------------------------------------------


class AggregatorIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    base_url: str = Field(description="<BASE_URL> from Optimove (Settings > SMS > SMS Config)")
    app_api_key: SecretStr = Field(description="app-api-key from Optimove; stored encrypted, never shown")
    shared_secret: SecretStr = Field(
        description="Shared secret of the x-hub-signature HMAC; stored encrypted"
    )
    receipt_wait_s: int = Field(
        default=0, ge=0, le=86400, description="Seconds to wait for a provider receipt before reporting"
    )
    rotate_key: bool = Field(default=False, description="Generate a new aggregator key (X-API-Key)")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, base_only=True)

    @field_validator("app_api_key", "shared_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if not text or len(text) > 500 or CONTROL.search(text):
            raise ValueError("must be 1-500 characters on one line")
        return value


class AggregatorOut(BaseModel):
    channel_id: int
    base_url: str
    receipt_wait_s: int
    handshake_url: str | None = Field(description="The campaignSendUrl registered, token masked")
    handshake_at: datetime | None
    handshake_error: str | None
    reports_sent: int
    reports_pending: int
    reports_failing: int
    handshake_queued: bool = False


class HandshakeOut(BaseModel):
    ok: bool
    error: str | None


def _out(ch: store.AggregatorChannel, counts: store.ReportCounts, queued: bool = False) -> AggregatorOut:
    return AggregatorOut(
        channel_id=ch.channel_id,
        base_url=ch.base_url,
        receipt_wait_s=ch.receipt_wait_s,
        handshake_url=ch.handshake_url.replace("{token}", "***") if ch.handshake_url else None,
        handshake_at=ch.handshake_at,
        handshake_error=ch.handshake_error,
        reports_sent=counts.reported,
        reports_pending=counts.pending,
        reports_failing=counts.failing,
        handshake_queued=queued,
    )


def admin_router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["sms aggregator"], responses=COMMON_RESPONSES)
    path = "/tenants/{tenant_id}/channels/{channel_id}/aggregator"

    async def _get(tenant_id: str, channel_id: int) -> AggregatorOut:
        async with runtime.pool.connection() as conn:
            ch = await store.get(conn, runtime.box, tenant_id, channel_id)
            if ch is None:
                raise ApiError(404, "not found", f"channel {channel_id} is not in aggregator mode")
            counts = await store.report_counts(conn, tenant_id, channel_id)
        return _out(ch, counts)

    @api.get(path, summary="A channel's SMS aggregator settings (secrets never shown)", responses=NOT_FOUND)
    async def get_aggregator(principal: Auth, tenant_id: TenantId, channel_id: int) -> AggregatorOut:
        principal.require_tenant(tenant_id)
        return await _get(tenant_id, channel_id)

    @api.put(
        path,
        summary="Put an SMS channel in aggregator mode (queues the handshake when anything changed)",
        responses=NOT_FOUND,
    )
    async def put_aggregator(
        principal: Auth, tenant_id: TenantId, channel_id: int, body: AggregatorIn
    ) -> AggregatorOut:
        principal.require_tenant(tenant_id)
        reason = await runtime.settings.outbound_policy.check_resolved(body.base_url)
        if reason is not None:
            raise ApiError(422, "invalid", f"base_url refused by the outbound policy: {reason}")
        async with runtime.pool.connection() as conn:
            try:
                async with conn.transaction():
                    ch, changed = await store.configure(
                        conn,
                        runtime.box,
                        tenant_id,
                        channel_id,
                        base_url=body.base_url,
                        app_api_key=body.app_api_key.get_secret_value(),
                        shared_secret=body.shared_secret.get_secret_value(),
                        receipt_wait_s=body.receipt_wait_s,
                        rotate_key=body.rotate_key,
                    )
                    queued = changed and await defer_handshake(conn, runtime.job_app, tenant_id, channel_id)
            except NotFoundError as exc:
                raise translate(exc) from None
            counts = await store.report_counts(conn, tenant_id, channel_id)
        return _out(ch, counts, queued)

    @api.delete(path, summary="Leave aggregator mode (batches are refused from then on)", responses=NOT_FOUND)
    async def delete_aggregator(principal: Auth, tenant_id: TenantId, channel_id: int) -> JSONResponse:
        principal.require_tenant(tenant_id)
        async with runtime.pool.connection() as conn:
            if not await store.remove(conn, tenant_id, channel_id):
                raise ApiError(404, "not found", f"channel {channel_id} is not in aggregator mode")
        return JSONResponse({"deleted": True})

    @api.post(
        path + "/handshake",
        summary="Run the handshake with Optimove now (registers our campaignSendUrl and key)",
        responses={
            **NOT_FOUND,
            **CONFLICT,
            502: {"model": ErrorBody, "description": "The aggregator base URL refused or failed"},
        },
    )
    async def run_handshake(principal: Auth, tenant_id: TenantId, channel_id: int) -> HandshakeOut:
        principal.require_tenant(tenant_id)
        try:
            result = await aggregator_intake.handshake(runtime, tenant_id, channel_id)
        except NotFoundError as exc:
            raise translate(exc) from None
        except ConfigError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        if not result.ok:
            raise ApiError(502, "aggregator error", result.error or "handshake failed")
        return HandshakeOut(ok=True, error=None)

    return api

"""Suppression list and metric reports: served by optibridge.feedback and optibridge.reporting.

Those packages are imported when a request needs them, not at start-up: a build without them
still serves the rest of the API, and these two answer 501 with the reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from optibridge.runtime import Runtime
from optibridge.web.api.common import (
    NAME_PATTERN,
    NOT_FOUND,
    Auth,
    CampaignId,
    CursorParam,
    ErrorBody,
    LimitParam,
    Page,
    Responses,
    SafeRoute,
    TenantId,
    decode_cursor,
    encode_cursor,
    tenant_exists,
)
from optibridge.web.auth import ApiError

NOT_BUILT: Responses = {501: {"model": ErrorBody, "description": "This build has no such feature yet"}}


def feature(module: str, attribute: str, what: str) -> Callable[..., Any]:
    """`module.attribute`, imported now; ApiError 501 naming what is missing if it is not there."""
    try:
        found = getattr(importlib.import_module(module), attribute, None)
    except ImportError:
        found = None
    if found is None or not callable(found):
        raise ApiError(
            501, "not implemented", f"{what} is not available in this build ({module}.{attribute})"
        )
    return found  # type: ignore[no-any-return]


class SuppressionOut(BaseModel):
    channel: str
    kind: str
    value: str
    reason: str
    source: str
    note: str | None
    message_id: str | None
    created_at: datetime


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["feedback"])

    @api.get(
        "/tenants/{tenant_id}/suppressions",
        summary="The suppression list, newest first",
        responses={**NOT_FOUND, **NOT_BUILT},
    )
    async def list_suppressions(
        principal: Auth,
        tenant_id: TenantId,
        channel: Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only this channel")] = None,
        limit: LimitParam = 50,
        cursor: CursorParam = None,
    ) -> Page[SuppressionOut]:
        after = decode_cursor(cursor, (int,))
        offset = max(0, after[0]) if after else 0
        await tenant_exists(runtime, principal, tenant_id)
        list_entries = feature("optibridge.feedback.suppression", "list_entries", "The suppression list")
        async with runtime.pool.connection() as conn:
            rows = await list_entries(conn, tenant_id, channel, limit=limit + 1, offset=offset)
        items = [
            SuppressionOut(
                channel=r.channel_name,
                kind=r.kind,
                value=r.value,
                reason=r.reason,
                source=r.source,
                note=r.note,
                message_id=str(r.message_id) if r.message_id else None,
                created_at=r.created_at,
            )
            for r in rows
        ]
        more = len(items) > limit
        return Page[SuppressionOut](
            items=items[:limit], next_cursor=encode_cursor([offset + limit]) if more else None
        )

    @api.get(
        "/tenants/{tenant_id}/reports/{campaign_id}",
        summary="A campaign's metrics: counted now and last accepted by Optimove, per channel and template",
        responses={**NOT_FOUND, **NOT_BUILT},
    )
    async def campaign_report(
        principal: Auth,
        tenant_id: TenantId,
        campaign_id: CampaignId,
    ) -> list[dict[str, Any]]:
        await tenant_exists(runtime, principal, tenant_id)
        overview = feature("optibridge.reporting.show", "campaign_overview", "Campaign reports")
        async with runtime.pool.connection() as conn:
            result: list[dict[str, Any]] = await overview(conn, campaign_id, tenant_id, now=datetime.now(UTC))
        if not result:
            raise ApiError(404, "not found", f"no campaign {campaign_id} on tenant {tenant_id!r}")
        return result

    return api

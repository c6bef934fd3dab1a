"""A tenant's reporting mode and signed engagement events settings (docs/flows/engagement-events.md).

A sub-resource of the tenant, so the tenant schema and its config-file upsert stay as they are. The
token is write-only: answers say only whether one is stored. A tenant key may set its own tenant's.
The metric base URL, when given, passes the operator's outbound policy like `api_base_url`.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from optibridge.channels.factory import check_names_resolve_outside
from optibridge.core.engagement_settings import EngagementConfig, ReportingMode, check_engagement_url
from optibridge.core.errors import ConfigError, ConflictError, NotFoundError
from optibridge.runtime import Runtime
from optibridge.store import engagement_events as engagement_store
from optibridge.web.api.common import CONFLICT, NOT_FOUND, Auth, SafeRoute, TenantId, tenant_exists, translate
from optibridge.web.auth import ApiError


class EngagementOut(BaseModel):
    mode: ReportingMode
    metric_tenant_id: str | None
    base_url: str | None = Field(description="As set; null: https://metric-{tenant_id}.optimove.net")
    effective_base_url: str | None = Field(
        description="Where saveEvent is posted (`/api/saveEvent` appended)"
    )
    has_token: bool = Field(description="Whether an engagement token is stored (it is never shown)")
    updated_at: datetime | None


def _out(row: engagement_store.EngagementRow) -> EngagementOut:
    config = EngagementConfig(mode=row.mode, metric_tenant_id=row.metric_tenant_id, base_url=row.base_url)
    return EngagementOut(
        mode=row.mode,
        metric_tenant_id=row.metric_tenant_id,
        base_url=row.base_url,
        effective_base_url=config.resolved_base_url(),
        has_token=row.has_token,
        updated_at=row.updated_at,
    )


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["tenants"])

    @api.get(
        "/tenants/{tenant_id}/engagement-events",
        summary="The tenant's reporting mode and engagement events settings (token never shown)",
        responses=NOT_FOUND,
    )
    async def get_engagement(principal: Auth, tenant_id: TenantId) -> EngagementOut:
        await tenant_exists(runtime, principal, tenant_id)
        async with runtime.pool.connection() as conn:
            return _out(await engagement_store.get(conn, tenant_id))

    @api.put(
        "/tenants/{tenant_id}/engagement-events",
        summary="Set the reporting mode (classic, events, both) and the saveEvent settings; "
        "a body without token keeps the stored one",
        responses={**NOT_FOUND, **CONFLICT},
    )
    async def put_engagement(principal: Auth, tenant_id: TenantId, body: EngagementConfig) -> EngagementOut:
        await tenant_exists(runtime, principal, tenant_id)
        try:
            check_engagement_url(body, runtime.settings.outbound_policy)
            url = body.resolved_base_url()
            if body.base_url is not None and url is not None:
                await check_names_resolve_outside(
                    [("engagement base_url", url)], runtime.settings.outbound_policy
                )
            async with runtime.pool.connection() as conn:
                row = await engagement_store.set_for_tenant(conn, runtime.box, tenant_id, body)
        except (NotFoundError, ConflictError) as exc:
            raise translate(exc) from None
        except ConfigError as exc:
            raise ApiError(422, "invalid settings", str(exc)[:1000]) from None
        return _out(row)

    @api.delete(
        "/tenants/{tenant_id}/engagement-events",
        status_code=204,
        summary="Back to classic reporting; the stored token is deleted",
        responses={**NOT_FOUND, **CONFLICT},
    )
    async def delete_engagement(principal: Auth, tenant_id: TenantId) -> Response:
        await tenant_exists(runtime, principal, tenant_id)
        async with runtime.pool.connection() as conn:
            try:
                await engagement_store.clear_for_tenant(conn, tenant_id)
            except (NotFoundError, ConflictError) as exc:
                raise translate(exc) from None
        return Response(status_code=204)

    return api

"""Promotions for event-5 campaigns: the tenant's settings (the token write-only) and its runs.
docs/flows/promotions.md. A config-file tenant's settings come from the file (409 here)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from optibridge.core.errors import ConfigError
from optibridge.intake.promotions_settings import PromotionSettingsIn, check_destination
from optibridge.runtime import Runtime
from optibridge.store import promotions as store
from optibridge.store import tenants as tenant_store
from optibridge.web.api.common import CONFLICT, NOT_FOUND, Auth, SafeRoute, TenantId, tenant_exists
from optibridge.web.auth import ApiError


class PromotionSettingsOut(BaseModel):
    enabled: bool
    webhook_url: str | None = Field(description="null: accept all")
    has_token: bool = Field(description="Whether a bearer token is stored (never shown)")
    batch_size: int
    deadline_margin_s: int
    on_deadline: str


class PromotionRunOut(BaseModel):
    campaign_id: int
    clearance_by: datetime
    status: str = Field(description="running, done, deadline (the cutoff came first) or failed")
    next_skip: int = Field(description="Customers whose status is reported (or decided at the deadline)")
    batches: int
    activated: int
    refused: int
    past_deadline: int = Field(description="Reported false (or left) because the cutoff came first")
    promo_failures: int
    bad_rows: int = Field(description="GetProcessedCampaignCustomers rows without a CustomerID (skipped)")
    last_error: str | None


def _out(s: store.PromotionSettings) -> PromotionSettingsOut:
    return PromotionSettingsOut(**s.__dict__)


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["promotions"])
    policy = runtime.settings.outbound_policy

    @api.get(
        "/tenants/{tenant_id}/promotions",
        summary="The tenant's promotion settings (the token is never shown)",
        responses=NOT_FOUND,
    )
    async def get_settings(principal: Auth, tenant_id: TenantId) -> PromotionSettingsOut:
        await tenant_exists(runtime, principal, tenant_id)
        async with runtime.pool.connection() as conn:
            return _out(await store.get_settings(conn, tenant_id))

    @api.put(
        "/tenants/{tenant_id}/promotions",
        summary="Set the tenant's promotion settings (422 if the outbound policy refuses the URL; "
        "409 for a config-file tenant); a body without bearer_token keeps the stored one",
        responses={**NOT_FOUND, **CONFLICT},
    )
    async def put_settings(
        principal: Auth, tenant_id: TenantId, body: PromotionSettingsIn
    ) -> PromotionSettingsOut:
        await tenant_exists(runtime, principal, tenant_id)
        try:
            await check_destination(body, policy)
        except ConfigError as exc:
            raise ApiError(422, "invalid settings", str(exc)[:1000]) from None
        async with runtime.pool.connection() as conn:
            async with conn.transaction():
                if await tenant_store.lock_source(conn, tenant_id) == "config":
                    raise ApiError(
                        409,
                        "conflict",
                        "this tenant comes from the config file: set [tenants.promotions] there",
                    )
                await store.put_config(conn, runtime.box, tenant_id, body)
            return _out(await store.get_settings(conn, tenant_id))

    @api.get(
        "/tenants/{tenant_id}/promotions/runs",
        summary="The latest promotion runs (one per event-5 campaign), newest first",
        responses=NOT_FOUND,
    )
    async def runs(principal: Auth, tenant_id: TenantId) -> list[PromotionRunOut]:
        await tenant_exists(runtime, principal, tenant_id)
        async with runtime.pool.connection() as conn:
            found = await store.list_runs(conn, tenant_id)
        return [PromotionRunOut(**{k: v for k, v in r.__dict__.items() if k != "tenant_id"}) for r in found]

    return api

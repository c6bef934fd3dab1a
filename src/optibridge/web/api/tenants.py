"""Tenants and their channels. Credentials and provider secrets are write-only: never answered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from optibridge.channels.factory import check_names_resolve_outside, named_destinations, validate_tenant
from optibridge.core.config import SECRET_FIELD, ChannelConfig, TenantConfig
from optibridge.core.errors import ConfigError, ConflictError, NotFoundError
from optibridge.runtime import Runtime
from optibridge.store import tenants as tenant_store
from optibridge.web.api.common import (
    CONFLICT,
    NOT_FOUND,
    Auth,
    ChannelName,
    CursorParam,
    LimitParam,
    Page,
    SafeRoute,
    TenantId,
    decode_cursor,
    page_of,
    tenant_exists,
    translate,
)
from optibridge.web.api.tenant_update import TenantUpdate, update
from optibridge.web.auth import ApiError

REDACTED = "***"


class ChannelOut(BaseModel):
    name: str
    kind: str
    channel_id: int = Field(description="Optimove's ChannelID")
    settings: dict[str, Any] = Field(description="Provider settings without secret fields")
    options: dict[str, Any]
    has_secrets: bool = Field(description="Whether secret provider fields are stored (never shown)")


class TenantOut(BaseModel):
    id: str
    name: str
    api_base_url: str
    auth_kind: str = Field(description="api_key or login; the credentials themselves are never shown")
    source: str
    created_at: datetime
    updated_at: datetime
    channels: list[ChannelOut]


def redact(value: Any) -> Any:
    """Provider settings as shown: any field named like a secret, at any depth, is masked."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and SECRET_FIELD.search(k) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


async def _channels(conn: tenant_store.Conn, tenant_ids: list[str]) -> dict[str, list[ChannelOut]]:
    out: dict[str, list[ChannelOut]] = {}
    for c in await tenant_store.channel_views(conn, tenant_ids):
        out.setdefault(c.tenant_id, []).append(
            ChannelOut(
                name=c.name,
                kind=c.kind,
                channel_id=c.optimove_channel_id,
                settings=redact(c.settings),
                options=c.options,
                has_secrets=c.has_secrets,
            )
        )
    return out


async def load_tenants(
    conn: tenant_store.Conn, only: str | None, after: str | None = None, limit: int = 1
) -> list[TenantOut]:
    """Tenants by id order after `after`; `only` restricts to one tenant (a tenant key's own)."""
    rows = await tenant_store.list_page(conn, only=only, after=after, limit=limit)
    channels = await _channels(conn, [r.id for r in rows])
    return [TenantOut(**r.__dict__, channels=channels.get(r.id, [])) for r in rows]


def refused(exc: ConfigError) -> ApiError:
    """A write the settings checks refuse: 422, with our reason (it never quotes a submitted value)."""
    return ApiError(422, "invalid settings", str(exc)[:1000])


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["tenants"])
    policy = runtime.settings.outbound_policy
    public_url = runtime.settings.public_url

    async def names_outside(api_base_url: str | None, channels: list[ChannelConfig] | None) -> None:
        destinations = named_destinations(channels or [])
        if api_base_url is not None:
            destinations.insert(0, ("api_base_url", api_base_url))
        try:
            await check_names_resolve_outside(destinations, policy)
        except ConfigError as exc:
            raise refused(exc) from None

    async def one(tenant_id: str) -> TenantOut:
        async with runtime.pool.connection() as conn:
            rows = await load_tenants(conn, tenant_id)
        if not rows:
            raise ApiError(404, "not found", f"no tenant {tenant_id!r}")
        return rows[0]

    @api.get("/tenants", summary="List tenants (a tenant key sees its own)")
    async def list_tenants(
        principal: Auth, limit: LimitParam = 50, cursor: CursorParam = None
    ) -> Page[TenantOut]:
        after = decode_cursor(cursor, (str,))
        async with runtime.pool.connection() as conn:
            rows = await load_tenants(conn, principal.tenant_id, after[0] if after else None, limit + 1)
        return page_of(rows, limit, lambda t: [t.id])

    @api.post(
        "/tenants",
        status_code=201,
        summary="Add a tenant (admin key); credentials are stored encrypted and never shown",
        responses=CONFLICT,
    )
    async def create_tenant(principal: Auth, body: TenantConfig) -> TenantOut:
        principal.require_admin("adding a tenant")
        try:
            validate_tenant(body, policy, callback_base_url=public_url)
        except ConfigError as exc:
            raise refused(exc) from None
        await names_outside(body.api_base_url, body.channels)
        async with runtime.pool.connection() as conn:
            try:
                await tenant_store.add(conn, runtime.box, body, "api")
            except ConflictError as exc:
                raise translate(exc) from None
        return await one(body.id)

    @api.get("/tenants/{tenant_id}", summary="One tenant and its channels", responses=NOT_FOUND)
    async def get_tenant(principal: Auth, tenant_id: TenantId) -> TenantOut:
        principal.require_tenant(tenant_id)
        return await one(tenant_id)

    @api.patch(
        "/tenants/{tenant_id}",
        summary="Change a tenant: only the fields given (credentials write-only)",
        responses={**NOT_FOUND, **CONFLICT},
    )
    async def update_tenant(principal: Auth, tenant_id: TenantId, body: TenantUpdate) -> TenantOut:
        principal.require_tenant(tenant_id)
        await names_outside(body.api_base_url, body.channels)
        async with runtime.pool.connection() as conn:
            try:
                creds_changed = await update(
                    conn, runtime.box, tenant_id, body, policy=policy, callback_base_url=public_url
                )
            except (NotFoundError, ConflictError) as exc:
                raise translate(exc) from None
            except ConfigError as exc:
                raise refused(exc) from None
        if creds_changed or body.api_base_url is not None:
            await runtime.clients.invalidate(tenant_id)
        return await one(tenant_id)

    @api.delete(
        "/tenants/{tenant_id}",
        status_code=204,
        summary="Remove a tenant and all its data (admin key)",
        responses=NOT_FOUND,
    )
    async def delete_tenant(principal: Auth, tenant_id: TenantId) -> Response:
        principal.require_admin("removing a tenant")
        async with runtime.pool.connection() as conn:
            try:
                await tenant_store.remove(conn, tenant_id)
            except NotFoundError as exc:
                raise translate(exc) from None
        await runtime.clients.invalidate(tenant_id)
        return Response(status_code=204)

    @api.get(
        "/tenants/{tenant_id}/channels",
        summary="A tenant's channels (provider settings without secrets)",
        responses=NOT_FOUND,
    )
    async def list_channels(
        principal: Auth, tenant_id: TenantId, limit: LimitParam = 50, cursor: CursorParam = None
    ) -> Page[ChannelOut]:
        after = decode_cursor(cursor, (str,))
        await tenant_exists(runtime, principal, tenant_id)
        async with runtime.pool.connection() as conn:
            channels = (await _channels(conn, [tenant_id])).get(tenant_id, [])
        if after:
            channels = [c for c in channels if c.name > after[0]]
        return page_of(channels[: limit + 1], limit, lambda c: [c.name])

    @api.get("/tenants/{tenant_id}/channels/{channel}", summary="One channel", responses=NOT_FOUND)
    async def get_channel(principal: Auth, tenant_id: TenantId, channel: ChannelName) -> ChannelOut:
        await tenant_exists(runtime, principal, tenant_id)
        async with runtime.pool.connection() as conn:
            channels = (await _channels(conn, [tenant_id])).get(tenant_id, [])
        for c in channels:
            if c.name == channel:
                return c
        raise ApiError(404, "not found", f"tenant {tenant_id!r} has no channel {channel!r}")

    return api


__all__ = ["ChannelOut", "TenantOut", "redact", "router"]

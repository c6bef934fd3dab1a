"""Listeners: the URLs we want registered with Optimove, what Optimove has, and a sync.

The token in our listener URLs is the secret that authenticates Optimove's calls, so URLs are
answered with it masked (`/optimove/acme/***/events`).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, Field

from optibridge.core.errors import ConfigError, NotFoundError
from optibridge.intake import registration
from optibridge.optimove import OptimoveError
from optibridge.runtime import Runtime
from optibridge.store import listener_tokens
from optibridge.store import tenants as tenant_store
from optibridge.web.api.common import (
    CONFLICT,
    NOT_FOUND,
    Auth,
    ErrorBody,
    SafeRoute,
    TenantId,
    translate,
)
from optibridge.web.auth import ApiError
from optibridge.web.optimove_probe import PROBE_TIMEOUT_S, describe, one_off_client

SYNC_TIMEOUT_S = 60.0


class ListenerOut(BaseModel):
    event_type_id: int
    channel_id: int | None
    url: str = Field(description="The URL, with our secret token masked")


class RegisteredOut(ListenerOut):
    ours: bool = Field(description="The URL is one of this service's URLs for the tenant")
    current: bool = Field(description="It is exactly the URL we want for this event and channel")


class ListenersOut(BaseModel):
    wanted: list[ListenerOut]
    registered: list[RegisteredOut] | None = Field(description="What Optimove has; null if it did not answer")
    in_sync: bool | None = Field(description="Every wanted URL is registered; null if unknown")
    problem: str | None = Field(
        description="Why something above is missing (public_url unset, Optimove error)"
    )


class SyncOut(BaseModel):
    registered: list[ListenerOut]
    unregistered: list[ListenerOut]
    unchanged: int


def mask(url: str, prefix: str, token: str | None = None) -> str:
    if token:
        url = url.replace(token, "***")
    if prefix and url.startswith(prefix):
        rest = url[len(prefix) :]
        _, sep, tail = rest.partition("/")
        return prefix + "***" + sep + tail
    return url


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["listeners"])

    @api.get(
        "/tenants/{tenant_id}/listeners",
        summary="Our listener URLs and what Optimove has registered (asks Optimove, one attempt)",
        responses=NOT_FOUND,
    )
    async def get_listeners(principal: Auth, tenant_id: TenantId) -> ListenersOut:
        principal.require_tenant(tenant_id)
        public_url = runtime.settings.public_url
        async with runtime.pool.connection() as conn:
            try:
                tenant = await tenant_store.get(conn, tenant_id)
            except NotFoundError as exc:
                raise translate(exc) from None
            token = await listener_tokens.current(conn, runtime.box, tenant_id)
        prefix = registration.tenant_prefix(public_url or "", tenant_id) if public_url else ""
        problem: str | None = None
        try:
            wanted = registration.desired(
                public_url, tenant_id, token, {c.optimove_channel_id for c in tenant.channels}
            )
        except ConfigError as exc:
            wanted, problem = [], str(exc)
        registered: list[RegisteredOut] | None = None
        secrets: list[str] = []
        try:
            async with asyncio.timeout(15), one_off_client(runtime, tenant_id) as (client, secrets):
                current = await client.get_registered_event_listeners()
        except (OptimoveError, TimeoutError, OSError) as exc:
            problem = describe(exc, secrets)  # our summary: never Optimove's body
        else:
            want = {(w.event_type_id, w.channel_id): w.listener_url for w in wanted}
            registered = [
                RegisteredOut(
                    event_type_id=c.event_type_id,
                    channel_id=c.channel_id,
                    url=mask(c.listener_url, prefix, token),
                    ours=bool(prefix) and c.listener_url.startswith(prefix),
                    current=want.get((c.event_type_id, c.channel_id)) == c.listener_url,
                )
                for c in current
            ]
        in_sync = None
        if registered is not None and public_url:
            have = {(r.event_type_id, r.channel_id) for r in registered if r.current}
            in_sync = all((w.event_type_id, w.channel_id) in have for w in wanted)
        return ListenersOut(
            wanted=[
                ListenerOut(
                    event_type_id=w.event_type_id, channel_id=w.channel_id, url=mask(w.listener_url, prefix)
                )
                for w in wanted
            ],
            registered=registered,
            in_sync=in_sync,
            problem=problem,
        )

    @api.post(
        "/tenants/{tenant_id}/listeners/sync",
        summary="Register our listener URLs with Optimove, changing only what differs",
        responses={
            **NOT_FOUND,
            **CONFLICT,
            502: {"model": ErrorBody, "description": "Optimove refused or failed"},
            504: {"model": ErrorBody, "description": "Optimove did not answer in time"},
        },
    )
    async def sync_listeners(principal: Auth, tenant_id: TenantId) -> SyncOut:
        principal.require_tenant(tenant_id)
        public_url = runtime.settings.public_url or ""
        if not public_url:
            raise ApiError(
                409, "conflict", "set public_url (OPTIBRIDGE_PUBLIC_URL): the address Optimove reaches us at"
            )
        found: list[str] = []
        try:
            # One quick attempt first: an Optimove that is down fails the request in seconds,
            # instead of after the shared client's retries.
            async with (
                asyncio.timeout(PROBE_TIMEOUT_S + 1),
                one_off_client(runtime, tenant_id) as (client, secrets),
            ):
                found = secrets
                await client.get_registered_event_listeners()
            async with asyncio.timeout(SYNC_TIMEOUT_S):
                plan = await registration.sync_tenant(runtime, tenant_id)
        except NotFoundError as exc:
            raise translate(exc) from None
        except ConfigError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except OptimoveError as exc:
            raise ApiError(502, "optimove error", describe(exc, found)) from None
        except TimeoutError:
            raise ApiError(504, "optimove timeout", "Optimove did not answer in time") from None
        except OSError as exc:
            raise ApiError(
                502, "optimove error", f"Optimove cannot be reached: {type(exc).__name__}"
            ) from None
        prefix = registration.tenant_prefix(public_url, tenant_id)
        return SyncOut(
            registered=[
                ListenerOut(
                    event_type_id=r.event_type_id, channel_id=r.channel_id, url=mask(r.listener_url, prefix)
                )
                for r in plan.register
            ],
            unregistered=[ListenerOut(event_type_id=e, channel_id=c, url="") for e, c in plan.unregister],
            unchanged=len(plan.unchanged),
        )

    return api

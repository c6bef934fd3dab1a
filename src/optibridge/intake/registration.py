"""Flow 1: register our listener URLs with Optimove, changing only what differs.

Per channel we listen to 1 (campaign processed), 4 (canceled) and 13 (executed on the channel),
registered with the channel's ChannelID; on the tenant's general URL, without a ChannelID, to 5
(on hold: Optimove requires it without a channel) and to 2 and 3 (daily milestones, logged only).
GetRegisteredEventListeners is read first; registering twice is harmless anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from optibridge.core.errors import ConfigError
from optibridge.optimove import EventListener, OptimoveClient
from optibridge.runtime import Runtime
from optibridge.store import listener_tokens, tenants

CHANNEL_EVENTS = (1, 4, 13)
GENERAL_EVENTS = (2, 3, 5)


def listener_url(public_url: str, tenant_id: str, token: str, channel_id: int | None) -> str:
    base = public_url.rstrip("/")
    if channel_id is None:
        return f"{base}/optimove/{tenant_id}/{token}/events"
    return f"{base}/optimove/{tenant_id}/{token}/channels/{channel_id}/events"


def tenant_prefix(public_url: str, tenant_id: str) -> str:
    """Every listener URL of the tenant starts with this, whatever its token."""
    return f"{public_url.rstrip('/')}/optimove/{tenant_id}/"


@dataclass(frozen=True, order=True)
class Registration:
    event_type_id: int
    channel_id: int | None
    listener_url: str


def desired(
    public_url: str | None, tenant_id: str, token: str, channel_ids: Iterable[int]
) -> list[Registration]:
    if not public_url:
        raise ConfigError(
            "set public_url (OPTIBRIDGE_PUBLIC_URL): the address at which Optimove reaches this service"
        )
    if not public_url.startswith(("http://", "https://")):
        raise ConfigError(f"public_url must be an http(s) URL, not {public_url!r}")
    wanted = [
        Registration(event, cid, listener_url(public_url, tenant_id, token, cid))
        for cid in sorted(set(channel_ids))
        for event in CHANNEL_EVENTS
    ]
    wanted += [
        Registration(event, None, listener_url(public_url, tenant_id, token, None))
        for event in GENERAL_EVENTS
    ]
    return sorted(wanted)


@dataclass(frozen=True)
class ListenerPlan:
    register: list[Registration]
    unregister: list[tuple[int, int | None]]
    unchanged: list[Registration]


def plan(wanted: list[Registration], current: Iterable[EventListener], our_prefix: str) -> ListenerPlan:
    """What to (un)register. A registration is ours if its URL starts with our tenant prefix;
    ours that are no longer wanted (a channel removed, a rotated token) are unregistered, and a slot
    (event, channel) of one of our channels held by someone else's URL is taken over."""
    have = {(c.event_type_id, c.channel_id): c.listener_url for c in current}
    register, unchanged = [], []
    for reg in wanted:
        if have.get((reg.event_type_id, reg.channel_id)) == reg.listener_url:
            unchanged.append(reg)
        else:
            register.append(reg)
    wanted_keys = {(r.event_type_id, r.channel_id) for r in wanted}
    unregister = sorted(
        (key for key, url in have.items() if url.startswith(our_prefix) and key not in wanted_keys),
        key=lambda k: (k[0], k[1] or 0),
    )
    return ListenerPlan(register, unregister, unchanged)


async def apply(client: OptimoveClient, p: ListenerPlan) -> None:
    for event, channel in p.unregister:
        await client.unregister_event_listener(event, channel)
    for reg in p.register:
        await client.register_event_listener(reg.event_type_id, reg.listener_url, reg.channel_id)


async def sync_tenant(runtime: Runtime, tenant_id: str, *, dry_run: bool = False) -> ListenerPlan:
    """Read what Optimove has registered for the tenant, and register (or remove) what differs."""
    async with runtime.pool.connection() as conn:
        tenant = await tenants.get(conn, tenant_id)
        token = await listener_tokens.current(conn, runtime.box, tenant_id)
    channel_ids = {c.optimove_channel_id for c in tenant.channels}
    wanted = desired(runtime.settings.public_url, tenant_id, token, channel_ids)
    client = await runtime.clients.get(tenant_id)
    current = await client.get_registered_event_listeners()
    p = plan(wanted, current, tenant_prefix(runtime.settings.public_url or "", tenant_id))
    if not dry_run:
        await apply(client, p)
    return p

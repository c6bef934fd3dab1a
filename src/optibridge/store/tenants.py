"""Tenants and their channels: the queries, with credentials encrypted on the way in.

Each write is one transaction: a tenant is stored with all its channels or not at all.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from optibridge.core.config import (
    ChannelConfig,
    TenantConfig,
    merge_provider_settings,
    split_provider_settings,
)
from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.core.secretbox import SecretBox
from optibridge.store import engagement_events, promotions

Conn = psycopg.AsyncConnection[dict[str, Any]]
Source = Literal["config", "cli", "api"]


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str
    optimove_channel_id: int
    settings: dict[str, Any]  # without the secret fields, which are never read back here
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tenant:
    """A stored tenant, without its credentials (see `credentials()`)."""

    id: str
    name: str
    api_base_url: str
    auth_kind: str
    source: str
    created_at: datetime
    updated_at: datetime
    channels: list[Channel] = field(default_factory=list)


async def add(conn: Conn, box: SecretBox, tenant: TenantConfig, source: Source) -> None:
    """Store a new tenant and its channels; ConflictError if the id is taken."""
    async with conn.transaction():
        try:
            await conn.execute(
                """INSERT INTO tenants (id, name, api_base_url, auth_kind, credentials, source)
                   VALUES (%s, %s, %s, %s, %s, %s)""",
                (
                    tenant.id,
                    tenant.name,
                    tenant.api_base_url,
                    tenant.auth_kind,
                    box.encrypt_json(tenant.credentials()),
                    source,
                ),
            )
        except psycopg.errors.UniqueViolation:
            raise ConflictError(f"tenant {tenant.id!r} already exists") from None
        for channel in tenant.channels:
            await _insert_channel(conn, box, tenant.id, channel)
        if tenant.engagement_events is not None:
            await engagement_events.put(conn, box, tenant.id, tenant.engagement_events)
        if tenant.promotions is not None:
            await promotions.put_config(conn, box, tenant.id, tenant.promotions, file=source == "config")


async def _insert_channel(conn: Conn, box: SecretBox, tenant_id: str, ch: ChannelConfig) -> None:
    plain, secret = split_provider_settings(ch.provider)
    try:
        await conn.execute(
            """INSERT INTO channels
                   (tenant_id, name, kind, optimove_channel_id, settings, secrets, options)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (
                tenant_id,
                ch.name,
                ch.kind,
                ch.channel_id,
                Jsonb(plain),
                box.encrypt_json(secret) if secret else None,
                Jsonb(ch.options.model_dump(exclude_defaults=True)),
            ),
        )
    except psycopg.errors.UniqueViolation:
        raise ConflictError(
            f"tenant {tenant_id!r} already has a channel named {ch.name!r} or with ChannelID {ch.channel_id}"
        ) from None


async def _update_channel(
    conn: Conn, box: SecretBox, tenant_id: str, ch: ChannelConfig, *, keep_absent_secrets: bool = False
) -> None:
    """Update one kept channel. `keep_absent_secrets`: a change that carries no secret fields keeps
    the stored ones (the admin API never shows secrets, so a client cannot send them back); a config
    file states them all.
    """
    plain, secret = split_provider_settings(ch.provider)
    keep = keep_absent_secrets and not secret
    try:
        await conn.execute(
            """UPDATE channels SET kind = %s, optimove_channel_id = %s, settings = %s,
                      secrets = CASE WHEN %s THEN secrets ELSE %s END, options = %s, updated_at = now()
               WHERE tenant_id = %s AND name = %s""",
            (
                ch.kind,
                ch.channel_id,
                Jsonb(plain),
                keep,
                box.encrypt_json(secret) if secret else None,
                Jsonb(ch.options.model_dump(exclude_defaults=True)),
                tenant_id,
                ch.name,
            ),
        )
    except psycopg.errors.UniqueViolation:
        raise ConflictError(
            f"tenant {tenant_id!r} already has a channel with ChannelID {ch.channel_id}"
        ) from None


async def replace_channels(
    conn: Conn, box: SecretBox, tenant_id: str, channels: list[ChannelConfig], *, keep_absent_secrets: bool
) -> None:
    """Make the tenant's channels exactly these: drop the others, update kept ones, add new ones.

    Kept channels are updated in place: deleting and re-inserting them would cascade to everything
    stored under them (templates, campaigns).
    """
    found = await conn.execute("SELECT name FROM channels WHERE tenant_id = %s", (tenant_id,))
    existing = {r["name"] for r in await found.fetchall()}
    for name in existing - {c.name for c in channels}:
        await conn.execute("DELETE FROM channels WHERE tenant_id = %s AND name = %s", (tenant_id, name))
    for ch in channels:
        if ch.name in existing:
            await _update_channel(conn, box, tenant_id, ch, keep_absent_secrets=keep_absent_secrets)
        else:
            await _insert_channel(conn, box, tenant_id, ch)


async def upsert_from_config(conn: Conn, box: SecretBox, tenant: TenantConfig) -> str:
    """Make the stored tenant match the config file; returns 'added', 'updated' or 'unchanged'.

    A tenant of the same id that was added by CLI or API is not overwritten by a file: that would
    silently replace credentials someone set on purpose.
    """
    async with conn.transaction():
        row = await (
            await conn.execute(
                "SELECT source, name, api_base_url, auth_kind, credentials FROM tenants "
                "WHERE id = %s FOR UPDATE",
                (tenant.id,),
            )
        ).fetchone()
        if row is None:
            await add(conn, box, tenant, "config")
            return "added"
        if row["source"] != "config":
            raise ConflictError(
                f"tenant {tenant.id!r} in the config file was already added by {row['source']}; "
                "remove one of the two"
            )
        same = (
            row["name"] == tenant.name
            and row["api_base_url"] == tenant.api_base_url
            and box.decrypt_json(row["credentials"]) == tenant.credentials()
            and await _channels_match(conn, box, tenant)
            and await _engagement_matches(conn, box, tenant)
            and await promotions.matches(conn, box, tenant.id, tenant.promotions)
        )
        if same:
            return "unchanged"
        await conn.execute(
            """UPDATE tenants SET name = %s, api_base_url = %s, auth_kind = %s, credentials = %s,
                      updated_at = now() WHERE id = %s""",
            (
                tenant.name,
                tenant.api_base_url,
                tenant.auth_kind,
                box.encrypt_json(tenant.credentials()),
                tenant.id,
            ),
        )
        await replace_channels(conn, box, tenant.id, tenant.channels, keep_absent_secrets=False)
        if tenant.engagement_events is None:
            await engagement_events.remove(conn, tenant.id)
        else:
            await engagement_events.put(conn, box, tenant.id, tenant.engagement_events)
        if tenant.promotions is None:
            await promotions.remove(conn, tenant.id)
        else:
            await promotions.put_config(conn, box, tenant.id, tenant.promotions, file=True)
        return "updated"


async def _engagement_matches(conn: Conn, box: SecretBox, tenant: TenantConfig) -> bool:
    if tenant.engagement_events is None:
        return (await engagement_events.get(conn, tenant.id)).updated_at is None  # nothing stored
    return await engagement_events.matches(conn, box, tenant.id, tenant.engagement_events)


async def _channels_match(conn: Conn, box: SecretBox, tenant: TenantConfig) -> bool:
    rows = await (
        await conn.execute(
            "SELECT name, kind, optimove_channel_id, settings, secrets, options FROM channels "
            "WHERE tenant_id = %s",
            (tenant.id,),
        )
    ).fetchall()
    stored = {
        r["name"]: (
            r["kind"],
            r["optimove_channel_id"],
            merge_provider_settings(r["settings"], box.decrypt_json(r["secrets"]) if r["secrets"] else {}),
            r["options"],
        )
        for r in rows
    }
    wanted = {
        c.name: (c.kind, c.channel_id, c.provider, c.options.model_dump(exclude_defaults=True))
        for c in tenant.channels
    }
    return stored == wanted


async def list_all(conn: Conn) -> list[Tenant]:
    rows = await (
        await conn.execute(
            "SELECT id, name, api_base_url, auth_kind, source, created_at, updated_at "
            "FROM tenants ORDER BY id"
        )
    ).fetchall()
    channels = await _channels_by_tenant(conn, None)
    return [Tenant(**r, channels=channels.get(r["id"], [])) for r in rows]


async def get(conn: Conn, tenant_id: str) -> Tenant:
    row = await (
        await conn.execute(
            "SELECT id, name, api_base_url, auth_kind, source, created_at, updated_at "
            "FROM tenants WHERE id = %s",
            (tenant_id,),
        )
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no tenant {tenant_id!r}")
    channels = await _channels_by_tenant(conn, tenant_id)
    return Tenant(**row, channels=channels.get(tenant_id, []))


async def credentials(conn: Conn, box: SecretBox, tenant_id: str) -> dict[str, str]:
    row = await (await conn.execute("SELECT credentials FROM tenants WHERE id = %s", (tenant_id,))).fetchone()
    if row is None:
        raise NotFoundError(f"no tenant {tenant_id!r}")
    creds: dict[str, str] = box.decrypt_json(row["credentials"])
    return creds


async def seed_api_key_tenant(
    conn: Conn, box: SecretBox, tenant_id: str, api_base_url: str, api_key: str
) -> None:
    """A bare tenant (no name, no channels) with an API key, for tests, demos and benchmarks."""
    await conn.execute(
        """INSERT INTO tenants (id, api_base_url, auth_kind, credentials, source)
           VALUES (%s, %s, 'api_key', %s, 'cli')""",
        (tenant_id, api_base_url, box.encrypt_json({"api_key": api_key})),
    )


async def seed_channel(
    conn: Conn, tenant_id: str, name: str, kind: str, channel_id: int, options: dict[str, Any]
) -> None:
    """A channel with options and no provider settings, for tests, demos and benchmarks."""
    await conn.execute(
        """INSERT INTO channels (tenant_id, name, kind, optimove_channel_id, options)
           VALUES (%s, %s, %s, %s, %s)""",
        (tenant_id, name, kind, channel_id, Jsonb(options)),
    )


async def remove(conn: Conn, tenant_id: str) -> None:
    async with conn.transaction():
        # Messages carry no foreign key (ingest speed), so they go first, by hand.
        await conn.execute("DELETE FROM messages WHERE tenant_id = %s", (tenant_id,))
        cur = await conn.execute("DELETE FROM tenants WHERE id = %s", (tenant_id,))
        if cur.rowcount == 0:
            raise NotFoundError(f"no tenant {tenant_id!r}")


async def _channels_by_tenant(conn: Conn, tenant_id: str | None) -> dict[str, list[Channel]]:
    rows = await (
        await conn.execute(
            "SELECT tenant_id, name, kind, optimove_channel_id, settings, options FROM channels "
            "WHERE %(t)s::text IS NULL OR tenant_id = %(t)s ORDER BY tenant_id, name",
            {"t": tenant_id},
        )
    ).fetchall()
    out: dict[str, list[Channel]] = {}
    for r in rows:
        out.setdefault(r["tenant_id"], []).append(
            Channel(
                name=r["name"],
                kind=r["kind"],
                optimove_channel_id=r["optimove_channel_id"],
                settings=r["settings"],
                options=r["options"],
            )
        )
    return out


async def channel_provider_settings(
    conn: Conn, box: SecretBox, tenant_id: str, channel_id: int
) -> dict[str, Any]:
    """A channel's full provider settings, secrets included (for building the provider)."""
    row = await (
        await conn.execute(
            "SELECT settings, secrets FROM channels WHERE tenant_id = %s AND optimove_channel_id = %s",
            (tenant_id, channel_id),
        )
    ).fetchone()
    if row is None:
        raise NotFoundError(f"tenant {tenant_id!r} has no channel {channel_id}")
    return merge_provider_settings(
        row["settings"], box.decrypt_json(row["secrets"]) if row["secrets"] else {}
    )


async def stored_provider_secrets(conn: Conn, box: SecretBox, tenant_id: str) -> dict[str, dict[str, Any]]:
    """Each channel's stored provider secrets by channel name (channels without secrets absent)."""
    rows = await (
        await conn.execute(
            "SELECT name, secrets FROM channels WHERE tenant_id = %s AND secrets IS NOT NULL", (tenant_id,)
        )
    ).fetchall()
    return {r["name"]: box.decrypt_json(r["secrets"]) for r in rows}


async def message_channel_provider_settings(
    conn: Conn, box: SecretBox, message_id: uuid.UUID
) -> dict[str, Any] | None:
    """The full provider settings of the channel a message was sent on; None for no such message.

    For checking a provider's signature on a callback about that message (Twilio signs with the
    auth token of the account that sent it).
    """
    row = await (
        await conn.execute(
            """SELECT c.settings, c.secrets FROM messages m
               JOIN channels c ON c.tenant_id = m.tenant_id AND c.optimove_channel_id = m.channel_id
               WHERE m.id = %s""",
            (message_id,),
        )
    ).fetchone()
    if row is None:
        return None
    return merge_provider_settings(
        row["settings"], box.decrypt_json(row["secrets"]) if row["secrets"] else {}
    )


async def exists(conn: Conn, tenant_id: str) -> bool:
    row = await (await conn.execute("SELECT 1 FROM tenants WHERE id = %s", (tenant_id,))).fetchone()
    return row is not None


async def channel_exists(conn: Conn, tenant_id: str, channel_id: int) -> bool:
    """Whether the tenant has a channel with this Optimove ChannelID."""
    row = await (
        await conn.execute(
            "SELECT 1 FROM channels WHERE tenant_id = %s AND optimove_channel_id = %s",
            (tenant_id, channel_id),
        )
    ).fetchone()
    return row is not None


@dataclass(frozen=True)
class ChannelView:
    """A channel as the admin API shows it: settings without secrets, and whether secrets are stored."""

    tenant_id: str
    name: str
    kind: str
    optimove_channel_id: int
    settings: dict[str, Any]
    options: dict[str, Any]
    has_secrets: bool


@dataclass(frozen=True)
class TenantRow:
    """A tenant's own columns, without channels or credentials."""

    id: str
    name: str
    api_base_url: str
    auth_kind: str
    source: str
    created_at: datetime
    updated_at: datetime


async def list_page(conn: Conn, *, only: str | None, after: str | None, limit: int) -> list[TenantRow]:
    """Tenants by id order after `after`; `only` restricts to one tenant."""
    rows = await (
        await conn.execute(
            "SELECT id, name, api_base_url, auth_kind, source, created_at, updated_at FROM tenants "
            "WHERE (%(after)s::text IS NULL OR id > %(after)s) AND (%(own)s::text IS NULL OR id = %(own)s) "
            "ORDER BY id LIMIT %(n)s",
            {"after": after, "own": only, "n": limit},
        )
    ).fetchall()
    return [TenantRow(**r) for r in rows]


async def channel_views(conn: Conn, tenant_ids: list[str]) -> list[ChannelView]:
    """The channels of these tenants, by tenant then name."""
    rows = await (
        await conn.execute(
            "SELECT tenant_id, name, kind, optimove_channel_id, settings, options, "
            "secrets IS NOT NULL AS has_secrets FROM channels WHERE tenant_id = ANY(%s) "
            "ORDER BY tenant_id, name",
            (tenant_ids,),
        )
    ).fetchall()
    return [ChannelView(**r) for r in rows]


async def lock_source(conn: Conn, tenant_id: str) -> str | None:
    """The tenant's source, its row locked until the transaction ends; None: no such tenant."""
    row = await (
        await conn.execute("SELECT source FROM tenants WHERE id = %s FOR UPDATE", (tenant_id,))
    ).fetchone()
    return None if row is None else str(row["source"])


async def update_fields(
    conn: Conn,
    tenant_id: str,
    *,
    name: str | None,
    api_base_url: str | None,
    auth_kind: str | None,
    encrypted_credentials: bytes | None,
) -> None:
    """Set the fields given (None: keep the stored value)."""
    await conn.execute(
        """UPDATE tenants SET name = coalesce(%s, name), api_base_url = coalesce(%s, api_base_url),
                  auth_kind = coalesce(%s, auth_kind), credentials = coalesce(%s, credentials),
                  updated_at = now()
           WHERE id = %s""",
        (name, api_base_url, auth_kind, encrypted_credentials, tenant_id),
    )

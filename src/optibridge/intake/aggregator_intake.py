"""The SMS aggregator flow's intake: store a verified batch (one transaction), and the handshake
that tells Optimove where to send batches.

A batch is stored whole or not at all: the batch row (its primary key and request-id index make a
repeat a no-op), the campaign row, the channel's built-in template, the messages and their report
rows commit together, so the 2xx Optimove gets means every recipient is durably ours, and a
repeated or retried batch inserts nothing (message ids are UUIDv5 of tenant, channel, campaign,
customer and template, like the classic flow's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from optibridge.core.errors import ConfigError, NotFoundError
from optibridge.core.logs import get_logger
from optibridge.intake.aggregator_batch import (
    FIRST_EVENT,
    PREPARED_TEMPLATE_BODY,
    PREPARED_TEMPLATE_ID,
    PREPARED_TEMPLATE_NAME,
    Batch,
)
from optibridge.optimove.aggregator import AggregatorClient, AggregatorEndpoint, AggregatorError
from optibridge.runtime import Runtime
from optibridge.store import aggregator as store
from optibridge.store import listener_tokens

log = get_logger(__name__)
Conn = psycopg.AsyncConnection[dict[str, Any]]


@dataclass(frozen=True)
class Stored:
    duplicate: bool
    inserted: int  # new messages (pending or failed at intake)
    accepted: int  # recipients that will be sent
    notes: list[str]


async def store_batch(conn: Conn, tenant_id: str, channel_id: int, batch: Batch) -> Stored:
    """Write a batch in one transaction (the caller holds none); a seen batch writes nothing."""
    async with conn.transaction():
        new = await store.insert_batch(
            conn,
            tenant_id,
            channel_id,
            store.BatchRow(
                batch_id=batch.batch_id,
                request_id=batch.request_id,
                campaign_id=batch.campaign_id,
                sender_id=batch.sender_id,
                metadata=batch.metadata,
                recipients=batch.recipients,
                accepted=batch.accepted,
                notes=batch.notes,
            ),
        )
        if not new:
            return Stored(duplicate=True, inserted=0, accepted=0, notes=[])
        await store.ensure_template(
            conn, tenant_id, channel_id, PREPARED_TEMPLATE_ID, PREPARED_TEMPLATE_NAME, PREPARED_TEMPLATE_BODY
        )
        inserted = await store.insert_messages(
            conn,
            tenant_id,
            channel_id,
            batch.campaign_id,
            PREPARED_TEMPLATE_ID,
            batch.batch_id,
            batch.scheduled_at,
            batch.rows,
        )
        await store.ensure_campaign(
            conn, tenant_id, channel_id, batch.campaign_id, FIRST_EVENT, inserted, batch.recipients
        )
        await store.add_campaign_notes(conn, tenant_id, channel_id, batch.campaign_id, batch.notes)
    return Stored(duplicate=False, inserted=inserted, accepted=batch.accepted, notes=batch.notes)


# -- handshake --------------------------------------------------------------------------------


def campaign_send_url(public_url: str, tenant_id: str, token: str, channel_id: int) -> str:
    """Where Optimove posts batches: the tenant's listener token in the path, like the listeners."""
    return f"{public_url.rstrip('/')}/aggregator/{tenant_id}/{token}/channels/{channel_id}/campaigns"


@dataclass(frozen=True)
class HandshakeResult:
    url: str
    ok: bool
    error: str | None
    transient: bool = False


async def handshake(
    runtime: Runtime, tenant_id: str, channel_id: int, client: AggregatorClient | None = None
) -> HandshakeResult:
    """Register our campaignSendUrl and aggregator key at the tenant's base URL; idempotent (the
    same URL and key each time until the token or key is rotated). The outcome is recorded on the
    channel either way; a transient failure is for the caller (a job) to retry."""
    public = runtime.settings.public_url
    if not public:
        raise ConfigError(
            "set public_url (OPTIBRIDGE_PUBLIC_URL): the address at which Optimove reaches this service"
        )
    async with runtime.pool.connection() as conn:
        channel = await store.get(conn, runtime.box, tenant_id, channel_id)
        if channel is None:
            raise NotFoundError(f"channel {channel_id} of tenant {tenant_id!r} is not in aggregator mode")
        token = await listener_tokens.current(conn, runtime.box, tenant_id)
    url = campaign_send_url(public, tenant_id, token, channel_id)
    endpoint = AggregatorEndpoint(channel.base_url, channel.app_api_key, channel.shared_secret)
    own = client is None
    client = client or AggregatorClient(runtime.settings.outbound_policy)
    try:
        await client.handshake(endpoint, url, channel.aggregator_key)
        result = HandshakeResult(url, ok=True, error=None)
    except AggregatorError as exc:
        result = HandshakeResult(url, ok=False, error=str(exc)[:500], transient=exc.transient)
    finally:
        if own:
            await client.aclose()
    async with runtime.pool.connection() as conn:
        # Recorded without the token: it is a secret, stored encrypted only (store.listener_tokens).
        shown = campaign_send_url(public, tenant_id, "{token}", channel_id)
        await store.record_handshake(
            conn, tenant_id, channel_id, shown, datetime.now(UTC), result.error, registered_url=url
        )
    log.info("aggregator handshake", tenant=tenant_id, channel=channel_id, ok=result.ok, error=result.error)
    return result


async def stale_handshakes(runtime: Runtime) -> list[tuple[str, int]]:
    """Channels whose registered campaignSendUrl is no longer the one we would register (the
    listener token was rotated, or public_url changed): their handshake must run again."""
    public = runtime.settings.public_url
    if not public:
        return []
    stale = []
    async with runtime.pool.connection() as conn:
        tokens: dict[str, str] = {}
        for r in await store.registered(conn):
            if r.tenant_id not in tokens:
                tokens[r.tenant_id] = await listener_tokens.current(conn, runtime.box, r.tenant_id)
            url = campaign_send_url(public, r.tenant_id, tokens[r.tenant_id], r.channel_id)
            if store.url_hash(url) != r.url_hash:
                stale.append((r.tenant_id, r.channel_id))
    return stale

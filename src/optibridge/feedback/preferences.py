"""Tell Optimove about opt-outs (SetCustomerChannelPreference), in batches, from the outbox.

Rows are written to `preference_outbox` in the transaction that records the unsubscribe (or
complaint) and sent by a periodic job: per tenant, channel and mode, up to 50,000 customers a call.
A row is marked sent only after Optimove answered 200; sending a preference twice is harmless (the
last mode wins), so two runs overlapping can never do harm, only repeat a call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg_pool

from optibridge.core.logs import get_logger
from optibridge.optimove import OptimoveClient
from optibridge.optimove.batching import MAX_PREFERENCE_CUSTOMERS
from optibridge.store import preferences as outbox

log = get_logger(__name__)

Pool = psycopg_pool.AsyncConnectionPool[Any]
GetClient = Callable[[str], Awaitable[OptimoveClient]]


@dataclass(frozen=True, slots=True)
class PreferencePush:
    sent: int
    failed_groups: int


async def push_preferences(
    pool: Pool, get_client: GetClient, *, now: datetime, max_groups: int = 100
) -> PreferencePush:
    async with pool.connection() as conn:
        groups = await outbox.pending_groups(conn, max_groups)
    sent = failed = 0
    for group in groups:
        tenant, channel, mode = group.tenant_id, group.channel_id, group.communication_mode
        async with pool.connection() as conn:
            rows = await outbox.pending(conn, group, MAX_PREFERENCE_CUSTOMERS)
        if not rows:
            continue
        ids = [row_id for row_id, _ in rows]
        try:
            client = await get_client(tenant)
            await client.set_customer_channel_preference(
                channel_id=channel, customer_ids=[customer for _, customer in rows], communication_mode=mode
            )
        except Exception as exc:
            # One tenant's trouble (credentials, outage) must not hold back the others.
            failed += 1
            log.warning(
                "preferences: push failed; will retry", tenant=tenant, channel=channel, error=str(exc)[:300]
            )
            async with pool.connection() as conn:
                await outbox.mark_failed(conn, ids, str(exc)[:500])
            continue
        async with pool.connection() as conn:
            await outbox.mark_sent(conn, ids, now)
        sent += len(ids)
    return PreferencePush(sent, failed)

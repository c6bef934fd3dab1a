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
        groups = await (
            await conn.execute(
                """SELECT DISTINCT tenant_id, channel_id, communication_mode FROM preference_outbox
                   WHERE sent_at IS NULL ORDER BY tenant_id, channel_id, communication_mode LIMIT %s""",
                (max_groups,),
            )
        ).fetchall()
    sent = failed = 0
    for group in groups:
        tenant, channel, mode = group["tenant_id"], int(group["channel_id"]), int(group["communication_mode"])
        async with pool.connection() as conn:
            rows = await (
                await conn.execute(
                    """SELECT id, customer_id FROM preference_outbox
                       WHERE tenant_id = %s AND channel_id = %s AND communication_mode = %s
                         AND sent_at IS NULL
                       ORDER BY id LIMIT %s""",
                    (tenant, channel, mode, MAX_PREFERENCE_CUSTOMERS),
                )
            ).fetchall()
        if not rows:
            continue
        ids = [r["id"] for r in rows]
        try:
            client = await get_client(tenant)
            await client.set_customer_channel_preference(
                channel_id=channel, customer_ids=[r["customer_id"] for r in rows], communication_mode=mode
            )
        except Exception as exc:
            # One tenant's trouble (credentials, outage) must not hold back the others.
            failed += 1
            log.warning(
                "preferences: push failed; will retry", tenant=tenant, channel=channel, error=str(exc)[:300]
            )
            async with pool.connection() as conn:
                await conn.execute(
                    "UPDATE preference_outbox SET attempts = attempts + 1, last_error = %s "
                    "WHERE id = ANY(%s)",
                    (str(exc)[:500], ids),
                )
            continue
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE preference_outbox SET sent_at = %s, last_error = NULL "
                "WHERE id = ANY(%s) AND sent_at IS NULL",
                (now, ids),
            )
        sent += len(ids)
    return PreferencePush(sent, failed)

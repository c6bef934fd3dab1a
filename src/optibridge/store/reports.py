"""SQL of report pushes: which channels a campaign has, the per-campaign push lock, and the record
of a push made outside the schedule.

Two pushes of one campaign and channel must never run at once: each computes "interactions not
yet reported" and sends them, so two at once would send the same customers twice, and an older
total sent last would overwrite a newer one at Optimove. The periodic tick leases schedule rows,
but an on-demand push (`optibridge reports push`) has no schedule row to lease while a campaign
is still sending, so both take one PostgreSQL advisory lock per (tenant, channel, campaign).
The lock lives on a dedicated connection, not a pooled one: closing it is the one release that
cannot be skipped by a cancellation, and a pooled connection would carry a forgotten lock to its
next user.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime

import psycopg

from optibridge.store.database import Database

LOCK_POLL_S = 0.1


def _lock_key(tenant_id: str, channel_id: int, campaign_id: int) -> str:
    return f"optibridge:report-push:{tenant_id}:{channel_id}:{campaign_id}"


@contextlib.asynccontextmanager
async def push_lock(
    db: Database, tenant_id: str, channel_id: int, campaign_id: int, *, wait_s: float
) -> AsyncIterator[bool]:
    """Hold the campaign's push lock for the block; yields False if it was not free within `wait_s`."""
    async with db.connect() as conn:
        key = _lock_key(tenant_id, channel_id, campaign_id)
        deadline = time.monotonic() + wait_s
        while True:
            row = await (
                await conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS ok", (key,))
            ).fetchone()
            if row is not None and row["ok"]:
                break
            if time.monotonic() >= deadline:
                yield False
                return
            await asyncio.sleep(LOCK_POLL_S)
        try:
            yield True
        finally:
            # Closing the connection (leaving `db.connect`) releases it too; unlocking first
            # only frees it a moment earlier.
            with contextlib.suppress(psycopg.Error):
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


async def campaign_channels(
    conn: psycopg.AsyncConnection[dict[str, object]], campaign_id: int, tenant_id: str | None
) -> list[tuple[str, int]]:
    """(tenant, channel id) of every channel this campaign id was notified on."""
    rows = await (
        await conn.execute(
            """SELECT tenant_id, channel_id FROM campaigns
               WHERE campaign_id = %s AND (%s::text IS NULL OR tenant_id = %s)
               ORDER BY tenant_id, channel_id""",
            (campaign_id, tenant_id, tenant_id),
        )
    ).fetchall()
    return [(str(r["tenant_id"]), int(str(r["channel_id"]))) for r in rows]


async def record_manual_push(
    conn: psycopg.AsyncConnection[dict[str, object]],
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    now: datetime,
) -> None:
    """Count an on-demand push on the campaign's schedule, if it has one; the schedule's next
    push stays where it was (it pushes totals again, which is harmless)."""
    await conn.execute(
        """UPDATE report_schedules SET pushes = pushes + 1, last_push_at = %s, updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
        (now, tenant_id, channel_id, campaign_id),
    )


async def release_lease(
    conn: psycopg.AsyncConnection[dict[str, object]],
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    worker: str,
) -> None:
    """Give a leased schedule row back untouched: the next tick takes it again."""
    await conn.execute(
        """UPDATE report_schedules SET lease_until = NULL, leased_by = NULL, updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s AND leased_by = %s""",
        (tenant_id, channel_id, campaign_id, worker),
    )

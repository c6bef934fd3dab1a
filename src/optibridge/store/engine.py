"""The engine's heartbeat record (`engine_ticks`): one row per periodic tick, read by health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg


async def record_tick(
    conn: psycopg.AsyncConnection[object], period: datetime, worker: str, *, drop_before: datetime
) -> None:
    """Record a tick and drop ticks older than `drop_before`, in one transaction."""
    async with conn.transaction():
        await conn.execute("INSERT INTO engine_ticks (period, worker) VALUES (%s, %s)", (period, worker))
        await conn.execute("DELETE FROM engine_ticks WHERE period < %s", (drop_before,))


async def job_running(conn: psycopg.AsyncConnection[Any], job_id: int) -> bool:
    """Whether the job is still `doing` (its lock held); a finished job is gone (deleted on
    success) or in another state."""
    row = await (
        await conn.execute("SELECT 1 FROM procrastinate_jobs WHERE id = %s AND status = 'doing'", (job_id,))
    ).fetchone()
    return row is not None

"""The engine's heartbeat record (`engine_ticks`): one row per periodic tick, read by health."""

from __future__ import annotations

from datetime import datetime

import psycopg


async def record_tick(
    conn: psycopg.AsyncConnection[object], period: datetime, worker: str, *, drop_before: datetime
) -> None:
    """Record a tick and drop ticks older than `drop_before`, in one transaction."""
    async with conn.transaction():
        await conn.execute("INSERT INTO engine_ticks (period, worker) VALUES (%s, %s)", (period, worker))
        await conn.execute("DELETE FROM engine_ticks WHERE period < %s", (drop_before,))

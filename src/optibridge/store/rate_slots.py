"""SQL of the shared Optimove rate limit: reserve one send time under a credential's window.

One transaction per reservation, serialised per credential by a transaction-level advisory lock
(released at commit, so a crashed caller never holds it). Times come from the database's clock,
the one clock every process and machine shares.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]


async def reserve(
    conn: Conn,
    limiter: bytes,
    window: timedelta,
    requests: int,
    choose: Callable[[list[datetime], datetime], datetime],
) -> tuple[datetime, datetime]:
    """Reserve a slot: `choose(recent, now)` (the rule, a pure function over the reserved times of
    the last window, oldest first) picks it. Returns (slot, the database's now)."""
    # Two round trips, not seven: everything before the choice goes in one pipeline (a limiter
    # reservation precedes every Optimove call, and under load each round trip costs).
    async with conn.transaction():
        async with conn.pipeline():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(encode(%s, 'hex'), 7))", (limiter,)
            )
            await conn.execute(
                "DELETE FROM optimove_rate_slots WHERE limiter = %s AND slot_at <= clock_timestamp() - %s",
                (limiter, window),
            )
            now_cur = await conn.execute("SELECT clock_timestamp() AS now")
            recent_cur = await conn.execute(
                """SELECT slot_at FROM (SELECT slot_at FROM optimove_rate_slots WHERE limiter = %s
                                        ORDER BY slot_at DESC LIMIT %s) recent
                   ORDER BY slot_at""",
                (limiter, requests),
            )
        now_row = await now_cur.fetchone()
        assert now_row is not None
        now: datetime = now_row["now"]
        slot: datetime = choose([r["slot_at"] for r in await recent_cur.fetchall()], now)
        await conn.execute(
            "INSERT INTO optimove_rate_slots (limiter, slot_at) VALUES (%s, %s)", (limiter, slot)
        )
    return slot, now

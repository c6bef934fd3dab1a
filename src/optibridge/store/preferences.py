"""The outbox of preferences (opt-outs) to tell Optimove (`preference_outbox`).

Rows are written in the transaction that records the unsubscribe (or complaint) and marked sent
only after Optimove answered 200 (`optibridge.feedback.preferences`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class OptOut:
    tenant_id: str
    channel_id: int
    customer_id: str
    communication_mode: int
    reason: str


async def queue(conn: Conn, opt_outs: Sequence[OptOut]) -> None:
    """Add to the outbox; a row already waiting there is kept."""
    await conn.cursor().executemany(
        """INSERT INTO preference_outbox (tenant_id, channel_id, customer_id, communication_mode, reason)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
        [(o.tenant_id, o.channel_id, o.customer_id, o.communication_mode, o.reason) for o in opt_outs],
    )


@dataclass(frozen=True, slots=True)
class Group:
    tenant_id: str
    channel_id: int
    communication_mode: int


async def pending_groups(conn: Conn, limit: int) -> list[Group]:
    """(tenant, channel, mode) groups with unsent rows, at most `limit`."""
    rows = await (
        await conn.execute(
            """SELECT DISTINCT tenant_id, channel_id, communication_mode FROM preference_outbox
               WHERE sent_at IS NULL ORDER BY tenant_id, channel_id, communication_mode LIMIT %s""",
            (limit,),
        )
    ).fetchall()
    return [Group(r["tenant_id"], int(r["channel_id"]), int(r["communication_mode"])) for r in rows]


async def pending(conn: Conn, group: Group, limit: int) -> list[tuple[int, str]]:
    """(row id, customer id) of the group's oldest unsent rows, at most `limit`."""
    rows = await (
        await conn.execute(
            """SELECT id, customer_id FROM preference_outbox
               WHERE tenant_id = %s AND channel_id = %s AND communication_mode = %s
                 AND sent_at IS NULL
               ORDER BY id LIMIT %s""",
            (group.tenant_id, group.channel_id, group.communication_mode, limit),
        )
    ).fetchall()
    return [(r["id"], r["customer_id"]) for r in rows]


async def mark_failed(conn: Conn, ids: Sequence[int], error: str) -> None:
    await conn.execute(
        "UPDATE preference_outbox SET attempts = attempts + 1, last_error = %s WHERE id = ANY(%s)",
        (error, list(ids)),
    )


async def mark_sent(conn: Conn, ids: Sequence[int], at: datetime) -> None:
    await conn.execute(
        "UPDATE preference_outbox SET sent_at = %s, last_error = NULL WHERE id = ANY(%s) AND sent_at IS NULL",
        (at, list(ids)),
    )

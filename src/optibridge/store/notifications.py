"""The notifications Optimove sent us, stored raw with what they did."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.AsyncConnection[dict[str, Any]]


async def record(
    conn: Conn,
    tenant_id: str,
    channel_id: int | None,
    event_type: int,
    campaign_id: int | None,
    payload: dict[str, Any],
    outcome: str,
) -> None:
    await conn.execute(
        """INSERT INTO notifications (tenant_id, channel_id, event_type, campaign_id, payload, outcome)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (tenant_id, channel_id, event_type, campaign_id, Jsonb(payload), outcome),
    )

"""The push apps of push channels: kept as a tombstone (`deleted_at`) after a delete until Optimove
has been told, with what we last told Optimove (`pushed_name`). Every function runs in the
caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]


async def upsert(conn: Conn, tenant_id: str, channel_name: str, app_id: str, name: str) -> None:
    """Add an app, rename it, or revive its tombstone."""
    await conn.execute(
        """INSERT INTO push_apps (tenant_id, channel_name, app_id, name) VALUES (%s, %s, %s, %s)
           ON CONFLICT (tenant_id, channel_name, app_id)
           DO UPDATE SET name = EXCLUDED.name, deleted_at = NULL, updated_at = now()""",
        (tenant_id, channel_name, app_id, name),
    )


async def mark_deleted(conn: Conn, tenant_id: str, channel_name: str, app_id: str) -> bool:
    """Turn a live app into a tombstone; False if there is no such live app."""
    cur = await conn.execute(
        "UPDATE push_apps SET deleted_at = now(), updated_at = now() WHERE tenant_id = %s "
        "AND channel_name = %s AND app_id = %s AND deleted_at IS NULL",
        (tenant_id, channel_name, app_id),
    )
    return cur.rowcount > 0


@dataclass(frozen=True)
class SyncRow:
    app_id: str
    name: str
    deleted_at: datetime | None
    pushed_name: str | None
    updated_at: datetime


async def sync_rows(conn: Conn, tenant_id: str, channel_name: str) -> list[SyncRow]:
    """Every app of the channel, tombstones included."""
    rows = await (
        await conn.execute(
            "SELECT app_id, name, deleted_at, pushed_name, updated_at FROM push_apps "
            "WHERE tenant_id = %s AND channel_name = %s",
            (tenant_id, channel_name),
        )
    ).fetchall()
    return [SyncRow(**r) for r in rows]


async def mark_pushed(
    conn: Conn, tenant_id: str, channel_name: str, app_id: str, name: str, seen_at: datetime
) -> None:
    """Record the name Optimove now holds, unless the row changed since `seen_at`."""
    await conn.execute(
        "UPDATE push_apps SET pushed_name = %s, pushed_at = now() WHERE tenant_id = %s "
        "AND channel_name = %s AND app_id = %s AND updated_at = %s",
        (name, tenant_id, channel_name, app_id, seen_at),
    )


async def purge(conn: Conn, tenant_id: str, channel_name: str, app_id: str, seen_at: datetime) -> None:
    """Drop a tombstone Optimove has been told about, unless it changed since `seen_at`."""
    await conn.execute(
        "DELETE FROM push_apps WHERE tenant_id = %s AND channel_name = %s AND app_id = %s "
        "AND updated_at = %s",
        (tenant_id, channel_name, app_id, seen_at),
    )

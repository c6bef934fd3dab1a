"""Dashboard sessions: the cookie-signing secret, kept in `settings` and shared by every process."""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]


async def setting_once(conn: Conn, key: str, value: bytes) -> bytes:
    """Store `value` under `key` unless a value is there already; returns the stored one."""
    await conn.execute(
        "INSERT INTO settings (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, value)
    )
    row = await (await conn.execute("SELECT value FROM settings WHERE key = %s", (key,))).fetchone()
    assert row is not None
    return bytes(row["value"])

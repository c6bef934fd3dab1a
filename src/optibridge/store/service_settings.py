"""The service's own settings table: a key and a binary value per row, written once."""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]


async def first_value(conn: Conn, key: str, value: bytes) -> bytes:
    """Store `value` under `key` unless something is stored there already; returns what is stored."""
    await conn.execute(
        "INSERT INTO settings (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
        (key, value),
    )
    row = await (await conn.execute("SELECT value FROM settings WHERE key = %s", (key,))).fetchone()
    assert row is not None
    return bytes(row["value"])

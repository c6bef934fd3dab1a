"""Admin API keys: stored by hash, with a shown prefix; revoked by date, never deleted.

Key generation and hashing are the web layer's (optibridge.web.auth); these are the queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]

_SHOWN = "id, name, tenant_id, prefix, created_at, last_used_at, revoked_at"


@dataclass(frozen=True)
class StoredKey:
    id: int
    name: str
    tenant_id: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class LiveKey:
    """A key that is not revoked, found by its hash; `stale`: its last use is older than asked."""

    id: int
    name: str
    tenant_id: str | None
    key_hash: bytes
    stale: bool


async def insert(conn: Conn, name: str, tenant_id: str | None, key_hash: bytes, prefix: str) -> StoredKey:
    row = await (
        await conn.execute(
            f"""INSERT INTO api_keys (name, tenant_id, key_hash, prefix) VALUES (%s, %s, %s, %s)
               RETURNING {_SHOWN}""",
            (name, tenant_id, key_hash, prefix),
        )
    ).fetchone()
    assert row is not None
    return StoredKey(**row)


async def list_keys(conn: Conn, *, include_revoked: bool = False) -> list[StoredKey]:
    rows = await (
        await conn.execute(
            f"SELECT {_SHOWN} FROM api_keys WHERE %s OR revoked_at IS NULL ORDER BY id",
            (include_revoked,),
        )
    ).fetchall()
    return [StoredKey(**r) for r in rows]


async def get(conn: Conn, key_id: int) -> StoredKey | None:
    row = await (await conn.execute(f"SELECT {_SHOWN} FROM api_keys WHERE id = %s", (key_id,))).fetchone()
    return None if row is None else StoredKey(**row)


async def revoke(conn: Conn, key_id: int) -> bool:
    """Revoke the key now; False if there was no live key with this id."""
    cur = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (key_id,)
    )
    return cur.rowcount > 0


async def live_by_hash(conn: Conn, key_hash: bytes, *, stale_after_s: float) -> LiveKey | None:
    row = await (
        await conn.execute(
            "SELECT id, name, tenant_id, key_hash, "
            "(last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %s)) AS stale "
            "FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
            (stale_after_s, key_hash),
        )
    ).fetchone()
    if row is None:
        return None
    return LiveKey(
        id=int(row["id"]),
        name=row["name"],
        tenant_id=row["tenant_id"],
        key_hash=bytes(row["key_hash"]),
        stale=bool(row["stale"]),
    )


async def touch(conn: Conn, key_id: int) -> None:
    """Record a use of the key now."""
    await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (key_id,))

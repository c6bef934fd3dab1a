"""The unguessable token in each tenant's listener URLs: create, rotate, check.

Optimove does not sign its listener calls (docs/optimove-api-notes.md), so the URL itself is the
secret. 192 random bits; stored encrypted (we need it to build the URLs we register) and found by
its SHA-256, so a lookup never compares secrets byte by byte in Python.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

import psycopg

from optibridge.core.errors import NotFoundError
from optibridge.core.secretbox import SecretBox

Conn = psycopg.AsyncConnection[dict[str, Any]]
DEFAULT_GRACE = timedelta(hours=24)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


async def current(conn: Conn, box: SecretBox, tenant_id: str) -> str:
    """The tenant's current token, created on first use."""
    async with conn.transaction():
        exists = await (
            await conn.execute("SELECT 1 FROM tenants WHERE id = %s FOR SHARE", (tenant_id,))
        ).fetchone()
        if exists is None:
            raise NotFoundError(f"no tenant {tenant_id!r}")
        row = await (
            await conn.execute(
                "SELECT token FROM listener_tokens WHERE tenant_id = %s AND retired_at IS NULL",
                (tenant_id,),
            )
        ).fetchone()
        if row is not None:
            return box.decrypt(row["token"]).decode()
        token = new_token()
        await conn.execute(
            "INSERT INTO listener_tokens (token_hash, tenant_id, token) VALUES (%s, %s, %s)",
            (_hash(token), tenant_id, box.encrypt(token.encode())),
        )
        return token


async def rotate(
    conn: Conn, box: SecretBox, tenant_id: str, now: datetime, grace: timedelta = DEFAULT_GRACE
) -> str:
    """A new current token; the old one keeps working for `grace` (re-register listeners meanwhile)."""
    await current(conn, box, tenant_id)  # make sure there is one to retire
    async with conn.transaction():
        await conn.execute(
            "UPDATE listener_tokens SET retired_at = %s, valid_until = %s "
            "WHERE tenant_id = %s AND retired_at IS NULL",
            (now, now + grace, tenant_id),
        )
        token = new_token()
        await conn.execute(
            "INSERT INTO listener_tokens (token_hash, tenant_id, token) VALUES (%s, %s, %s)",
            (_hash(token), tenant_id, box.encrypt(token.encode())),
        )
        await conn.execute(
            "DELETE FROM listener_tokens WHERE tenant_id = %s AND valid_until < %s", (tenant_id, now)
        )
    return token


async def is_valid(conn: Conn, tenant_id: str, token: str, now: datetime) -> bool:
    if not token or len(token) > 200:
        return False
    row = await (
        await conn.execute(
            "SELECT 1 FROM listener_tokens WHERE token_hash = %s AND tenant_id = %s "
            "AND (retired_at IS NULL OR valid_until > %s)",
            (_hash(token), tenant_id, now),
        )
    ).fetchone()
    return row is not None

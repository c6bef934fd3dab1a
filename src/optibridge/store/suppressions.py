"""The suppression list: per tenant and channel, normalized addresses and customer ids never to
send to again (`optibridge.feedback.suppression` normalizes and decides; these are its queries)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]
Kind = Literal["address", "customer"]


HASHED_PREFIX = "sha256:"


def hashed(value: str) -> str:
    """The form an entry keeps once its customer is forgotten (`optibridge customers forget`):
    still matched by `matching` and `delete`, but the row no longer names the address or id."""
    return HASHED_PREFIX + hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Suppression:
    tenant_id: str
    channel_name: str
    kind: Kind
    value: str
    reason: str
    source: str
    message_id: uuid.UUID | None
    note: str | None
    created_at: datetime


async def matching(
    conn: Conn, tenant_id: str, channel_name: str, addresses: Sequence[str], customer_ids: Sequence[str]
) -> list[tuple[Kind, str]]:
    """(kind, value) of the entries among the given normalized addresses and customer ids; an entry
    kept hashed (a forgotten customer's) matches its value too and is returned as that value."""
    plain = {hashed(v): v for v in (*addresses, *customer_ids)}
    rows = await (
        await conn.execute(
            """SELECT kind, value FROM suppressions
               WHERE tenant_id = %s AND channel_name = %s
                 AND ((kind = 'address' AND value = ANY(%s)) OR (kind = 'customer' AND value = ANY(%s)))""",
            (tenant_id, channel_name, _with_hashes(addresses), _with_hashes(customer_ids)),
        )
    ).fetchall()
    found: list[tuple[Kind, str]] = []
    for row in rows:
        value: str = row["value"]
        found.append((row["kind"], plain.get(value, value)))
    return found


def _with_hashes(values: Sequence[str]) -> list[str]:
    return [*values, *(hashed(v) for v in values)]


async def insert(
    conn: Conn,
    tenant_id: str,
    channel_name: str,
    entries: Sequence[tuple[Kind, str]],
    *,
    reason: str,
    source: str,
    note: str | None,
    message_id: uuid.UUID | None,
) -> int:
    """Add (kind, value) entries; existing ones are kept as they are. Returns how many were new."""
    cur = await conn.execute(
        """INSERT INTO suppressions (tenant_id, channel_name, kind, value, reason, source, note, message_id)
           SELECT %s, %s, e.kind, e.value, %s, %s, %s, %s
           FROM unnest(%s::text[], %s::text[]) AS e(kind, value)
           ON CONFLICT DO NOTHING""",
        (
            tenant_id,
            channel_name,
            reason,
            source,
            note,
            message_id,
            [k for k, _ in entries],
            [v for _, v in entries],
        ),
    )
    return cur.rowcount


async def delete(
    conn: Conn, tenant_id: str, channel_name: str, addresses: Sequence[str], customer_ids: Sequence[str]
) -> int:
    """Remove the entries of the given normalized addresses and customer ids; returns how many."""
    cur = await conn.execute(
        """DELETE FROM suppressions WHERE tenant_id = %s AND channel_name = %s
             AND ((kind = 'address' AND value = ANY(%s)) OR (kind = 'customer' AND value = ANY(%s)))""",
        (tenant_id, channel_name, _with_hashes(addresses), _with_hashes(customer_ids)),
    )
    return cur.rowcount


async def list_entries(
    conn: Conn, tenant_id: str, channel_name: str | None, *, limit: int, offset: int
) -> list[Suppression]:
    """Newest first, paged with limit/offset."""
    rows = await (
        await conn.execute(
            """SELECT tenant_id, channel_name, kind, value, reason, source, message_id, note, created_at
               FROM suppressions
               WHERE tenant_id = %s AND (%s::text IS NULL OR channel_name = %s)
               ORDER BY created_at DESC, kind, value LIMIT %s OFFSET %s""",
            (tenant_id, channel_name, channel_name, limit, offset),
        )
    ).fetchall()
    return [Suppression(**row) for row in rows]

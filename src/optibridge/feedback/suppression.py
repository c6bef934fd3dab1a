"""The suppression list: per tenant and channel, addresses and customers never to send to again.

Filled by unsubscribes and complaints (the customer and the address) and hard bounces (the address
only: the customer may give a working one later), and by operators (`add`). The dispatcher asks
`suppressed()` for a whole slice at once before sending.

Addresses are compared normalized (`normalize_address`): e-mail case-folded, phone numbers reduced
to digits and a leading +, anything else (push tokens) trimmed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]
Reason = Literal["unsubscribed", "bounced", "complained", "manual"]
Kind = Literal["address", "customer"]

_PHONE = re.compile(r"^\+?[\d\s().\-]{4,40}$")


def normalize_address(address: str) -> str:
    value = address.strip()
    if "@" in value:
        return value.casefold()
    if _PHONE.match(value):
        digits = re.sub(r"\D", "", value)
        return ("+" if value.startswith("+") else "") + digits
    return value


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


async def suppressed(
    conn: Conn,
    tenant_id: str,
    channel_name: str,
    *,
    addresses: Iterable[str] = (),
    customer_ids: Iterable[str] = (),
) -> set[str]:
    """Those of the given addresses and customer ids that are suppressed (as given, not normalized).

    One query for the whole slice. An address and a customer id that are equal strings are both
    returned if either is suppressed; the dispatcher looks each message up by its own fields.
    """
    by_norm: dict[str, list[str]] = {}
    for address in addresses:
        if address:
            by_norm.setdefault(normalize_address(address), []).append(address)
    customers = [c for c in set(customer_ids) if c]
    if not by_norm and not customers:
        return set()
    rows = await (
        await conn.execute(
            """SELECT kind, value FROM suppressions
               WHERE tenant_id = %s AND channel_name = %s
                 AND ((kind = 'address' AND value = ANY(%s)) OR (kind = 'customer' AND value = ANY(%s)))""",
            (tenant_id, channel_name, list(by_norm), customers),
        )
    ).fetchall()
    found: set[str] = set()
    for row in rows:
        if row["kind"] == "address":
            found.update(by_norm.get(row["value"], ()))
        else:
            found.add(row["value"])
    return found


async def add(
    conn: Conn,
    tenant_id: str,
    channel_name: str,
    *,
    addresses: Iterable[str] = (),
    customer_ids: Iterable[str] = (),
    reason: Reason = "manual",
    source: str = "admin",
    note: str | None = None,
    message_id: uuid.UUID | None = None,
) -> int:
    """Add entries (existing ones are kept as they are); returns how many were new."""
    entries = [("address", normalize_address(a)) for a in addresses if a and a.strip()]
    entries += [("customer", c) for c in customer_ids if c]
    if not entries:
        return 0
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


async def remove(
    conn: Conn,
    tenant_id: str,
    channel_name: str,
    *,
    addresses: Iterable[str] = (),
    customer_ids: Iterable[str] = (),
) -> int:
    """Remove entries (an operator re-enabling a recipient); returns how many were removed."""
    norm = [normalize_address(a) for a in addresses if a]
    customers = [c for c in customer_ids if c]
    cur = await conn.execute(
        """DELETE FROM suppressions WHERE tenant_id = %s AND channel_name = %s
             AND ((kind = 'address' AND value = ANY(%s)) OR (kind = 'customer' AND value = ANY(%s)))""",
        (tenant_id, channel_name, norm, customers),
    )
    return cur.rowcount


async def list_entries(
    conn: Conn,
    tenant_id: str,
    channel_name: str | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
) -> list[Suppression]:
    """Newest first, paged with limit/offset."""
    rows = await (
        await conn.execute(
            """SELECT tenant_id, channel_name, kind, value, reason, source, message_id, note, created_at
               FROM suppressions
               WHERE tenant_id = %s AND (%s::text IS NULL OR channel_name = %s)
               ORDER BY created_at DESC, kind, value LIMIT %s OFFSET %s""",
            (tenant_id, channel_name, channel_name, max(0, min(limit, 10_000)), max(0, offset)),
        )
    ).fetchall()
    return [Suppression(**row) for row in rows]

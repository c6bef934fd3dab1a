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
from typing import Any, Literal

import psycopg

from optibridge.store import suppressions
from optibridge.store.suppressions import Kind as Kind
from optibridge.store.suppressions import Suppression as Suppression

Conn = psycopg.AsyncConnection[dict[str, Any]]
Reason = Literal["unsubscribed", "bounced", "complained", "manual"]

_PHONE = re.compile(r"^\+?[\d\s().\-]{4,40}$")


def normalize_address(address: str) -> str:
    value = address.strip()
    if "@" in value:
        return value.casefold()
    if _PHONE.match(value):
        digits = re.sub(r"\D", "", value)
        return ("+" if value.startswith("+") else "") + digits
    return value


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
    found: set[str] = set()
    for kind, value in await suppressions.matching(conn, tenant_id, channel_name, list(by_norm), customers):
        if kind == "address":
            found.update(by_norm.get(value, ()))
        else:
            found.add(value)
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
    entries: list[tuple[Kind, str]] = [
        ("address", normalize_address(a)) for a in addresses if a and a.strip()
    ]
    entries += [("customer", c) for c in customer_ids if c]
    if not entries:
        return 0
    return await suppressions.insert(
        conn, tenant_id, channel_name, entries, reason=reason, source=source, note=note, message_id=message_id
    )


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
    return await suppressions.delete(conn, tenant_id, channel_name, norm, customers)


async def list_entries(
    conn: Conn,
    tenant_id: str,
    channel_name: str | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
) -> list[Suppression]:
    """Newest first, paged with limit/offset."""
    return await suppressions.list_entries(
        conn, tenant_id, channel_name, limit=max(0, min(limit, 10_000)), offset=max(0, offset)
    )

"""Feedback events about messages (`message_events`), inserted a batch at a time.

An insert takes the tenant, channel, campaign, template and customer from the message row in the
same statement: events about unknown messages, or about another tenant's messages when a tenant is
given, insert nothing. The dedupe key is unique per tenant, so a repeated event inserts nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class EventColumns:
    """A batch of events, column by column (one list per column, all of the same length)."""

    message_ids: list[uuid.UUID]
    kinds: list[str]
    sources: list[str]
    dedupe_keys: list[str]
    suspect: list[bool]
    occurred_at: list[datetime]
    urls: list[str | None]
    reasons: list[str | None]
    tenant_ids: list[str | None]  # None: any tenant's message matches

    def _params(self) -> tuple[list[Any], ...]:
        return (
            self.message_ids,
            self.kinds,
            self.sources,
            self.dedupe_keys,
            self.suspect,
            self.occurred_at,
            self.urls,
            self.reasons,
            self.tenant_ids,
        )


_INSERT = """
INSERT INTO message_events (tenant_id, message_id, channel_id, campaign_id, template_id, customer_id,
                            kind, source, dedupe_key, suspect, occurred_at, url, reason)
SELECT m.tenant_id, m.id, m.channel_id, m.campaign_id, m.template_id, m.customer_id,
       e.kind, e.source, e.dedupe_key, e.suspect, e.occurred_at, e.url, e.reason
FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::boolean[], %s::timestamptz[],
            %s::text[], %s::text[], %s::text[])
     AS e(message_id, kind, source, dedupe_key, suspect, occurred_at, url, reason, tenant_id)
JOIN messages m ON m.id = e.message_id AND (e.tenant_id IS NULL OR m.tenant_id = e.tenant_id)
ON CONFLICT (tenant_id, dedupe_key) DO NOTHING
"""
_RETURNING = " RETURNING tenant_id, message_id, channel_id, kind"


async def insert(conn: Conn, events: EventColumns) -> int:
    """Insert the new events; returns how many were new (nothing is read back: the hot path)."""
    cur = await conn.execute(_INSERT, events._params())
    return max(cur.rowcount, 0)


@dataclass(frozen=True, slots=True)
class InsertedEvent:
    tenant_id: str
    message_id: uuid.UUID
    channel_id: int
    kind: str


async def insert_returning(conn: Conn, events: EventColumns) -> list[InsertedEvent]:
    """Insert the new events; returns those that were new."""
    rows = await (await conn.execute(_INSERT + _RETURNING, events._params())).fetchall()
    return [InsertedEvent(r["tenant_id"], r["message_id"], int(r["channel_id"]), r["kind"]) for r in rows]


@dataclass(frozen=True, slots=True)
class MessageRecipient:
    """A message with its recipient and its channel, for the consequences of an event."""

    id: uuid.UUID
    tenant_id: str
    channel_id: int
    customer_id: str
    address: str | None
    channel_name: str
    channel_kind: str
    channel_options: dict[str, Any]


async def recipients(conn: Conn, message_ids: Sequence[uuid.UUID]) -> list[MessageRecipient]:
    rows = await (
        await conn.execute(
            """SELECT m.id, m.tenant_id, m.channel_id, m.customer_id, m.address,
                      ch.name AS channel_name, ch.kind AS channel_kind, ch.options
               FROM messages m
               JOIN channels ch ON ch.tenant_id = m.tenant_id AND ch.optimove_channel_id = m.channel_id
               WHERE m.id = ANY(%s)""",
            (list(message_ids),),
        )
    ).fetchall()
    return [
        MessageRecipient(
            r["id"],
            r["tenant_id"],
            int(r["channel_id"]),
            r["customer_id"],
            r["address"],
            r["channel_name"],
            r["channel_kind"],
            r["options"],
        )
        for r in rows
    ]

"""Recording feedback events: one INSERT per batch, de-duplicated, with their consequences.

Every event names a message by id; the INSERT takes the tenant, channel, campaign, template and
customer from the message row in the same statement (events about unknown messages, or about
another tenant's messages when a tenant is given, insert nothing). Each event has a dedupe key,
unique per tenant, so a provider's repeated delivery or a replayed tracking hit inserts nothing.

Only events that were new have consequences, in the same transaction: unsubscribes, complaints
and hard bounces go on the suppression list, and (where the channel asks for it) into the outbox of
preferences to tell Optimove.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from optibridge.core.feedback_settings import channel_feedback_options
from optibridge.feedback import suppression

Conn = psycopg.AsyncConnection[dict[str, Any]]


class EventKind(enum.StrEnum):
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # hard bounce: the address is bad
    COMPLAINED = "complained"  # marked as spam
    FAILED = "failed"  # not delivered for another reason (carrier filtering, expired, ...)


class Source(enum.StrEnum):
    TRACKING = "tracking"
    TWILIO = "twilio"
    GENERIC = "generic"
    SEND = "send"


SUPPRESSING = frozenset({EventKind.UNSUBSCRIBED, EventKind.COMPLAINED, EventKind.BOUNCED})
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Event:
    message_id: uuid.UUID
    kind: EventKind
    source: Source
    dedupe_key: str
    occurred_at: datetime
    suspect: bool = False
    url: str | None = None
    reason: str | None = None
    # Set when the sender is authenticated per tenant: only that tenant's messages match.
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    tenant_id: str
    message_id: uuid.UUID
    channel_id: int
    kind: EventKind


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


def _params(events: Sequence[Event]) -> tuple[list[Any], ...]:
    return (
        [e.message_id for e in events],
        [str(e.kind) for e in events],
        [str(e.source) for e in events],
        [e.dedupe_key for e in events],
        [e.suspect for e in events],
        [e.occurred_at for e in events],
        [e.url for e in events],
        [e.reason[:MAX_REASON] if e.reason else None for e in events],
        [e.tenant_id for e in events],
    )


async def record_events(conn: Conn, events: Sequence[Event]) -> int:
    """Insert the events that are new and apply their consequences; returns how many were new."""
    if not events:
        return 0
    if not any(e.kind in SUPPRESSING for e in events):
        # Opens, clicks, deliveries: nothing follows from them, so nothing to read back (this is
        # the tracking endpoints' hot path).
        cur = await conn.execute(_INSERT, _params(events))
        return max(cur.rowcount, 0)
    async with conn.transaction():
        rows = await (await conn.execute(_INSERT + _RETURNING, _params(events))).fetchall()
        recorded = [
            Recorded(r["tenant_id"], r["message_id"], int(r["channel_id"]), EventKind(r["kind"]))
            for r in rows
        ]
        consequential = [r for r in recorded if r.kind in SUPPRESSING]
        if consequential:
            await _apply_consequences(conn, consequential)
    return len(recorded)


async def _apply_consequences(conn: Conn, recorded: Sequence[Recorded]) -> None:
    kinds = {r.message_id: r.kind for r in recorded}
    rows = await (
        await conn.execute(
            """SELECT m.id, m.tenant_id, m.channel_id, m.customer_id, m.address,
                      ch.name AS channel_name, ch.kind AS channel_kind, ch.options
               FROM messages m
               JOIN channels ch ON ch.tenant_id = m.tenant_id AND ch.optimove_channel_id = m.channel_id
               WHERE m.id = ANY(%s)""",
            (list(kinds),),
        )
    ).fetchall()
    outbox: list[tuple[str, int, str, int, str]] = []
    for row in rows:
        kind = kinds[row["id"]]
        by_customer = kind in (EventKind.UNSUBSCRIBED, EventKind.COMPLAINED)
        await suppression.add(
            conn,
            row["tenant_id"],
            row["channel_name"],
            addresses=[row["address"]] if row["address"] else [],
            customer_ids=[row["customer_id"]] if by_customer else [],
            reason=str(kind),  # type: ignore[arg-type]  # a SUPPRESSING kind is a Reason
            source="feedback",
            message_id=row["id"],
        )
        options = channel_feedback_options(row["options"])
        if options.report_preferences and (by_customer or options.report_bounces_as_opt_out):
            outbox.append(
                (
                    row["tenant_id"],
                    int(row["channel_id"]),
                    row["customer_id"],
                    options.opt_out_mode,
                    str(kind),
                )
            )
    if outbox:
        await conn.cursor().executemany(
            """INSERT INTO preference_outbox (tenant_id, channel_id, customer_id, communication_mode, reason)
               VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            outbox,
        )

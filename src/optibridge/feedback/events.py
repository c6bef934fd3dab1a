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
from optibridge.store import events as event_store
from optibridge.store import preferences as preference_store
from optibridge.store.events import EventColumns

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


def _columns(events: Sequence[Event]) -> EventColumns:
    return EventColumns(
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
        return await event_store.insert(conn, _columns(events))
    async with conn.transaction():
        recorded = [
            Recorded(r.tenant_id, r.message_id, r.channel_id, EventKind(r.kind))
            for r in await event_store.insert_returning(conn, _columns(events))
        ]
        consequential = [r for r in recorded if r.kind in SUPPRESSING]
        if consequential:
            await _apply_consequences(conn, consequential)
    return len(recorded)


async def _apply_consequences(conn: Conn, recorded: Sequence[Recorded]) -> None:
    kinds = {r.message_id: r.kind for r in recorded}
    outbox: list[preference_store.OptOut] = []
    for row in await event_store.recipients(conn, list(kinds)):
        kind = kinds[row.id]
        by_customer = kind in (EventKind.UNSUBSCRIBED, EventKind.COMPLAINED)
        await suppression.add(
            conn,
            row.tenant_id,
            row.channel_name,
            addresses=[row.address] if row.address else [],
            customer_ids=[row.customer_id] if by_customer else [],
            reason=str(kind),  # type: ignore[arg-type]  # a SUPPRESSING kind is a Reason
            source="feedback",
            message_id=row.id,
        )
        options = channel_feedback_options(row.channel_options)
        if options.report_preferences and (by_customer or options.report_bounces_as_opt_out):
            outbox.append(
                preference_store.OptOut(
                    row.tenant_id, row.channel_id, row.customer_id, options.opt_out_mode, str(kind)
                )
            )
    if outbox:
        await preference_store.queue(conn, outbox)

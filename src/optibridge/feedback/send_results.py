"""What a provider said at send time (an SMTP 5xx on RCPT, an FCM UNREGISTERED token), recorded as
bounces by the dispatcher in the transaction that marks the messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from optibridge.channels.base import Outcome, SendResult
from optibridge.feedback.events import Conn, Event, EventKind, Source, record_events


def send_result_events(results: Iterable[tuple[uuid.UUID | str, SendResult]], now: datetime) -> list[Event]:
    """The events that send-time results mean: a bounce for a bad recipient, nothing otherwise.

    Accepted (SENT) needs no event: `sent` is counted from the message state the dispatcher sets.
    A PERMANENT failure that is not the recipient's fault is counted as dropped from the 'failed'
    state; only `bounce` (bad mailbox/number) and `unregistered` (dead push token) are bounces.
    """
    events = []
    for message_id, result in results:
        if result.outcome is not Outcome.PERMANENT or not (result.bounce or result.unregistered):
            continue
        mid = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(str(message_id))
        reason = result.reason or ("push token unregistered" if result.unregistered else "bounced")
        events.append(
            Event(
                message_id=mid,
                kind=EventKind.BOUNCED,
                source=Source.SEND,
                dedupe_key=f"send:{mid}:bounced",
                occurred_at=now,
                reason=reason,
            )
        )
    return events


async def record_send_results(
    conn: Conn, results: Iterable[tuple[uuid.UUID | str, SendResult]], *, now: datetime
) -> int:
    """Record what the provider answered at send time; returns how many bounces were new.

    Call it with every (message id, SendResult) of a slice, on the connection and inside the
    transaction that moves those messages to 'sent'/'failed'; the bounced addresses (and dead push
    tokens) go on the suppression list in the same transaction.
    """
    return await record_events(conn, send_result_events(results, now))

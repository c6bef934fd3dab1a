"""What each metric counts: pure functions from what we know of a message to metric membership.

One message per (customer, template) of a campaign on a channel, so "unique per customer" per
template is "per message". A message counts in a metric at most once however many events it had.

    sent (0)          the message is in state 'sent' (the provider accepted it)
    delivered (1)     'receipts' channels (SMS): a delivery receipt, or an open/click (which proves
                      delivery); 'sent' channels (e-mail without DSN, push, webhook): sent, and no
                      bounce or failure reported since, or any receipt/open/click
    opened (2)        an open or a click (a click implies the open), not flagged as a machine's
    clicked (3)       a click, not flagged as a machine's
    unsubscribed (4)  an unsubscribe (one-click, link page, STOP reply, provider report)
    dropped (5)       not delivered for a reason other than a bad address: state expired or suppressed,
                      state failed without a bounce, or a 'failed' receipt without a bounce
    spam (6)          a complaint (marked as spam)
    bounced (9)       a hard bounce, at send time or reported later
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from optibridge.core.feedback_settings import DeliveredFrom
from optibridge.optimove.models import MetricID

ALL_METRICS = (
    MetricID.SENT,
    MetricID.DELIVERED,
    MetricID.OPENED,
    MetricID.CLICKED,
    MetricID.UNSUBSCRIBED,
    MetricID.DROPPED,
    MetricID.SPAM_REPORTS,
    MetricID.BOUNCED,
)


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """A message's state and the first time of each kind of event it had (None: never)."""

    state: str
    sent_at: datetime | None = None
    state_at: datetime | None = None
    delivered_at: datetime | None = None
    opened_at: datetime | None = None  # first open or click, machine hits excluded
    clicked_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    bounced_at: datetime | None = None
    complained_at: datetime | None = None
    failed_at: datetime | None = None


def metric_times(f: MessageFacts, delivered_from: DeliveredFrom) -> dict[MetricID, datetime | None]:
    """The metrics the message counts in, each with when it first qualified (None if unknown)."""
    out: dict[MetricID, datetime | None] = {}
    sent = f.state == "sent"
    if sent:
        out[MetricID.SENT] = f.sent_at or f.state_at
    engaged = f.opened_at or f.clicked_at
    if f.delivered_at is not None:
        out[MetricID.DELIVERED] = f.delivered_at
    elif delivered_from == "sent" and sent and f.bounced_at is None and f.failed_at is None:
        out[MetricID.DELIVERED] = f.sent_at or f.state_at
    elif engaged is not None:  # an open or click proves delivery, whatever the receipts said
        out[MetricID.DELIVERED] = engaged
    if f.opened_at is not None:
        out[MetricID.OPENED] = f.opened_at
    if f.clicked_at is not None:
        out[MetricID.CLICKED] = f.clicked_at
    if f.unsubscribed_at is not None:
        out[MetricID.UNSUBSCRIBED] = f.unsubscribed_at
    if f.complained_at is not None:
        out[MetricID.SPAM_REPORTS] = f.complained_at
    if f.bounced_at is not None:
        out[MetricID.BOUNCED] = f.bounced_at
    elif f.state in ("expired", "suppressed", "failed"):
        out[MetricID.DROPPED] = f.state_at
    elif f.failed_at is not None:
        out[MetricID.DROPPED] = f.failed_at
    return out


def empty_counts() -> dict[MetricID, int]:
    return dict.fromkeys(ALL_METRICS, 0)


def count_metrics(facts: list[MessageFacts], delivered_from: DeliveredFrom) -> dict[MetricID, int]:
    """Totals over messages of one template (convenience for tests and small sets)."""
    counts = empty_counts()
    for f in facts:
        for metric in metric_times(f, delivered_from):
            counts[metric] += 1
    return counts


def interaction_date(when: datetime | None, fallback: datetime) -> date:
    """The UTC date an interaction is reported under (the day it first happened)."""
    moment = when or fallback
    return moment.date() if moment.tzinfo is None else moment.astimezone(UTC).date()

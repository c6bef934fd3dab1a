"""Read a campaign's messages and events (`optibridge.store.report_data`) and compute what to
report (metric totals, new interactions).

One streaming pass (a server-side cursor) over the campaign's messages joined with their events
aggregated per message and with what Optimove has already accepted; memory holds the totals and
at most `max_new` not-yet-reported interactions, whatever the campaign's size.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg

from optibridge.core.feedback_settings import DeliveredFrom, channel_feedback_options
from optibridge.optimove.models import MetricID
from optibridge.reporting.metrics import MessageFacts, empty_counts, interaction_date, metric_times
from optibridge.store import channels, report_data
from optibridge.store.report_data import MessageFactRow

Conn = psycopg.AsyncConnection[dict[str, Any]]


@dataclass(slots=True)
class InteractionBatch:
    """Customers newly in one interaction list: (template, EventID = MetricID, date)."""

    template_id: int
    event_id: int
    interaction_date: date
    message_ids: list[uuid.UUID] = field(default_factory=list)
    customer_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CampaignReport:
    tenant_id: str
    channel_id: int
    campaign_id: int
    delivered_from: DeliveredFrom
    counts: dict[int, dict[MetricID, int]] = field(default_factory=dict)
    interactions: dict[tuple[int, int, date], InteractionBatch] = field(default_factory=dict)
    new_interactions: int = 0
    truncated: bool = False  # more new interactions than `max_new`: the rest go next time


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    name: str
    kind: str
    delivered_from: DeliveredFrom


async def channel_info(conn: Conn, tenant_id: str, channel_id: int) -> ChannelInfo | None:
    row = await channels.options_by_id(conn, tenant_id, channel_id)
    if row is None:
        return None
    options = channel_feedback_options(row.options)
    return ChannelInfo(row.name, row.kind, options.delivered_mode(row.kind))


async def compute_report(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    *,
    delivered_from: DeliveredFrom,
    interaction_metrics: Iterable[int],
    max_new: int,
    now: datetime,
) -> CampaignReport:
    wanted = frozenset(MetricID(m) for m in interaction_metrics)
    report = CampaignReport(tenant_id, channel_id, campaign_id, delivered_from)
    async for row in report_data.message_facts(conn, tenant_id, channel_id, campaign_id):
        _add_row(report, row, wanted, max_new, now)
    return report


def facts_of(row: MessageFactRow) -> MessageFacts:
    """What the metric rules read of a message's row (pure)."""
    return MessageFacts(
        state=row.state,
        sent_at=row.sent_at,
        state_at=row.updated_at,
        delivered_at=row.delivered_at,
        opened_at=row.opened_at,
        clicked_at=row.clicked_at,
        unsubscribed_at=row.unsubscribed_at,
        bounced_at=row.bounced_at,
        complained_at=row.complained_at,
        failed_at=row.failed_at,
    )


def _add_row(
    report: CampaignReport, row: MessageFactRow, wanted: frozenset[MetricID], max_new: int, now: datetime
) -> None:
    facts = facts_of(row)
    template = row.template_id
    counts = report.counts.get(template)
    if counts is None:
        counts = report.counts[template] = empty_counts()
    reported = row.reported or ()
    for metric, when in metric_times(facts, report.delivered_from).items():
        counts[metric] += 1
        if metric not in wanted or int(metric) in reported:
            continue
        if report.new_interactions >= max_new:
            report.truncated = True
            continue
        day = interaction_date(when, now)
        key = (template, int(metric), day)
        batch = report.interactions.get(key)
        if batch is None:
            batch = report.interactions[key] = InteractionBatch(template, int(metric), day)
        batch.message_ids.append(row.id)
        batch.customer_ids.append(row.customer_id)
        report.new_interactions += 1

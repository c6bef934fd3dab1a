"""Reporting by signed engagement events (docs/flows/engagement-events.md), and the mode switch.

`push_reports` is what the schedule and the on-demand push call: by the tenant's reporting mode
it runs the classic push (`push.push_campaign`), the events push, or both (classic first).

The events push streams the campaign's messages once (as the classic push does), and turns each
(message, metric) pair not yet handled into one event, timed when the interaction first happened.
Pairs older than Optimove's 7-day limit are recorded `too_old` at once (counted, never sent, never
retried); the others go out `events_per_request` a request, and each request's pairs are recorded
`sent` only after Optimove answered 2xx. So a repeated push never resends an accepted event; a
crash between the answer and the record resends that one request's events (at least once).

A refusal (401/403: signature; 400: events) raises: the push is recorded as failed with our words
for the answer, and the schedule retries it later with backoff (the client itself does not repeat
a 4xx), until the campaign's window closes. Events that age out meanwhile end up `too_old`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg_pool

from optibridge.core.engagement_settings import EngagementEventSettings, metric_base_url
from optibridge.core.feedback_settings import DeliveredFrom
from optibridge.core.logs import get_logger
from optibridge.core.reporting_settings import ReportingSettings
from optibridge.optimove import OptimoveClient, OptimoveRequestError, Timeouts
from optibridge.optimove.batching import chunked
from optibridge.optimove.engagement_events import (
    DEFAULT_EVENT_NAMES,
    EngagementClient,
    EngagementClientConfig,
    EngagementEvent,
    too_old,
)
from optibridge.optimove.models import MetricID
from optibridge.reporting.aggregate import channel_info, facts_of
from optibridge.reporting.metrics import metric_times
from optibridge.reporting.push import PushResult, push_campaign
from optibridge.runtime import Runtime
from optibridge.store import engagement_events as engagement_store
from optibridge.store.report_data import MessageFactRow

Pool = psycopg_pool.AsyncConnectionPool[Any]
log = get_logger(__name__)


@dataclass(slots=True)
class PendingEvents:
    """What one pass over a campaign found: events to send, pairs too old to send."""

    to_send: list[EngagementEvent] = field(default_factory=list)
    too_old: list[tuple[uuid.UUID, int, datetime]] = field(default_factory=list)
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class EventPushResult:
    sent: int
    too_old: int
    truncated: bool


def row_events(
    row: MessageFactRow,
    *,
    delivered_from: DeliveredFrom,
    wanted: frozenset[int],
    channel_id: int,
    campaign_id: int,
    now: datetime,
) -> list[EngagementEvent]:
    """The events one message owes: each wanted metric it counts in and that was not handled yet,
    timed when it first qualified (`now` when that is unknown)."""
    facts = facts_of(row)
    handled = set(row.reported or ())
    return [
        EngagementEvent(
            metric_id=int(metric),
            customer_id=row.customer_id,
            occurred_at=when or now,
            campaign_id=campaign_id,
            channel_id=channel_id,
            template_id=row.template_id,
            message_id=str(row.id),
        )
        for metric, when in sorted(metric_times(facts, delivered_from).items())
        if int(metric) in wanted and int(metric) not in handled
    ]


def split_by_age(
    events: Iterable[EngagementEvent], now: datetime, pending: PendingEvents, max_new: int
) -> None:
    """Sort events into `pending`: too old (recorded, not sent) or to send (at most `max_new`)."""
    for event in events:
        if too_old(event.occurred_at, now):
            pending.too_old.append((uuid.UUID(event.message_id), event.metric_id, event.occurred_at))
        elif len(pending.to_send) >= max_new:
            pending.truncated = True
        else:
            pending.to_send.append(event)


async def push_events(
    pool: Pool,
    client: EngagementClient,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    *,
    settings: ReportingSettings,
    now: datetime,
) -> EventPushResult:
    """Send the campaign's not-yet-sent interactions as events; see the module docstring."""
    wanted = frozenset(MetricID(m) for m in settings.engagement.metrics)
    pending = PendingEvents()
    async with pool.connection() as conn:
        info = await channel_info(conn, tenant_id, channel_id)
        if info is None:  # the channel was removed: nothing can be reported for it any more
            return EventPushResult(0, 0, False)
        async for row in engagement_store.message_facts(conn, tenant_id, channel_id, campaign_id):
            events = row_events(
                row,
                delivered_from=info.delivered_from,
                wanted=wanted,
                channel_id=channel_id,
                campaign_id=campaign_id,
                now=now,
            )
            split_by_age(events, now, pending, settings.max_interactions_per_push)
        for old in chunked(pending.too_old, 10_000):
            await engagement_store.record(
                conn, tenant_id, channel_id, campaign_id, old, status="too_old", at=now
            )
    if pending.too_old:
        log.warning(
            "engagement events too old to send",
            tenant=tenant_id,
            channel=channel_id,
            campaign=campaign_id,
            dropped=len(pending.too_old),
        )
    sent = 0
    for batch in chunked(pending.to_send, settings.engagement.events_per_request):
        await client.save_batch(batch)
        async with pool.connection() as conn:
            await engagement_store.record(
                conn,
                tenant_id,
                channel_id,
                campaign_id,
                [(uuid.UUID(e.message_id), e.metric_id, e.occurred_at) for e in batch],
                status="sent",
                at=now,
            )
        sent += len(batch)
    return EventPushResult(sent, len(pending.too_old), pending.truncated)


def client_config(
    base_url: str, token: str, events: EngagementEventSettings, timeout_s: float
) -> EngagementClientConfig:
    return EngagementClientConfig(
        base_url=base_url,
        token=token,
        events_per_request=events.events_per_request,
        timeouts=Timeouts(total_s=timeout_s),
        event_names={**DEFAULT_EVENT_NAMES, **events.event_names},
    )


async def engagement_client(
    runtime: Runtime, tenant_id: str, settings: ReportingSettings
) -> EngagementClient:
    """A client for the tenant's saveEvent endpoint; OptimoveRequestError if its settings are incomplete."""
    async with runtime.pool.connection() as conn:
        row = await engagement_store.get(conn, tenant_id)
        token = await engagement_store.token(conn, runtime.box, tenant_id)
    base_url = metric_base_url(row.base_url, row.metric_tenant_id)
    if base_url is None or token is None:
        raise OptimoveRequestError(
            f"tenant {tenant_id!r} reports by events but has no metric tenant id or token", call="saveEvent"
        )
    return EngagementClient(
        client_config(base_url, token, settings.engagement, runtime.settings.optimove_timeout_s),
        outbound=runtime.settings.outbound_policy,
    )


async def push_reports(
    runtime: Runtime,
    client: OptimoveClient,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    *,
    settings: ReportingSettings,
    now: datetime,
) -> PushResult:
    """One push of one campaign in the tenant's reporting mode (classic, events or both).

    In `events` mode no classic call is made; the result counts events as interactions."""
    async with runtime.pool.connection() as conn:
        mode = (await engagement_store.get(conn, tenant_id)).mode
    classic = PushResult(0, 0, 0, False)
    if mode in ("classic", "both"):
        classic = await push_campaign(
            runtime.pool, client, tenant_id, channel_id, campaign_id, settings=settings, now=now
        )
    if mode == "classic":
        return classic
    async with await engagement_client(runtime, tenant_id, settings) as events_client:
        events = await push_events(
            runtime.pool, events_client, tenant_id, channel_id, campaign_id, settings=settings, now=now
        )
    log.info(
        "engagement events pushed",
        tenant=tenant_id,
        channel=channel_id,
        campaign=campaign_id,
        sent=events.sent,
        too_old=events.too_old,
    )
    return PushResult(
        classic.templates,
        classic.metrics_sent,
        classic.interactions_sent + events.sent,
        classic.truncated or events.truncated,
    )

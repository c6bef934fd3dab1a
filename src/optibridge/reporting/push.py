"""Push one campaign's results to Optimove: metric totals, then the new interaction lists.

Metric values are totals (the emulator and our API notes treat MetricValue as replacing the
previous value), so sending them again is harmless. Interaction lists are sent in calls of at most
10,000 customers, and each call's customers are recorded as reported only once Optimove answered
200: a failure sends them again next time, an acceptance never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg_pool

from optibridge.core.reporting_settings import ReportingSettings
from optibridge.optimove import OptimoveClient
from optibridge.optimove.batching import chunked
from optibridge.optimove.models import CampaignMetric
from optibridge.reporting.aggregate import CampaignReport, channel_info, compute_report
from optibridge.store import report_data

Pool = psycopg_pool.AsyncConnectionPool[Any]
INTERACTIONS_PER_CALL = 10_000


@dataclass(frozen=True, slots=True)
class PushResult:
    templates: int
    metrics_sent: int
    interactions_sent: int
    truncated: bool


def metric_items(report: CampaignReport) -> list[CampaignMetric]:
    return [
        CampaignMetric(report.campaign_id, report.channel_id, template, int(metric), value)
        for template, counts in sorted(report.counts.items())
        for metric, value in sorted(counts.items())
    ]


async def push_campaign(
    pool: Pool,
    client: OptimoveClient,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    *,
    settings: ReportingSettings,
    now: datetime,
) -> PushResult:
    async with pool.connection() as conn:
        info = await channel_info(conn, tenant_id, channel_id)
        if info is None:  # the channel was removed: nothing can be reported for it any more
            return PushResult(0, 0, 0, False)
        report = await compute_report(
            conn,
            tenant_id,
            channel_id,
            campaign_id,
            delivered_from=info.delivered_from,
            interaction_metrics=settings.interaction_metrics,
            max_new=settings.max_interactions_per_push,
            now=now,
        )
    metrics = metric_items(report)
    if metrics:
        await client.update_campaign_metrics(metrics)
        async with pool.connection() as conn:
            await report_data.record_metrics(
                conn,
                tenant_id,
                channel_id,
                campaign_id,
                [(m.template_id, m.metric_id, int(m.metric_value)) for m in metrics],
                now,
            )
    sent = 0
    for key in sorted(report.interactions):
        batch = report.interactions[key]
        pairs = list(zip(batch.message_ids, batch.customer_ids, strict=True))
        for chunk in chunked(pairs, INTERACTIONS_PER_CALL):
            await client.update_campaign_interactions(
                campaign_id=campaign_id,
                channel_id=channel_id,
                template_id=batch.template_id,
                event_id=batch.event_id,
                interaction_date=batch.interaction_date,
                customer_ids=[customer for _, customer in chunk],
            )
            async with pool.connection() as conn:
                await report_data.record_interactions(
                    conn,
                    tenant_id,
                    channel_id,
                    campaign_id,
                    event_id=batch.event_id,
                    interaction_date=batch.interaction_date,
                    message_ids=[mid for mid, _ in chunk],
                    at=now,
                )
            sent += len(chunk)
    return PushResult(len(report.counts), len(metrics), sent, report.truncated)

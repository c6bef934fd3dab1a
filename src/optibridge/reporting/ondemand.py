"""A push now, outside the schedule (`optibridge reports push`, `POST .../report-push`).

It sends what a scheduled push would send at this moment: the current metric totals and every
interaction not yet accepted by Optimove. It takes the same per-campaign lock as the periodic tick
(store.reports.push_lock), so the two never run at once on one campaign: no customer is sent twice
in an interaction list, and an older total can never land after a newer one. The schedule itself
is left as it is; its next push sends totals again, which is harmless (totals replace).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.core.reporting_settings import reporting_settings
from optibridge.reporting.engagement_events import push_reports
from optibridge.reporting.push import PushResult
from optibridge.runtime import Runtime
from optibridge.store import reports as report_store

# A scheduled push of the same campaign may be under way; it rarely takes more than seconds.
LOCK_WAIT_S = 60.0
# A push carries at most `max_interactions_per_push` new interactions; an on-demand push goes on
# until none is left, within this many rounds (200,000 each by default).
MAX_ROUNDS = 50


@dataclass(frozen=True, slots=True)
class ChannelPush:
    tenant_id: str
    channel_id: int
    campaign_id: int
    metrics_sent: int
    interactions_sent: int
    complete: bool  # False only if MAX_ROUNDS ran out with interactions still left


async def push_now(
    runtime: Runtime,
    campaign_id: int,
    *,
    tenant_id: str | None,
    now: datetime,
    lock_wait_s: float = LOCK_WAIT_S,
) -> list[ChannelPush]:
    """Push one campaign's results on each of its channels now; raises NotFoundError for an unknown
    campaign, ConflictError if the id is ambiguous across tenants or a push stays locked."""
    async with runtime.pool.connection() as conn:
        targets = await report_store.campaign_channels(conn, campaign_id, tenant_id)
    if not targets:
        raise NotFoundError(
            f"no campaign {campaign_id}" + (f" for tenant {tenant_id!r}" if tenant_id else "")
        )
    tenants = {t for t, _ in targets}
    if len(tenants) > 1:
        raise ConflictError(
            f"campaign {campaign_id} exists for several tenants ({', '.join(sorted(tenants))}); name one"
        )
    settings = reporting_settings(runtime.settings)
    done = []
    for tenant, channel in targets:
        async with report_store.push_lock(
            runtime.db, tenant, channel, campaign_id, wait_s=lock_wait_s
        ) as locked:
            if not locked:
                raise ConflictError(
                    f"a push of campaign {campaign_id} on channel {channel} is still running; try again"
                )
            client = await runtime.clients.get(tenant)
            metrics = interactions = 0
            result: PushResult | None = None
            try:
                for _ in range(MAX_ROUNDS):
                    result = await push_reports(
                        runtime, client, tenant, channel, campaign_id, settings=settings, now=now
                    )
                    metrics, interactions = result.metrics_sent, interactions + result.interactions_sent
                    if not result.truncated:
                        break
            except Exception as exc:
                # In the push history with our words for the refusal (what earlier rounds got
                # accepted stays recorded as reported); the caller still gets the error.
                async with runtime.pool.connection() as conn:
                    await report_store.record_push(
                        conn,
                        tenant,
                        channel,
                        campaign_id,
                        at=now,
                        trigger="on demand",
                        accepted=False,
                        metrics=metrics,
                        interactions=interactions,
                        answer=f"{type(exc).__name__}: {exc}"[:1000],
                    )
                raise
            async with runtime.pool.connection() as conn:
                await report_store.record_manual_push(conn, tenant, channel, campaign_id, now)
                await report_store.record_push(
                    conn,
                    tenant,
                    channel,
                    campaign_id,
                    at=now,
                    trigger="on demand",
                    accepted=True,
                    metrics=metrics,
                    interactions=interactions,
                    complete=result is not None and not result.truncated,
                )
        done.append(
            ChannelPush(
                tenant,
                channel,
                campaign_id,
                metrics,
                interactions,
                result is not None and not result.truncated,
            )
        )
    return done

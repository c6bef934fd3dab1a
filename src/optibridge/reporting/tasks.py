"""The reporting job: one periodic tick (every minute, `ReportingSettings.tick_cron`) that finds
campaigns that finished sending, pushes every due report, and sends pending opt-outs to Optimove.

procrastinate's periodic deferral inserts one job per period whatever the number of workers; due
schedule rows are moreover leased (`optibridge.store.reports.claim_due`), so even two ticks running
at once never push the same campaign twice. Everything takes `now` as an argument:
tests drive days of schedule with an injected clock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import procrastinate
from procrastinate import JobContext

from optibridge.core.logs import get_logger
from optibridge.core.reporting_settings import ReportingSettings, reporting_settings
from optibridge.engine.jobs import worker_name
from optibridge.feedback.preferences import PreferencePush, push_preferences
from optibridge.reporting.engagement_events import push_reports
from optibridge.reporting.push import PushResult
from optibridge.reporting.schedule import SchedulePolicy, next_push_after_failure, next_push_after_success
from optibridge.runtime import Runtime, runtime_of
from optibridge.store import reports as report_store

log = get_logger(__name__)

TICK_TASK = "optibridge.reporting.tick"
QUEUE = "reporting"


@dataclass
class TickReport:
    discovered: int = 0
    pushed: list[tuple[str, int, int]] = field(default_factory=list)
    failed: list[tuple[str, int, int]] = field(default_factory=list)
    # Due, but an on-demand push of the same campaign held its lock: the next tick takes it.
    deferred: list[tuple[str, int, int]] = field(default_factory=list)
    preferences: PreferencePush | None = None


async def discover_finished(runtime: Runtime, now: datetime, policy: SchedulePolicy) -> int:
    """Start a schedule for every campaign that has finished sending; returns how many."""
    async with runtime.pool.connection() as conn:
        return await report_store.discover(conn, now, policy.final_at(now))


async def _push_one(
    runtime: Runtime,
    row: report_store.DueSchedule,
    settings: ReportingSettings,
    policy: SchedulePolicy,
    now: datetime,
    worker: str,
) -> bool | None:
    """Push one leased campaign; None when its push lock was busy (lease given back untouched)."""
    tenant, channel, campaign = row.tenant_id, row.channel_id, row.campaign_id
    if row.final_at is not None and row.final_at > row.finished_at:
        # The campaign's own reporting window (event 14's Duration), stored with its schedule.
        policy = replace(policy, window=row.final_at - row.finished_at)
    try:
        async with report_store.push_lock(
            runtime.db, tenant, channel, campaign, wait_s=settings.push_lock_wait_s
        ) as locked:
            if not locked:
                async with runtime.pool.connection() as conn:
                    await report_store.release_lease(conn, tenant, channel, campaign, worker)
                return None
            client = await runtime.clients.get(tenant)
            # By the tenant's reporting mode: classic calls, signed engagement events, or both.
            result: PushResult = await push_reports(
                runtime, client, tenant, channel, campaign, settings=settings, now=now
            )
    except Exception as exc:
        failures = row.failures + 1
        retry_at = next_push_after_failure(now, failures, row.finished_at, policy)
        log.warning(
            "report push failed",
            tenant=tenant,
            channel=channel,
            campaign=campaign,
            failures=failures,
            retry_at=retry_at.isoformat() if retry_at else None,
            error=str(exc)[:300],
        )
        error = f"{type(exc).__name__}: {exc}"[:1000]
        async with runtime.pool.connection() as conn:
            await report_store.record_failure(
                conn, row, worker, failures=failures, error=error, next_push_at=retry_at
            )
            await report_store.record_push(
                conn, tenant, channel, campaign, at=now, trigger="schedule", accepted=False, answer=error
            )
        return False
    # More new interactions than one push may carry: continue at the next tick, off the grid.
    following = now if result.truncated else next_push_after_success(row.finished_at, now, policy)
    async with runtime.pool.connection() as conn:
        await report_store.record_success(conn, row, worker, now=now, next_push_at=following)
        await report_store.record_push(
            conn,
            tenant,
            channel,
            campaign,
            at=now,
            trigger="schedule",
            accepted=True,
            metrics=result.metrics_sent,
            interactions=result.interactions_sent,
            complete=not result.truncated,
        )
    log.info(
        "report pushed",
        tenant=tenant,
        channel=channel,
        campaign=campaign,
        metrics=result.metrics_sent,
        interactions=result.interactions_sent,
        next_push=following.isoformat() if following else None,
    )
    return True


async def run_tick(runtime: Runtime, now: datetime, settings: ReportingSettings | None = None) -> TickReport:
    """Discover finished campaigns, push every due one, send pending opt-outs."""
    cfg = settings or reporting_settings(runtime.settings)
    policy = SchedulePolicy.from_settings(cfg)
    report = TickReport(discovered=await discover_finished(runtime, now, policy))
    worker = worker_name()
    async with runtime.pool.connection() as conn:
        due = await report_store.claim_due(
            conn, now, now + timedelta(seconds=cfg.lease_s), worker, cfg.campaigns_per_tick
        )
    gate = asyncio.Semaphore(cfg.concurrency)

    async def one(row: report_store.DueSchedule) -> None:
        async with gate:
            ok = await _push_one(runtime, row, cfg, policy, now, worker)
        target = (row.tenant_id, row.channel_id, row.campaign_id)
        (report.deferred if ok is None else report.pushed if ok else report.failed).append(target)

    await asyncio.gather(*(one(row) for row in due))
    report.preferences = await push_preferences(runtime.pool, runtime.clients.get, now=now)
    return report


def register(app: procrastinate.App, settings: ReportingSettings | None = None) -> None:
    """Add the reporting tasks to a job app (called by `jobs.create_job_app`)."""
    cfg = settings or ReportingSettings()

    # No retry: a tick that failed is simply the next tick's work (one runs every minute).
    @app.periodic(cron=cfg.tick_cron, periodic_id="")
    @app.task(name=TICK_TASK, queue=QUEUE, pass_context=True)
    async def tick(context: JobContext, timestamp: int) -> None:
        runtime = runtime_of(context)
        result = await run_tick(runtime, datetime.now(UTC), reporting_settings(runtime.settings))
        if result.discovered or result.pushed or result.failed:
            log.info(
                "reporting tick",
                discovered=result.discovered,
                pushed=len(result.pushed),
                failed=len(result.failed),
            )

"""One retention run: purge the campaigns whose reporting is over, then old finished jobs.

A campaign is purged in batches of `batch_rows` messages, each its own transaction that adds the
batch to the campaign's totals (`campaign_totals`, `campaign_event_days`) and deletes it, so a run
never holds one giant transaction, and a crash or a second run resumes without counting a
message twice. Each batch takes a transaction-scoped advisory lock: with several workers, one
purges and the others stop at once. A run stops after `max_seconds`; the next run continues.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from procrastinate.manager import JobManager

from optibridge.core.logs import get_logger
from optibridge.retention.policy import RetentionPolicy, job_age_hours
from optibridge.runtime import Pool
from optibridge.store import retention as store

log = get_logger(__name__)

# The tables a purge deletes from; vacuumed after a run that deleted rows, so the next days'
# ingest reuses the space at once instead of after autovacuum's 20%-dead-rows threshold.
PURGED_TABLES = ("messages", "message_events", "reported_interactions")


@dataclass
class RetentionReport:
    campaigns: list[store.CampaignKey] = field(default_factory=list)  # purged to the last row
    messages_deleted: int = 0
    pruned: dict[str, int] = field(default_factory=dict)  # rows per table (store.retention.PRUNED_TABLES)
    locked_out: bool = False  # another worker was purging
    out_of_time: bool = False


async def purge_campaigns(
    pool: Pool, now: datetime, policy: RetentionPolicy, *, vacuum: bool = True
) -> RetentionReport:
    report = RetentionReport()
    deadline = time.monotonic() + policy.max_seconds
    async with pool.connection() as conn:
        due = await store.due_campaigns(
            conn,
            final_before=policy.final_before(now),
            idle_before=policy.idle_before(now),
            limit=policy.campaigns_per_run,
        )
    for key in due:
        while True:
            if time.monotonic() > deadline:
                report.out_of_time = True
                break
            async with pool.connection() as conn, conn.transaction():
                if not await store.try_lock(conn):
                    report.locked_out = True
                    break
                deleted = await store.purge_batch(
                    conn, key, policy.batch_rows, keep_sent_after=policy.unsubscribe_sent_after(now)
                )
                report.messages_deleted += deleted
                if deleted < policy.batch_rows:
                    if await store.mark_purged(conn, key, now):
                        report.campaigns.append(key)
                    break
        if report.locked_out or report.out_of_time:
            break
    if not (report.locked_out or report.out_of_time):
        await prune_records(pool, now, policy, deadline, report)
    if vacuum:
        tables = [*(PURGED_TABLES if report.messages_deleted else ()), *report.pruned]
        async with pool.connection() as conn:
            for table in tables:
                await conn.execute(f"VACUUM (ANALYZE) {table}")
    return report


async def prune_records(
    pool: Pool, now: datetime, policy: RetentionPolicy, deadline: float, report: RetentionReport
) -> None:
    """The tables that grow without belonging to one campaign's rows: kept unsubscribe
    recipients past `unsubscribe_keep`, notifications past `notifications_keep` (those of a
    purged campaign went with it), opt-outs Optimove accepted. Batches, locked like the purge."""
    for table in store.PRUNED_TABLES:
        before = policy.prune_before(table, now)
        while time.monotonic() <= deadline:
            async with pool.connection() as conn, conn.transaction():
                if not await store.try_lock(conn):
                    report.locked_out = True
                    return
                deleted = await store.prune(conn, table, before, policy.batch_rows)
            if deleted:
                report.pruned[table] = report.pruned.get(table, 0) + deleted
            if deleted < policy.batch_rows:
                break
        else:
            report.out_of_time = True
            return


async def purge_jobs(manager: JobManager, pool: Pool, now: datetime, policy: RetentionPolicy) -> None:
    """Finished jobs older than their keep time, by procrastinate's own cleanup (the query its
    `remove_old_jobs` builtin task runs). Succeeded jobs are normally deleted as they finish
    (the worker runs with delete_jobs="successful"); cancelled, aborted and failed ones stay."""
    async with pool.connection() as conn:
        db_now = await store.database_now(conn)
    await manager.delete_old_jobs(
        nb_hours=job_age_hours(policy.finished_jobs_keep, now, db_now),
        include_cancelled=True,
        include_aborted=True,
    )
    await manager.delete_old_jobs(
        nb_hours=job_age_hours(policy.failed_jobs_keep, now, db_now), include_failed=True
    )


async def run_retention(
    pool: Pool, manager: JobManager | None, now: datetime, policy: RetentionPolicy
) -> RetentionReport:
    report = await purge_campaigns(pool, now, policy)
    if manager is not None and not report.locked_out:
        await purge_jobs(manager, pool, now, policy)
    if report.campaigns or report.messages_deleted or report.pruned:
        log.info(
            "retention run",
            campaigns=len(report.campaigns),
            messages=report.messages_deleted,
            pruned=report.pruned,
            out_of_time=report.out_of_time,
        )
    return report

"""Thirty simulated days of daily campaigns (2,000 e-mails a day with opens, clicks, bounces,
reported interactions and a few failed jobs), retention run every day at that day's clock: the
database stops growing once campaigns start leaving the window (day 10), and its size at day 30
is within 20% of day 10. Prints the sizes and bytes per message before and after the purge."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import procrastinate
from retentionkit import (
    Conn,
    Pool,
    add_tenant,
    customer_details,
    engage,
    ingest_campaign,
    mark_sent,
    report_cycle,
)

from optibridge.retention.policy import RetentionPolicy
from optibridge.retention.purge import run_retention

DAYS = 30
PER_DAY = 2000
FAILED_JOBS_PER_DAY = 40
# Every table the product writes to: ours and procrastinate's (listed from the catalog, so a
# table added later is measured too).
SIZE_SQL = """
SELECT c.relname AS name, pg_total_relation_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
"""


async def table_sizes(conn: Conn) -> dict[str, int]:
    rows = await (await conn.execute(SIZE_SQL)).fetchall()
    return {r["name"]: int(r["bytes"]) for r in rows}


async def add_failed_jobs(conn: Conn, at: datetime, n: int) -> None:
    """Failed jobs as a worker leaves them (succeeded ones are deleted as they finish), with their
    events stamped at the simulated time."""
    rows = await (
        await conn.execute(
            """INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)
               SELECT 'intake', 'optibridge.intake.ingest',
                      jsonb_build_object('tenant_id', 'acme', 'campaign_id', g), 'failed', 8
               FROM generate_series(1, %s) g RETURNING id""",
            (n,),
        )
    ).fetchall()
    ids = [r["id"] for r in rows]
    await conn.execute(
        """INSERT INTO procrastinate_events (job_id, type, at)
           SELECT j, t::procrastinate_job_event_type, %s
           FROM unnest(%s::bigint[]) j, unnest(ARRAY['deferred', 'started', 'failed']) t""",
        (at, ids),
    )


async def test_database_size_levels_off_over_thirty_days(pool: Pool, db_url: str) -> None:
    rng = random.Random(16)
    # Days in the past, so procrastinate's cleanup (ages counted on the database's clock) sees
    # the simulated job times as the past they are.
    t0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=DAYS + 2)
    policy = RetentionPolicy()  # the defaults: 7-day window, 3-day margin, 7/30 days of jobs
    job_app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db_url))
    sizes: dict[int, dict[str, int]] = {}
    full_bytes_per_message = 0.0
    purge_s = 0.0  # retention runs that purged a campaign: summaries, deletes, vacuum, job cleanup
    async with pool.connection() as conn:
        await add_tenant(conn)
    async with job_app.open_async():
        for day in range(DAYS + 1):
            now = t0 + timedelta(days=day)
            async with pool.connection() as conn:
                customers = [f"C{day:02d}{n:05d}" for n in range(PER_DAY)]
                await ingest_campaign(conn, 1000 + day, customer_details(customers, now), now)
                await mark_sent(conn, 1000 + day, now + timedelta(minutes=20))
                await engage(conn, 1000 + day, now, rng)
                await add_failed_jobs(conn, now, FAILED_JOBS_PER_DAY)
                await report_cycle(conn, now + timedelta(hours=1))
                # Autovacuum's part (the test server's may not get round to it in seconds): the
                # day's send-state updates leave a dead version of every row.
                await conn.execute("VACUUM messages")
            started = time.perf_counter()
            report = await run_retention(pool, job_app.job_manager, now + timedelta(hours=2), policy)
            purge_s += time.perf_counter() - started if day >= 10 else 0.0
            async with pool.connection() as conn:
                if day == 9:
                    # Ten campaigns in, none purged yet: what a message costs while it is kept.
                    s = await table_sizes(conn)
                    kept = s["messages"] + s["message_events"] + s["reported_interactions"]
                    full_bytes_per_message = kept / (10 * PER_DAY)
                if day in (10, 20, 30):
                    # Measured as autovacuum leaves tables (the purge vacuums its own tables).
                    await conn.execute("VACUUM")
                    sizes[day] = await table_sizes(conn)
            # From day 10 on, each day purges the campaign that left the window + margin.
            assert len(report.campaigns) == (1 if day >= 10 else 0), (day, report)
            assert report.messages_deleted == (PER_DAY if day >= 10 else 0)

        async with pool.connection() as conn:
            totals = await (
                await conn.execute(
                    "SELECT count(DISTINCT campaign_id) AS c, sum(messages) AS m FROM campaign_totals"
                )
            ).fetchone()
            live = await (await conn.execute("SELECT count(*) AS n FROM messages")).fetchone()
            jobs = await (await conn.execute("SELECT count(*) AS n FROM procrastinate_jobs")).fetchone()
            summary = await table_sizes(conn)
    assert totals is not None
    assert live is not None
    assert jobs is not None
    assert (totals["c"], totals["m"]) == (21, 21 * PER_DAY)  # campaigns 0..20, each message once
    assert live["n"] == 10 * PER_DAY  # campaigns 21..30 are inside window + margin
    # Failed jobs are kept 30 days: all 31 days' here; cancelled/aborted would go after 7.
    assert jobs["n"] <= (DAYS + 1) * FAILED_JOBS_PER_DAY

    total = {day: sum(s.values()) for day, s in sizes.items()}
    summary_bytes = summary["campaign_totals"] + summary["campaign_event_days"]
    print()
    for day in sorted(sizes):
        print(f"day {day}: {total[day] / 1e6:.2f} MB in all tables")
    for name in sorted(sizes[30], key=lambda n: -sizes[30][n])[:8]:
        print(f"  {name}: day 10 {sizes[10][name] / 1e3:.0f} kB, day 30 {sizes[30][name] / 1e3:.0f} kB")
    print(f"bytes per message kept (messages + events + interactions): {full_bytes_per_message:.0f}")
    print(f"bytes per purged message (summary tables / 21 campaigns): {summary_bytes / (21 * PER_DAY):.1f}")
    print(f"retention run per purged message: {purge_s / (21 * PER_DAY) * 1e6:.0f} us (vacuum included)")
    assert total[30] <= total[10] * 1.20, total

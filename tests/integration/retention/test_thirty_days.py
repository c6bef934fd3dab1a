"""Thirty simulated days of daily campaigns (2,000 e-mails a day with opens, clicks, bounces,
reported interactions, Optimove's notifications, 45 report pushes, opt-outs sent to Optimove and a
few failed jobs), retention run every day at that day's clock: the database stops growing once
campaigns start leaving the window (day 10), and its size at day 30 is within 20% of day 10.
Prints the sizes and bytes per message before and after the purge.

The purge keeps each sent message's recipient for its unsubscribe link (`unsubscribe_keys`) for
`unsubscribe_keep_days` after sending, 60 by default, so with the default that table levels off
only at day 60; this test keeps them 15 days so it levels off inside the 30 days, and prints the
bytes per kept recipient (docs/scaling.md gives the size at the default)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import procrastinate
from psycopg.types.json import Jsonb
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
PUSHES_PER_CAMPAIGN = 45  # the reporting schedule's pushes over the 7-day window
OPT_OUTS_PER_DAY = 20
UNSUBSCRIBE_KEEP = timedelta(days=15)
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


async def add_campaign_records(conn: Conn, campaign_id: int, at: datetime, customers: list[str]) -> None:
    """What else a campaign leaves, stamped at the simulated time: Optimove's notifications (three
    about the campaign, one channel-level), its report pushes over the window, opt-outs Optimove
    accepted."""
    payload = {"EventTypeID": 1, "TimeStamp": at.isoformat(), "CampaignID": campaign_id, "ChannelID": 504}
    await conn.execute(
        """INSERT INTO notifications
               (tenant_id, channel_id, event_type, campaign_id, payload, outcome, received_at)
           SELECT 'acme', 504, e, CASE WHEN e = 9 THEN NULL ELSE %s END, %s, 'accepted', %s
           FROM unnest(ARRAY[1, 2, 3, 9]) e""",
        (campaign_id, Jsonb(payload), at),
    )
    await conn.execute(
        """INSERT INTO report_pushes
               (tenant_id, channel_id, campaign_id, pushed_at, trigger, accepted, metrics)
           SELECT 'acme', 504, %s, %s + g * interval '225 minutes', 'schedule', true, 16
           FROM generate_series(0, %s - 1) g""",
        (campaign_id, at, PUSHES_PER_CAMPAIGN),
    )
    await conn.execute(
        """INSERT INTO preference_outbox
               (tenant_id, channel_id, customer_id, communication_mode, reason, created_at, sent_at)
           SELECT 'acme', 504, c, 2, 'unsubscribed', %s, %s FROM unnest(%s::text[]) c""",
        (at, at + timedelta(hours=1), customers[:OPT_OUTS_PER_DAY]),
    )


async def count(conn: Conn, sql: str) -> int:
    row = await (await conn.execute(sql)).fetchone()
    assert row is not None
    return int(row["n"])


async def test_database_size_levels_off_over_thirty_days(pool: Pool, db_url: str) -> None:
    rng = random.Random(16)
    # Days in the past, so procrastinate's cleanup (ages counted on the database's clock) sees
    # the simulated job times as the past they are.
    t0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=DAYS + 2)
    # The defaults (7-day window, 3-day margin, 7/30 days of jobs, notifications 30 days, sent
    # opt-outs 7), but unsubscribe recipients kept 15 days after sending (see the docstring).
    policy = RetentionPolicy(unsubscribe_keep=UNSUBSCRIBE_KEEP)
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
                await add_campaign_records(conn, 1000 + day, now, customers)
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
            pushes = await count(conn, "SELECT count(*) AS n FROM report_pushes")
            notes = await count(conn, "SELECT count(*) AS n FROM notifications")
            opt_outs = await count(conn, "SELECT count(*) AS n FROM preference_outbox")
            kept = await count(conn, "SELECT count(*) AS n FROM unsubscribe_keys")
    assert totals is not None
    assert live is not None
    assert jobs is not None
    assert (totals["c"], totals["m"]) == (21, 21 * PER_DAY)  # campaigns 0..20, each message once
    assert live["n"] == 10 * PER_DAY  # campaigns 21..30 are inside window + margin
    # Failed jobs are kept 30 days: all 31 days' here; cancelled/aborted would go after 7.
    assert jobs["n"] <= (DAYS + 1) * FAILED_JOBS_PER_DAY
    # A purged campaign keeps its last push; the 10 unpurged ones all theirs.
    assert pushes == 21 + 10 * PUSHES_PER_CAMPAIGN
    # Unpurged campaigns' three each; channel-level ones of the last 30 days (day 0's is 30 days
    # and 2 hours old at the last run).
    assert notes == 10 * 3 + DAYS
    # Sent opt-outs of the last 7 days (sent at 10:00, the run at 11:00: day 23's has just gone).
    assert opt_outs == 7 * OPT_OUTS_PER_DAY
    # Recipients of messages sent in the last 15 days and purged (campaigns 16..20).
    assert kept == 5 * PER_DAY

    total = {day: sum(s.values()) for day, s in sizes.items()}
    summary_bytes = summary["campaign_totals"] + summary["campaign_event_days"]
    print()
    for day in sorted(sizes):
        print(f"day {day}: {total[day] / 1e6:.2f} MB in all tables")
    for name in sorted(sizes[30], key=lambda n: -sizes[30][n])[:8]:
        print(f"  {name}: day 10 {sizes[10][name] / 1e3:.0f} kB, day 30 {sizes[30][name] / 1e3:.0f} kB")
    print(f"bytes per message kept (messages + events + interactions): {full_bytes_per_message:.0f}")
    print(f"bytes per purged message (summary tables / 21 campaigns): {summary_bytes / (21 * PER_DAY):.1f}")
    print(f"bytes per kept unsubscribe recipient: {summary['unsubscribe_keys'] / kept:.0f} ({kept} rows)")
    for name in ("report_pushes", "notifications", "preference_outbox", "unsubscribe_keys"):
        print(f"  {name}: day 10 {sizes[10][name] / 1e3:.0f} kB, day 30 {sizes[30][name] / 1e3:.0f} kB")
    print(f"retention run per purged message: {purge_s / (21 * PER_DAY) * 1e6:.0f} us (vacuum included)")
    assert total[30] <= total[10] * 1.20, total

"""The purge itself: which campaigns go (reporting over + margin) and which stay, totals that
match what the rows said to the message, whether the purge runs in one go, resumes after a
partial run, or runs in two workers at once; finished jobs by procrastinate's own cleanup."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
from retentionkit import Conn, Pool, add_tenant, customer_details, engage, ingest_campaign, mark_sent

from optibridge.retention.policy import RetentionPolicy
from optibridge.retention.purge import run_retention
from optibridge.store import retention as store

NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=12)
DUE, IN_MARGIN, ACTIVE, FAILED = 301, 302, 303, 304

STATES_SQL = """SELECT template_id, state::text AS state, count(*) AS n FROM messages
                WHERE campaign_id = %s GROUP BY 1, 2"""
# What reporting counts: per template and kind, messages with a counted (not machine) event, by the
# day of their first one; and every event row.
EVENTS_SQL = """
SELECT template_id, kind, day, count(*) AS messages FROM (
    SELECT DISTINCT ON (message_id, kind) template_id, kind, (occurred_at AT TIME ZONE 'UTC')::date AS day
    FROM message_events WHERE campaign_id = %s AND NOT suspect ORDER BY message_id, kind, occurred_at
) f GROUP BY 1, 2, 3"""


async def facts(conn: Conn, campaign: int) -> tuple[dict[Any, int], dict[Any, int], int]:
    states = {
        (r["template_id"], r["state"]): r["n"]
        for r in await (await conn.execute(STATES_SQL, (campaign,))).fetchall()
    }
    kinds = {
        (r["template_id"], r["kind"], r["day"]): r["messages"]
        for r in await (await conn.execute(EVENTS_SQL, (campaign,))).fetchall()
    }
    row = await (
        await conn.execute("SELECT count(*) AS n FROM message_events WHERE campaign_id = %s", (campaign,))
    ).fetchone()
    return states, kinds, int(row["n"]) if row else 0


async def summary(conn: Conn, campaign: int) -> tuple[dict[Any, int], dict[Any, int], int]:
    states = {
        (r["template_id"], r["state"]): r["messages"]
        for r in await (
            await conn.execute(
                "SELECT template_id, state::text AS state, messages FROM campaign_totals "
                "WHERE campaign_id = %s",
                (campaign,),
            )
        ).fetchall()
    }
    rows = await (
        await conn.execute("SELECT * FROM campaign_event_days WHERE campaign_id = %s", (campaign,))
    ).fetchall()
    kinds = {(r["template_id"], r["kind"], r["day"]): r["messages"] for r in rows if r["messages"]}
    return states, kinds, sum(int(r["events"]) for r in rows)


async def seed(conn: Conn) -> dict[int, tuple[dict[Any, int], dict[Any, int], int]]:
    """Four campaigns of 900 messages: due; done but inside the margin; final push still owed;
    never scheduled (ingest failed) and idle for longer than window + margin."""
    await add_tenant(conn)
    rng = random.Random(5)
    sent = NOW - timedelta(days=20)
    for campaign in (DUE, IN_MARGIN, ACTIVE, FAILED):
        details = customer_details([f"K{campaign}-{n}" for n in range(900)], sent)
        await ingest_campaign(conn, campaign, details, sent)
        # A failed ingest's rows are sent (or expire) like any others; it has no report schedule.
        await mark_sent(conn, campaign, sent)
        if campaign != FAILED:
            await engage(conn, campaign, sent, rng)
    await conn.execute(
        "UPDATE messages SET state = 'failed', reason = 'x' "
        "WHERE campaign_id = %s AND customer_id LIKE '%%7'",
        (DUE,),
    )
    await conn.execute(
        "UPDATE campaigns SET status = 'failed', error = 'Optimove said 500' WHERE campaign_id = %s",
        (FAILED,),
    )
    for campaign, final, state in (
        (DUE, NOW - timedelta(days=3, minutes=1), "done"),
        (IN_MARGIN, NOW - timedelta(days=2), "done"),
        (ACTIVE, NOW - timedelta(days=5), "active"),
    ):
        await conn.execute(
            """INSERT INTO report_schedules (tenant_id, channel_id, campaign_id, finished_at, final_at, state)
               VALUES ('acme', 504, %s, %s, %s, %s)""",
            (campaign, final - timedelta(days=7), final, state),
        )
    return {c: await facts(conn, c) for c in (DUE, IN_MARGIN, ACTIVE, FAILED)}


async def remaining(conn: Conn) -> dict[int, int]:
    rows = await (await conn.execute("SELECT campaign_id, count(*) AS n FROM messages GROUP BY 1")).fetchall()
    return {r["campaign_id"]: r["n"] for r in rows}


def check(before: dict[int, tuple[dict[Any, int], dict[Any, int], int]], after: dict[int, Any]) -> None:
    for campaign in (DUE, FAILED):
        states, kinds, events = before[campaign]
        assert after[campaign] == (states, kinds, events), campaign


async def test_purge_takes_due_campaigns_only_and_keeps_their_totals(pool: Pool) -> None:
    async with pool.connection() as conn:
        before = await seed(conn)
    report = await run_retention(pool, None, NOW, RetentionPolicy(batch_rows=250))
    assert sorted(k.campaign_id for k in report.campaigns) == [DUE, FAILED]
    assert report.messages_deleted == 1800
    async with pool.connection() as conn:
        assert await remaining(conn) == {IN_MARGIN: 900, ACTIVE: 900}
        check(before, {c: await summary(conn, c) for c in (DUE, FAILED)})
        for table in ("message_events", "reported_interactions"):
            row = await (
                await conn.execute(
                    f"SELECT count(*) AS n FROM {table} WHERE campaign_id IN (%s, %s)", (DUE, FAILED)
                )
            ).fetchone()
            assert row is not None
            assert row["n"] == 0, table
        purged = await (
            await conn.execute("SELECT campaign_id FROM campaigns WHERE purged_at IS NOT NULL ORDER BY 1")
        ).fetchall()
        assert [r["campaign_id"] for r in purged] == [DUE, FAILED]
        totals = await store.campaign_totals(conn, store.CampaignKey("acme", 504, DUE))
        assert sum(sum(t.states.values()) for t in totals) == 900
    # Again: nothing more to do, nothing counted twice.
    again = await run_retention(pool, None, NOW, RetentionPolicy(batch_rows=250))
    assert (again.campaigns, again.messages_deleted) == ([], 0)
    async with pool.connection() as conn:
        check(before, {c: await summary(conn, c) for c in (DUE, FAILED)})


async def test_a_partial_run_and_two_workers_at_once_count_each_message_once(pool: Pool) -> None:
    async with pool.connection() as conn:
        before = await seed(conn)
    # A run cut short after one batch (a crash, or the time limit)...
    async with pool.connection() as conn, conn.transaction():
        assert await store.try_lock(conn)
        key, keep = store.CampaignKey("acme", 504, DUE), RetentionPolicy().unsubscribe_sent_after(NOW)
        assert await store.purge_batch(conn, key, 100, keep_sent_after=keep) == 100
    # ...then two workers' runs at once, in small batches.
    policy = RetentionPolicy(batch_rows=40)
    first, second = await asyncio.gather(
        run_retention(pool, None, NOW, policy), run_retention(pool, None, NOW, policy)
    )
    async with pool.connection() as conn:
        # Whichever found the lock held stopped; the next run finishes (bounded).
        for _ in range(5):
            if set(await remaining(conn)) == {IN_MARGIN, ACTIVE}:
                break
            await run_retention(pool, None, NOW, policy)
        assert await remaining(conn) == {IN_MARGIN: 900, ACTIVE: 900}
        check(before, {c: await summary(conn, c) for c in (DUE, FAILED)})
    assert first.messages_deleted + second.messages_deleted <= 1700


async def test_old_finished_jobs_go_by_procrastinates_cleanup(pool: Pool, db_url: str) -> None:
    job_app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db_url))
    async with pool.connection() as conn:
        await add_tenant(conn)
        for status, age_days in (
            ("failed", 40),
            ("failed", 20),
            ("cancelled", 9),
            ("cancelled", 5),
            ("todo", 90),
        ):
            row = await (
                await conn.execute(
                    "INSERT INTO procrastinate_jobs (queue_name, task_name, status) "
                    "VALUES ('q', %s, %s) RETURNING id",
                    (f"{status}-{age_days}", status),
                )
            ).fetchone()
            assert row is not None
            await conn.execute(
                "INSERT INTO procrastinate_events (job_id, type, at) "
                "VALUES (%s, 'deferred', now() - %s * interval '1 day')",
                (row["id"], age_days),
            )
    async with job_app.open_async():
        # The run's clock one day ahead of the database's: ages count from the run's `now`.
        await run_retention(
            pool, job_app.job_manager, datetime.now(UTC) + timedelta(days=1), RetentionPolicy()
        )
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT task_name FROM procrastinate_jobs ORDER BY 1")).fetchall()
    # failed kept 30 days, cancelled 7 (5 + 1 = 6 days old by the run's clock), unfinished forever.
    assert [r["task_name"] for r in rows] == ["cancelled-5", "failed-20", "todo-90"]

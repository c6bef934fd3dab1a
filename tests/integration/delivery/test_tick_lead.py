"""The tick queues a channel's send jobs one tick ahead of its next due message (TICK_LEAD), so a
campaign's first message is not late by a tick plus a job start (bench/scale.py, paced runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from deliverykit import CHANNEL_ID, TENANT, add_campaign, add_tenant, heartbeats, register_worker, runtime

from optibridge.delivery import tasks as delivery_tasks
from optibridge.runtime import Runtime
from optibridge.sinks.http_sink import HttpSink


async def queued_send_jobs(rt: Runtime) -> int:
    async with rt.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = %s AND status = 'todo'",
                (delivery_tasks.SEND_TASK,),
            )
        ).fetchone()
    assert row is not None
    return int(row["n"])


async def test_the_tick_queues_lanes_for_work_due_within_its_lead_and_not_beyond(
    db_url: str, test_secret_key: str, tmp_path: Path
) -> None:
    async with HttpSink() as sink, runtime(db_url, test_secret_key, tmp_path / "data") as rt:
        await add_tenant(rt, sink, lanes=2)
        await add_campaign(rt, 1, 10)
        now = datetime.now(UTC)
        async with rt.pool.connection() as conn:
            later = now + delivery_tasks.TICK_LEAD + timedelta(seconds=2)
            await conn.execute("UPDATE messages SET send_at = %s", (later,))
        assert await delivery_tasks.tick(rt, now) == 0  # due after the lead: not yet
        assert await queued_send_jobs(rt) == 0

        async with rt.pool.connection() as conn:
            soon = now + delivery_tasks.TICK_LEAD / 2
            await conn.execute(
                "UPDATE messages SET send_at = %s "
                "WHERE customer_id = (SELECT min(customer_id) FROM messages)",
                (soon,),
            )
        assert await delivery_tasks.tick(rt, now) == 2  # one job per lane, before the message is due
        assert await queued_send_jobs(rt) == 2
        assert await delivery_tasks.tick(rt, now) == 0  # the queueing lock: one waiting per lane


async def test_a_send_job_started_ahead_waits_and_sends_on_time(
    db_url: str, test_secret_key: str, tmp_path: Path
) -> None:
    async with HttpSink() as sink, runtime(db_url, test_secret_key, tmp_path / "data") as rt:
        await add_tenant(rt, sink, lanes=1)
        await add_campaign(rt, 1, 3)
        due = datetime.now(UTC) + timedelta(seconds=0.6)
        async with rt.pool.connection() as conn:
            await conn.execute("UPDATE messages SET send_at = %s", (due,))
        me = await register_worker(rt)
        async with heartbeats(rt, me):
            stats = await delivery_tasks.run_send(rt, TENANT, CHANNEL_ID, me, budget_s=3.0)
        assert stats.sent == 3
        async with rt.pool.connection() as conn:
            rows = await (await conn.execute("SELECT sent_at - send_at AS late FROM messages")).fetchall()
        lateness = [r["late"].total_seconds() for r in rows]
        assert all(0 <= late < 0.5 for late in lateness), lateness  # not before its time, nor a tick late

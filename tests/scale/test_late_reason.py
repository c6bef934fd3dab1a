"""The campaign page says which campaign is late and why, from what the database knows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from optibridge.store import campaign_story as story_store
from optibridge.web.dashboard.campaigns import LATE_GRACE_S, late_reason

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def inputs(**kw: Any) -> story_store.LatenessInputs:
    base: dict[str, Any] = {
        "overdue": 500,
        "oldest_due": NOW - timedelta(minutes=5),
        "lanes_busy": 1,
        "workers": 2,
        "sent_last_minute": 600,
        "channel_options": {"lanes": 2},
    }
    return story_store.LatenessInputs(**(base | kw))


def why(**kw: Any) -> str | None:
    return late_reason(inputs(**kw), now=NOW, paused=False, hold_until=None)


def test_each_reason_a_late_campaign_can_have() -> None:
    assert why(overdue=0, oldest_due=None) is None  # on time
    assert late_reason(inputs(), now=NOW, paused=True, hold_until=None) == (
        "late: 500 messages overdue, oldest by 300 s: the campaign is paused"
    )
    held = late_reason(inputs(), now=NOW, paused=False, hold_until=NOW + timedelta(hours=1))
    assert held is not None
    assert "on hold until 2026-06-01 10:00 UTC" in held
    assert "no worker is running" in str(why(workers=0))
    # 2 workers x 5/s = 10/s allowed; 9.5/s sent in the last minute: the rate limit is the cause.
    limited = why(channel_options={"lanes": 4, "rate_per_s": 5}, sent_last_minute=570)
    assert limited is not None
    assert "channel at its rate limit (5/s per worker, 10/s now)" in limited
    assert "all 2 lanes busy (10/s)" in str(why(lanes_busy=2))
    assert "no send job running" in str(why(lanes_busy=0))
    assert "providers throttling or benched" in str(why(channel_options={"lanes": 4}))
    assert "100,000+ messages overdue" in str(why(overdue=100_000))


async def test_lateness_inputs_read_overdue_messages_lanes_and_workers(
    conn: psycopg.AsyncConnection[dict[str, object]],
) -> None:
    # Message rows only (no foreign key from messages): what the lateness query reads.
    await conn.execute(
        """INSERT INTO messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id,
                                 scheduled_at, send_at, address)
           SELECT gen_random_uuid(), 'acme', 504, 7, 'C' || g, 1, %(t)s, %(t)s, 'c' || g || '@x.test'
           FROM generate_series(1, 30) g""",
        {"t": NOW - timedelta(minutes=10)},
    )
    await conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, status, args) "
        "VALUES ('delivery', 'optibridge.delivery.send', 'send:acme:504:0', 'doing', '{}')"
    )
    got = await story_store.lateness_inputs(conn, ("acme", 504, 7), now=NOW, grace_s=LATE_GRACE_S)
    assert got.overdue == 30
    assert got.oldest_due == NOW - timedelta(minutes=10)
    assert got.lanes_busy == 1
    assert got.workers == 0
    reason = late_reason(got, now=NOW, paused=False, hold_until=None)
    assert reason == "late: 30 messages overdue, oldest by 600 s: no worker is running (no heartbeat in 30 s)"

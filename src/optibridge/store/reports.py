"""SQL of report pushes: the schedule (`report_schedules`: discovered, leased, updated after each
push), which channels a campaign has, the per-campaign push lock, and the record of a push made
outside the schedule.

procrastinate's periodic deferral inserts one tick job per period whatever the number of workers;
due schedule rows are moreover leased (`lease_until`, claimed with FOR UPDATE SKIP LOCKED), so even
two ticks running at once never push the same campaign twice.

Two pushes of one campaign and channel must never run at once: each computes "interactions not
yet reported" and sends them, so two at once would send the same customers twice, and an older
total sent last would overwrite a newer one at Optimove. The periodic tick leases schedule rows,
but an on-demand push (`optibridge reports push`) has no schedule row to lease while a campaign
is still sending, so both take one PostgreSQL advisory lock per (tenant, channel, campaign).
The lock lives on a dedicated connection, not a pooled one: closing it is the one release that
cannot be skipped by a cancellation, and a pooled connection would carry a forgotten lock to its
next user.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from optibridge.store.database import Database

LOCK_POLL_S = 0.1


def _lock_key(tenant_id: str, channel_id: int, campaign_id: int) -> str:
    return f"optibridge:report-push:{tenant_id}:{channel_id}:{campaign_id}"


@contextlib.asynccontextmanager
async def push_lock(
    db: Database, tenant_id: str, channel_id: int, campaign_id: int, *, wait_s: float
) -> AsyncIterator[bool]:
    """Hold the campaign's push lock for the block; yields False if it was not free within `wait_s`."""
    async with db.connect() as conn:
        key = _lock_key(tenant_id, channel_id, campaign_id)
        deadline = time.monotonic() + wait_s
        while True:
            row = await (
                await conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS ok", (key,))
            ).fetchone()
            if row is not None and row["ok"]:
                break
            if time.monotonic() >= deadline:
                yield False
                return
            await asyncio.sleep(LOCK_POLL_S)
        try:
            yield True
        finally:
            # Closing the connection (leaving `db.connect`) releases it too; unlocking first
            # only frees it a moment earlier.
            with contextlib.suppress(psycopg.Error):
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


async def campaign_channels(
    conn: psycopg.AsyncConnection[dict[str, object]], campaign_id: int, tenant_id: str | None
) -> list[tuple[str, int]]:
    """(tenant, channel id) of every channel this campaign id was notified on."""
    rows = await (
        await conn.execute(
            """SELECT tenant_id, channel_id FROM campaigns
               WHERE campaign_id = %s AND (%s::text IS NULL OR tenant_id = %s)
               ORDER BY tenant_id, channel_id""",
            (campaign_id, tenant_id, tenant_id),
        )
    ).fetchall()
    return [(str(r["tenant_id"]), int(str(r["channel_id"]))) for r in rows]


async def record_manual_push(
    conn: psycopg.AsyncConnection[dict[str, object]],
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    now: datetime,
) -> None:
    """Count an on-demand push on the campaign's schedule, if it has one; the schedule's next
    push stays where it was (it pushes totals again, which is harmless)."""
    await conn.execute(
        """UPDATE report_schedules SET pushes = pushes + 1, last_push_at = %s, updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
        (now, tenant_id, channel_id, campaign_id),
    )


async def release_lease(
    conn: psycopg.AsyncConnection[dict[str, object]],
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    worker: str,
) -> None:
    """Give a leased schedule row back untouched: the next tick takes it again."""
    await conn.execute(
        """UPDATE report_schedules SET lease_until = NULL, leased_by = NULL, updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s AND leased_by = %s""",
        (tenant_id, channel_id, campaign_id, worker),
    )


Conn = psycopg.AsyncConnection[dict[str, Any]]

_DISCOVER = """
INSERT INTO report_schedules (tenant_id, channel_id, campaign_id, finished_at, final_at, next_push_at)
SELECT c.tenant_id, c.channel_id, c.campaign_id, %(now)s,
       -- A campaign's own window (event 14's Duration) wins over the settings' window.
       COALESCE(%(now)s + make_interval(days => c.report_window_days), %(final)s), %(now)s
FROM campaigns c
WHERE c.status IN ('ingested', 'canceled') AND NOT c.cancel_pending
  -- An SMS aggregator campaign (first_event 0) reports through its delivery reports instead.
  AND c.first_event <> 0
  AND NOT EXISTS (SELECT 1 FROM report_schedules r
                  WHERE r.tenant_id = c.tenant_id AND r.channel_id = c.channel_id
                    AND r.campaign_id = c.campaign_id)
  AND NOT EXISTS (SELECT 1 FROM messages m
                  WHERE m.tenant_id = c.tenant_id AND m.channel_id = c.channel_id
                    AND m.campaign_id = c.campaign_id AND m.state IN ('pending', 'claimed'))
  AND EXISTS (SELECT 1 FROM messages m
              WHERE m.tenant_id = c.tenant_id AND m.channel_id = c.channel_id
                AND m.campaign_id = c.campaign_id AND m.state <> 'canceled')
ON CONFLICT DO NOTHING
"""

_CLAIM = """
UPDATE report_schedules s
SET lease_until = %(until)s, leased_by = %(worker)s, updated_at = now()
FROM (SELECT tenant_id, channel_id, campaign_id FROM report_schedules
      WHERE state = 'active' AND next_push_at <= %(now)s
        AND (lease_until IS NULL OR lease_until < %(now)s)
      ORDER BY next_push_at LIMIT %(limit)s
      FOR UPDATE SKIP LOCKED) due
WHERE s.tenant_id = due.tenant_id AND s.channel_id = due.channel_id AND s.campaign_id = due.campaign_id
RETURNING s.tenant_id, s.channel_id, s.campaign_id, s.finished_at, s.failures, s.final_at
"""


async def discover(conn: Conn, now: datetime, final_at: datetime) -> int:
    """Start a schedule (due now, final at `final_at`) for every campaign that has finished sending:
    ingested or canceled, no cancel pending, nothing left to send and something not canceled.
    Returns how many were started."""
    cur = await conn.execute(_DISCOVER, {"now": now, "final": final_at})
    return max(cur.rowcount, 0)


@dataclass(frozen=True, slots=True)
class DueSchedule:
    tenant_id: str
    channel_id: int
    campaign_id: int
    finished_at: datetime
    failures: int
    final_at: datetime | None = None  # the campaign's own window's end (None: the policy's)


async def claim_due(conn: Conn, now: datetime, until: datetime, worker: str, limit: int) -> list[DueSchedule]:
    """Lease up to `limit` due schedules to `worker` until `until`, oldest due first."""
    rows = await (
        await conn.execute(_CLAIM, {"now": now, "until": until, "worker": worker, "limit": limit})
    ).fetchall()
    return [
        DueSchedule(
            r["tenant_id"],
            int(r["channel_id"]),
            int(r["campaign_id"]),
            r["finished_at"],
            int(r["failures"]),
            r["final_at"],
        )
        for r in rows
    ]


async def record_failure(
    conn: Conn,
    due: DueSchedule,
    worker: str,
    *,
    failures: int,
    error: str,
    next_push_at: datetime | None,
) -> None:
    """A leased push failed: retry at `next_push_at`, or (None) give the campaign up; lease released."""
    await conn.execute(
        """UPDATE report_schedules SET failures = %(f)s, last_error = %(err)s,
                  next_push_at = %(next)s, state = %(state)s,
                  lease_until = NULL, leased_by = NULL, updated_at = now()
           WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s
             AND leased_by = %(worker)s""",
        {
            "t": due.tenant_id,
            "ch": due.channel_id,
            "c": due.campaign_id,
            "worker": worker,
            "f": failures,
            "err": error,
            "next": next_push_at,
            "state": "active" if next_push_at else "abandoned",
        },
    )


async def record_success(
    conn: Conn,
    due: DueSchedule,
    worker: str,
    *,
    now: datetime,
    next_push_at: datetime | None,
) -> None:
    """A leased push succeeded: next one at `next_push_at`, or (None) the schedule is done; lease
    released."""
    await conn.execute(
        """UPDATE report_schedules SET pushes = pushes + 1, failures = 0, last_error = NULL,
                  last_push_at = %(now)s, next_push_at = %(next)s, state = %(state)s,
                  lease_until = NULL, leased_by = NULL, updated_at = now()
           WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s
             AND leased_by = %(worker)s""",
        {
            "t": due.tenant_id,
            "ch": due.channel_id,
            "c": due.campaign_id,
            "worker": worker,
            "now": now,
            "next": next_push_at,
            "state": "active" if next_push_at else "done",
        },
    )


@dataclass(frozen=True, slots=True)
class CampaignSchedule:
    """A campaign on one channel with its report schedule (all None/0 before it has one)."""

    tenant_id: str
    channel_id: int
    channel_name: str
    status: str
    schedule_state: str | None
    finished_at: datetime | None
    final_at: datetime | None
    next_push_at: datetime | None
    last_push_at: datetime | None
    pushes: int | None
    failures: int | None
    last_error: str | None


async def campaign_schedules(conn: Conn, campaign_id: int, tenant_id: str | None) -> list[CampaignSchedule]:
    """Every channel this campaign id is on (of one tenant, if given), with its schedule."""
    rows = await (
        await conn.execute(
            """SELECT c.tenant_id, c.channel_id, c.channel_name, c.status, s.state AS schedule_state,
                      s.finished_at, s.final_at, s.next_push_at, s.last_push_at, s.pushes, s.failures,
                      s.last_error
               FROM campaigns c
               LEFT JOIN report_schedules s USING (tenant_id, channel_id, campaign_id)
               WHERE c.campaign_id = %s AND (%s::text IS NULL OR c.tenant_id = %s)
               ORDER BY c.tenant_id, c.channel_id""",
            (campaign_id, tenant_id, tenant_id),
        )
    ).fetchall()
    return [CampaignSchedule(**r) for r in rows]


async def record_push(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    *,
    at: datetime,
    trigger: str,
    accepted: bool,
    metrics: int = 0,
    interactions: int = 0,
    complete: bool = True,
    answer: str | None = None,
) -> None:
    """One push in the campaign's push history (`trigger`: 'schedule' or 'on demand')."""
    await conn.execute(
        """INSERT INTO report_pushes (tenant_id, channel_id, campaign_id, pushed_at, trigger, accepted,
                                      metrics, interactions, complete, answer)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (tenant_id, channel_id, campaign_id, at, trigger, accepted, metrics, interactions, complete, answer),
    )


@dataclass(frozen=True, slots=True)
class PushRecord:
    pushed_at: datetime
    trigger: str
    accepted: bool
    metrics: int
    interactions: int
    complete: bool
    answer: str | None


async def push_history(
    conn: Conn, tenant_id: str, channel_id: int, campaign_id: int, *, limit: int = 100
) -> list[PushRecord]:
    """The campaign's pushes on one channel, newest first."""
    rows = await (
        await conn.execute(
            """SELECT pushed_at, trigger, accepted, metrics, interactions, complete, answer
               FROM report_pushes WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s
               ORDER BY pushed_at DESC, id DESC LIMIT %s""",
            (tenant_id, channel_id, campaign_id, limit),
        )
    ).fetchall()
    return [PushRecord(**r) for r in rows]

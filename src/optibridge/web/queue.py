"""The job queue as an operator sees it: per queue, what is due, scheduled, running, stalled, failed.

Stalled: a job in `doing` whose worker has sent no heartbeat for 30 s (or is gone); the reaper job
re-queues those (optibridge.engine.jobs.retry_stalled_jobs), so a stalled count that stays up means no
worker is running the reaper either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from optibridge.engine.jobs import STALLED_AFTER_S

Conn = psycopg.AsyncConnection[dict[str, Any]]


@dataclass(frozen=True)
class QueueStats:
    queue: str
    due: int
    scheduled: int
    running: int
    stalled: int
    failed: int
    succeeded: int


@dataclass(frozen=True)
class JobRow:
    id: int
    queue: str
    task: str
    status: str
    attempts: int
    scheduled_at: datetime | None
    stalled: bool


_STALLED = (
    "(j.status = 'doing' AND (j.worker_id IS NULL OR NOT EXISTS (SELECT 1 FROM procrastinate_workers w "
    "WHERE w.id = j.worker_id AND w.last_heartbeat > now() - make_interval(secs => %(stall)s))))"
)


async def queue_stats(conn: Conn) -> list[QueueStats]:
    rows = await (
        await conn.execute(
            f"""SELECT j.queue_name AS queue,
                       count(*) FILTER (WHERE j.status = 'todo'
                                        AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())) AS due,
                       count(*) FILTER (WHERE j.status = 'todo' AND j.scheduled_at > now()) AS scheduled,
                       count(*) FILTER (WHERE j.status = 'doing' AND NOT {_STALLED}) AS running,
                       count(*) FILTER (WHERE {_STALLED}) AS stalled,
                       count(*) FILTER (WHERE j.status = 'failed') AS failed,
                       count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded
                FROM procrastinate_jobs j GROUP BY 1 ORDER BY 1""",
            {"stall": STALLED_AFTER_S},
        )
    ).fetchall()
    return [
        QueueStats(
            queue=str(r["queue"]),
            due=int(r["due"]),
            scheduled=int(r["scheduled"]),
            running=int(r["running"]),
            stalled=int(r["stalled"]),
            failed=int(r["failed"]),
            succeeded=int(r["succeeded"]),
        )
        for r in rows
    ]


async def live_workers(conn: Conn) -> int:
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM procrastinate_workers "
            "WHERE last_heartbeat > now() - make_interval(secs => %s)",
            (STALLED_AFTER_S,),
        )
    ).fetchone()
    return int(row["n"]) if row else 0


async def attention_jobs(conn: Conn, limit: int = 50) -> list[JobRow]:
    """Jobs an operator may want to look at: running, stalled and failed ones, newest first."""
    rows = await (
        await conn.execute(
            f"""SELECT j.id, j.queue_name AS queue, j.task_name AS task, j.status::text AS status,
                       j.attempts, j.scheduled_at, {_STALLED} AS stalled
                FROM procrastinate_jobs j WHERE j.status IN ('doing', 'failed')
                ORDER BY j.id DESC LIMIT %(n)s""",
            {"stall": STALLED_AFTER_S, "n": limit},
        )
    ).fetchall()
    return [JobRow(**r) for r in rows]


async def job_counts(conn: Conn) -> list[tuple[str, str, int]]:
    """(queue, status, count) for the metrics: cheap, a GROUP BY over the jobs table."""
    rows = await (
        await conn.execute(
            "SELECT queue_name, status::text AS status, count(*) AS n FROM procrastinate_jobs GROUP BY 1, 2"
        )
    ).fetchall()
    return [(r["queue_name"], r["status"], int(r["n"])) for r in rows]

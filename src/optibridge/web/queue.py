"""The job queue as an operator sees it: per queue, what is due, scheduled, running, stalled, failed.

Stalled: a job in `doing` whose worker has sent no heartbeat for 30 s (or is gone); the reaper job
re-queues those (optibridge.engine.jobs.retry_stalled_jobs), so a stalled count that stays up means no
worker is running the reaper either.
"""

from __future__ import annotations

from optibridge.engine.jobs import STALLED_AFTER_S
from optibridge.store import stats
from optibridge.store.stats import Conn, JobRow, QueueStats

__all__ = ["JobRow", "QueueStats", "attention_jobs", "job_counts", "live_workers", "queue_stats"]


async def queue_stats(conn: Conn) -> list[QueueStats]:
    return await stats.queue_stats(conn, stall_s=STALLED_AFTER_S)


async def live_workers(conn: Conn) -> int:
    return await stats.live_workers(conn, stall_s=STALLED_AFTER_S)


async def attention_jobs(conn: Conn, limit: int = 50) -> list[JobRow]:
    """Jobs an operator may want to look at: running, stalled and failed ones, newest first."""
    return await stats.attention_jobs(conn, stall_s=STALLED_AFTER_S, limit=limit)


async def job_counts(conn: Conn) -> list[tuple[str, str, int]]:
    """(queue, status, count) for the metrics."""
    return await stats.job_counts(conn)

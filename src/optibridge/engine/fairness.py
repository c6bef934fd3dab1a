"""Lane hand-over to the least-loaded worker (docs/scaling.md, "Lane hand-over").

A send lane is one job at a time (a procrastinate job `lock`), ended every few seconds and queued
again, so that the workers of a cluster share a campaign. When a lane's lock frees, every worker
is woken at once (migration 0015's trigger) and the first to fetch takes the lane. Left to that
race, the worker that already runs the other lanes takes them again as often as not (measured:
one worker kept all three lanes of a running campaign in 2 of 3 trials after two others joined).
So a worker that is running locked jobs waits a little before each fetch, longer the more it
runs: a free worker fetches first and takes the lane; a busy one still takes it a moment later
when nobody else is there, so a lone worker pays at most MAX_DELAY_S per hand-over.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import procrastinate
from procrastinate import JobContext
from procrastinate.manager import JobManager

# Per locked job the worker is running. Far above a fetch's round trip to PostgreSQL (~1 ms on a
# LAN), so the free worker's fetch is done before the busy one's starts, even on a busy event
# loop; far below the 1 s lateness budget of a paced campaign (bench/scale.py). At 20 ms the
# joining-workers test (three workers on one event loop, with the sink) lost that race in 3 of
# 19 runs - one joined worker ended with 300 messages or none; at 50 ms, 0 of 10.
STEP_S = 0.05
MAX_DELAY_S = 0.15


def fetch_delay_s(locked_jobs_running: int) -> float:
    """How long a worker running this many locked jobs waits before fetching."""
    return min(MAX_DELAY_S, STEP_S * max(0, locked_jobs_running))


class WorkerLoad:
    """Locked jobs running per worker id, in this process (every worker of the process shares
    the App, hence this one object).

    `queues`: count only the locked jobs of these queues (None: every queue). The service counts
    the send lanes alone: a catalog sync holds its lock while its Optimove client sleeps between
    retries, and counted, it made a free worker look busy. Measured (bench/send.py --latency-ms
    200 --only sms, 2 workers, 2 lanes): with the Optimove URL unreachable, both lanes ran on one
    worker for 10-20 s at a time, ~2,200 SMS/s against ~3,200/s split."""

    def __init__(self, queues: Iterable[str] | None = None) -> None:
        self._running: Counter[int] = Counter()
        self._queues = None if queues is None else frozenset(queues)

    def running(self, worker_id: int | None) -> int:
        return 0 if worker_id is None else self._running[worker_id]

    async def track(
        self, call_next: Callable[[], Awaitable[Any]], context: JobContext, worker: object
    ) -> Any:
        """Worker middleware: counts the job while it runs, if it holds a lock."""
        job = context.job
        worker_id = job.worker_id
        if (
            job.lock is None
            or worker_id is None
            or (self._queues is not None and job.queue not in self._queues)
        ):
            return await call_next()
        self._running[worker_id] += 1
        try:
            return await call_next()
        finally:
            self._running[worker_id] -= 1
            if self._running[worker_id] <= 0:
                del self._running[worker_id]


class LoadAwareJobManager(JobManager):
    """procrastinate's JobManager whose fetch waits fetch_delay_s(locked jobs the worker runs)."""

    def __init__(self, connector: procrastinate.BaseConnector, load: WorkerLoad) -> None:
        super().__init__(connector)
        self.load = load

    async def fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> procrastinate.jobs.Job | None:
        delay = fetch_delay_s(self.load.running(worker_id))
        if delay > 0:
            await asyncio.sleep(delay)
        return await super().fetch_job(queues, worker_id)


def install(app: procrastinate.App, queues: Iterable[str] | None = None) -> WorkerLoad:
    """Give `app` the load-aware fetch, and its workers (by default) the middleware that counts
    the locked jobs of `queues` (None: of every queue)."""
    load = WorkerLoad(queues)
    app.job_manager = LoadAwareJobManager(app.connector, load)
    middleware = list(app.worker_defaults.get("worker_middleware") or [])
    app.worker_defaults["worker_middleware"] = [*middleware, load.track]
    return load

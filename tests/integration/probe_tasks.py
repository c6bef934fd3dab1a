"""A task module that tests load into real worker processes (OPTIBRIDGE_TASK_MODULES=probe_tasks).

Each run of `probe.record` inserts a row, so a test can count how many times each job ran and on
which worker process.
"""

from __future__ import annotations

import os

import procrastinate
from procrastinate import JobContext

PROBE_TASK = "probe.record"


def register(app: procrastinate.App) -> None:
    @app.task(name=PROBE_TASK, queue="probe", pass_context=True)
    async def record(context: JobContext, n: int) -> None:
        pool = context.app.connector.pool  # type: ignore[attr-defined]
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO probe_runs (job_id, n, pid) VALUES (%s, %s, %s)",
                (context.job.id, n, os.getpid()),
            )

"""The retention job: periodic (`retention_cron`, every 10 minutes), once per period whatever the
number of workers (procrastinate's periodic deferral), and locked per batch besides."""

from __future__ import annotations

from datetime import UTC, datetime

import procrastinate
from procrastinate import JobContext

from optibridge.core.config import Settings
from optibridge.retention.policy import RetentionPolicy
from optibridge.retention.purge import run_retention
from optibridge.runtime import runtime_of

TASK = "optibridge.retention.run"
QUEUE = "retention"


def register(app: procrastinate.App, settings: Settings) -> None:
    # No retry: a run that failed is the next run's work.
    @app.periodic(cron=settings.retention_cron, periodic_id="")
    @app.task(name=TASK, queue=QUEUE, pass_context=True)
    async def run(context: JobContext, timestamp: int) -> None:
        runtime = runtime_of(context)
        policy = RetentionPolicy.from_settings(runtime.settings)
        await run_retention(runtime.pool, context.app.job_manager, datetime.now(UTC), policy)

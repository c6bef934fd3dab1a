"""The job engine: procrastinate on our own database, sharing our connection pool.

Tasks are registered on an App made per process by `create_job_app`, so settings (such as the
heartbeat schedule) are read at start-up, not at import. Modules named in `task_modules` add their
own tasks by exposing `register(app)`; that is how plugins (and tests) bring work to every worker.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
import psycopg
from procrastinate import JobContext

from optibridge.core.config import Settings
from optibridge.core.errors import ConfigError
from optibridge.core.logs import get_logger, is_database_unreachable
from optibridge.engine import fairness
from optibridge.store import engine as engine_store

log = get_logger(__name__)

HEARTBEAT_TASK = "optibridge.engine.heartbeat"
ENGINE_QUEUE = "engine"
TICK_RETENTION = timedelta(days=2)


class TransientRetry(procrastinate.BaseRetryStrategy):
    """Retry what may pass (errors that say `retryable`, network and database trouble), with
    exponential backoff; refused credentials slowly, three times (REFUSED_RETRY_S); never what
    will fail the same way again (a bad request)."""

    def __init__(self, max_attempts: int = 8, base_s: float = 2.0, cap_s: float = 600.0) -> None:
        self.max_attempts = max_attempts
        self.base_s = base_s
        self.cap_s = cap_s

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        flag = getattr(exc, "retryable", None)
        if flag is not None:
            return bool(flag)
        return isinstance(exc, (OSError, TimeoutError, psycopg.OperationalError))

    # Refused credentials (401/403 after the client's own token renewal) are retried slowly a few
    # times: a revoked-then-restored API key, or credentials an operator corrects within minutes,
    # must not cost the rest of a campaign half ingested. Then the job fails with its reason.
    REFUSED_RETRY_S = (30, 120, 300)

    @staticmethod
    def is_refused_credentials(exc: BaseException) -> bool:
        return getattr(exc, "status", None) in (401, 403) and not getattr(exc, "retryable", False)

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> procrastinate.RetryDecision | None:
        if job.attempts + 1 >= self.max_attempts:
            return None
        if self.is_refused_credentials(exception):
            if job.attempts >= len(self.REFUSED_RETRY_S):
                return None
            return procrastinate.RetryDecision(retry_in={"seconds": self.REFUSED_RETRY_S[job.attempts]})
        if not self.is_transient(exception):
            return None
        delay = min(self.cap_s, self.base_s * 2**job.attempts)
        return procrastinate.RetryDecision(retry_in={"seconds": int(delay)})


# Periodic tasks without a retry of their own: a tick that lost the database runs again a few
# seconds later instead of ending `failed` (its work is idempotent; the next tick would do it too,
# but a `failed` row would stay behind for work that did succeed).
PERIODIC_RETRY = TransientRetry(max_attempts=4, base_s=1.0, cap_s=10.0)


def retry_periodic_by_default(app: procrastinate.App) -> list[str]:
    """Give every periodic task that has no retry strategy PERIODIC_RETRY; returns their names.

    Periodic jobs carry no queueing lock, so a retry never collides with the next tick's job."""
    names = sorted({p.task.name for p in app.periodic_registry.periodic_tasks.values()})
    changed = []
    for name in names:
        task = app.tasks[name]
        if task.retry_strategy is None:
            task.retry_strategy = PERIODIC_RETRY
            changed.append(name)
    return changed


CallNext = Callable[[], Awaitable[Any]]


async def superseded_on_outage(call_next: CallNext, context: JobContext, worker: object) -> Any:
    """Worker middleware: a queued-by-tick job (one with a queueing lock and no retry strategy, such
    as a send job) that lost the database ends quietly instead of `failed`.

    Retrying it is not possible: the tick has usually queued the same work again under the same
    queueing lock meanwhile, and a retry would collide with it (UniqueViolation, leaving the job
    `doing`). Its work is not lost: the next tick's job does it (claims included, docs/delivery.md).
    The outage itself is logged once per process (core.logs.database_outage).
    """
    try:
        return await call_next()
    except Exception as exc:
        job = context.job
        task = context.app.tasks.get(job.task_name)
        superseded = job.queueing_lock is not None and (task is None or task.retry_strategy is None)
        if superseded and is_database_unreachable(exc):
            log.info(
                "job lost the database; its work is queued again by the next tick",
                job_id=job.id,
                task=job.task_name,
                error=type(exc).__name__,
            )
            return None
        raise


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def record_tick(conn: psycopg.AsyncConnection[Any], period: datetime, worker: str) -> None:
    await engine_store.record_tick(conn, period, worker, drop_before=period - TICK_RETENTION)


REAPER_TASK = "optibridge.engine.retry_stalled_jobs"
STALLED_AFTER_S = 30.0


async def retry_stalled_jobs(app: procrastinate.App) -> int:
    """Jobs left 'doing' by a worker that stopped heartbeating (killed, machine lost) run again.

    Every job is idempotent, so running one again is safe; leaving it would lose its work. A stalled
    job whose work is already queued again (a `todo` job with the same queueing lock, which a tick
    or a new notification deferred meanwhile) cannot go back to `todo` beside it: the waiting job
    does that work, so the stalled one is dropped (deleted; procrastinate lets a job end only as
    succeeded, failed or aborted, and it was none of these). One conflict never stops the pass:
    every stalled job is handled every time.
    """
    stalled = list(await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_S))
    for job in stalled:
        # A job `lock` (send jobs: one per lane) needs nothing here: the stalled job is the one
        # `doing` under its lock, going back to `todo` frees the lock, and a twin waiting under
        # the same queueing lock is the UniqueViolation below.
        try:
            try:
                await app.job_manager.retry_job(job)
            except procrastinate.exceptions.UniqueViolation:
                await app.job_manager.finish_job(
                    job, status=procrastinate.jobs.Status.ABORTED, delete_job=True
                )
                log.warning(
                    "a job of a dead worker is queued again already; dropped",
                    job_id=job.id,
                    task=job.task_name,
                    queueing_lock=job.queueing_lock,
                )
                continue
        except procrastinate.exceptions.ConnectorException as exc:
            # E.g. the job finished or was retried by another pass meanwhile: the next job still gets
            # its turn in this pass.
            log.warning("a job of a dead worker could not be retried", job_id=job.id, error=str(exc)[:300])
            continue
        log.warning("retrying a job of a dead worker", job_id=job.id, task=job.task_name)
    return len(stalled)


def _register_builtin(app: procrastinate.App, settings: Settings) -> None:
    @app.periodic(cron=settings.stalled_jobs_cron, periodic_id="")
    @app.task(name=REAPER_TASK, queue=ENGINE_QUEUE, pass_context=True)
    async def reaper(context: JobContext, timestamp: int) -> None:
        await retry_stalled_jobs(context.app)

    @app.periodic(cron=settings.heartbeat_cron, periodic_id="")
    @app.task(name=HEARTBEAT_TASK, queue=ENGINE_QUEUE, pass_context=True)
    async def heartbeat(context: JobContext, timestamp: int) -> None:
        """Proves that periodic scheduling and workers run; health reads the last tick."""
        pool = context.app.connector.pool  # type: ignore[attr-defined]
        async with pool.connection() as conn:
            await record_tick(conn, datetime.fromtimestamp(timestamp, UTC), worker_name())


def create_engine_app(settings: Settings, lane_queues: Iterable[str] | None = None) -> procrastinate.App:
    """A procrastinate App with the engine's own tasks (heartbeat, stalled-job re-queue); the flows'
    tasks are added by `optibridge.bootstrap.create_job_app`. `lane_queues`: the queues whose
    locked jobs the lane hand-over weighs (fairness.py; None: every queue)."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(),
        worker_defaults={"worker_middleware": [superseded_on_outage]},
    )
    fairness.install(app, lane_queues)  # lane hand-over to the least-loaded worker
    _register_builtin(app, settings)
    return app


def register_task_modules(app: procrastinate.App, module_names: list[str]) -> None:
    """Modules named in the `task_modules` setting add their own tasks through `register(app)`:
    that is how plugins (and tests) bring work to every worker."""
    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"task module {module_name!r} cannot be imported: {exc}") from None
        register = getattr(module, "register", None)
        if not callable(register):
            raise ConfigError(f"task module {module_name!r} has no register(app) function")
        register(app)


async def defer(
    conn: psycopg.AsyncConnection[Any],
    app: procrastinate.App,
    task_name: str,
    *,
    schedule_at: datetime | None = None,
    lock: str | None = None,
    queueing_lock: str | None = None,
    **task_kwargs: Any,
) -> int:
    """Enqueue a job on `conn`, inside whatever transaction `conn` is in.

    This is how work is enqueued together with the rows it acts on: if the transaction rolls
    back, the job was never there; if it commits, both are.
    """
    task = app.tasks.get(task_name)
    if task is None:
        raise KeyError(f"no task named {task_name!r} is registered")
    deferrer = task.configure(
        connection=conn, schedule_at=schedule_at, lock=lock, queueing_lock=queueing_lock
    )
    job_id: int = await deferrer.defer_async(**task_kwargs)
    return job_id

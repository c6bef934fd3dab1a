"""Jobs of the SMS aggregator flow: the handshake (queued when a channel's aggregator settings change,
or when the URL it registered went stale: a rotated listener token, a new public_url; retried while
the tenant's base URL is unreachable) and the delivery-report tick (every few seconds, once in the
cluster: procrastinate periodic; leased rows keep two ticks from reporting twice)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import procrastinate
from procrastinate import JobContext

from optibridge.core.logs import bind, get_logger, unbind
from optibridge.engine import jobs
from optibridge.engine.jobs import TransientRetry
from optibridge.feedback.aggregator_reports import run_reports
from optibridge.intake.aggregator_intake import Conn, handshake, stale_handshakes
from optibridge.runtime import Runtime, runtime_of
from optibridge.store import aggregator as store

log = get_logger(__name__)

HANDSHAKE_TASK = "optibridge.intake.aggregator_handshake"
REPORT_TASK = "optibridge.feedback.aggregator_reports"
REPORT_CRON = "* * * * * */2"
HANDSHAKE_RETRY = TransientRetry(max_attempts=8)
STALE_CHECK_S = 30.0  # how often a process looks for stale handshakes (a few rows, one decrypt each)
PRUNE_EVERY_S = 600.0
KEEP_DAYS = 30  # a batch id stays known this long: Optimove's retries come within minutes or hours
PRUNE_LIMIT = 1000


class HandshakeFailed(Exception):
    """The handshake did not go through; `retryable` tells the job engine whether to try again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


async def defer_handshake(conn: Conn, app: procrastinate.App, tenant_id: str, channel_id: int) -> bool:
    """Queue a handshake in the caller's transaction; False if one is queued already."""
    lock = f"aggregator-handshake:{tenant_id}:{channel_id}"
    try:
        async with conn.transaction():
            await jobs.defer(
                conn, app, HANDSHAKE_TASK, queueing_lock=lock, tenant_id=tenant_id, channel_id=channel_id
            )
    except procrastinate.exceptions.AlreadyEnqueued:
        return False
    return True


async def requeue_stale(runtime: Runtime) -> list[tuple[str, int]]:
    """Queue the handshake of every channel whose registered URL went stale; returns them."""
    stale = await stale_handshakes(runtime)
    for tenant_id, channel_id in stale:
        async with runtime.pool.connection() as conn:
            queued = await defer_handshake(conn, runtime.job_app, tenant_id, channel_id)
        log.info(
            "aggregator: campaignSendUrl changed, handshake again",
            tenant=tenant_id,
            channel=channel_id,
            queued=queued,
        )
    return stale


async def prune_old(runtime: Runtime, now: datetime) -> int:
    """Forget batches (and their report rows) older than KEEP_DAYS with nothing left to report."""
    async with runtime.pool.connection() as conn:
        gone = await store.prune(conn, now - timedelta(days=KEEP_DAYS), PRUNE_LIMIT)
    if gone:
        log.info("aggregator: old batches pruned", batches=gone)
    return gone


def register(app: procrastinate.App) -> None:
    # Per process: the tick runs every 2 s, the stale-handshake check every 30 s, the prune every 10 min.
    last_check = [float("-inf")]
    last_prune = [float("-inf")]

    @app.task(name=HANDSHAKE_TASK, queue="intake", pass_context=True, retry=HANDSHAKE_RETRY)
    async def handshake_task(context: JobContext, /, tenant_id: str, channel_id: int) -> None:
        bind(tenant=tenant_id, channel=channel_id)
        try:
            result = await handshake(runtime_of(context), tenant_id, channel_id)
            if not result.ok:
                raise HandshakeFailed(result.error or "handshake failed", retryable=result.transient)
        finally:
            unbind("tenant", "channel")

    @app.periodic(cron=REPORT_CRON, periodic_id="")
    @app.task(name=REPORT_TASK, queue="feedback", pass_context=True)
    async def report_task(context: JobContext, /, timestamp: int) -> None:
        runtime = runtime_of(context)
        if time.monotonic() - last_check[0] >= STALE_CHECK_S:
            last_check[0] = time.monotonic()
            await requeue_stale(runtime)
        if time.monotonic() - last_prune[0] >= PRUNE_EVERY_S:
            last_prune[0] = time.monotonic()
            await prune_old(runtime, datetime.now(UTC))
        await run_reports(runtime)

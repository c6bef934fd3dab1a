"""Jobs of the SMS aggregator flow: the handshake (queued when a channel's aggregator settings change,
retried while the tenant's base URL is unreachable) and the delivery-report tick (every few seconds,
once in the cluster: procrastinate periodic; leased rows keep two ticks from reporting twice)."""

from __future__ import annotations

import procrastinate
from procrastinate import JobContext

from optibridge.core.logs import bind, get_logger, unbind
from optibridge.engine import jobs
from optibridge.engine.jobs import TransientRetry
from optibridge.feedback.aggregator_reports import run_reports
from optibridge.intake.aggregator_intake import Conn, handshake
from optibridge.runtime import runtime_of

log = get_logger(__name__)

HANDSHAKE_TASK = "optibridge.intake.aggregator_handshake"
REPORT_TASK = "optibridge.feedback.aggregator_reports"
REPORT_CRON = "* * * * * */2"
HANDSHAKE_RETRY = TransientRetry(max_attempts=8)


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


def register(app: procrastinate.App) -> None:
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
        await run_reports(runtime_of(context))

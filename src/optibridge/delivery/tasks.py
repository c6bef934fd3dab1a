"""Delivery jobs: a tick that finds channels with due work, and send jobs that do it.

The tick runs every second (once in the cluster: procrastinate periodic) and enqueues, for each
channel with due or stale-claimed messages, one send job per lane; a queueing lock per lane keeps
at most one waiting. A send job works its lane for a time budget, then ends; the next tick starts
another if work remains. Jobs stay coarse: a job is many slices, never one message.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

import procrastinate
from procrastinate import JobContext

from optibridge.core.config import ChannelOptions
from optibridge.core.logs import bind, get_logger, unbind
from optibridge.delivery import dispatcher as dsp
from optibridge.delivery.reconcile import DEAD_WORKER_AFTER, reconcile
from optibridge.engine import jobs
from optibridge.runtime import Runtime, runtime_of
from optibridge.store import messages as message_store

log = get_logger(__name__)

SEND_TASK = "optibridge.delivery.send"
TICK_TASK = "optibridge.delivery.tick"
SEND_QUEUE = "delivery"
BUDGET_S = 20.0


async def run_send(
    runtime: Runtime, tenant_id: str, channel_id: int, me: str, budget_s: float = BUDGET_S
) -> dsp.SliceStats:
    d = dsp.dispatcher_of(runtime)
    ch = await d.channel(tenant_id, channel_id)
    total = dsp.SliceStats()
    deadline = time.monotonic() + budget_s
    async with runtime.pool.connection() as conn:
        await reconcile(conn, ch, datetime.now(UTC))
        while time.monotonic() < deadline:
            rows = await dsp.claim(conn, ch, me, datetime.now(UTC))
            if not rows:
                break
            total.merge(await dsp.send_slice(d, conn, ch, rows, me))
    return total


async def tick(runtime: Runtime, now: datetime | None = None) -> int:
    """Enqueue send jobs for every channel with due work; returns how many were enqueued."""
    now = now or datetime.now(UTC)
    queued = 0
    async with runtime.pool.connection() as conn:
        due = await message_store.channels_with_due_work(conn, now, dead_after=DEAD_WORKER_AFTER)
        for r in due:
            for lane in range(ChannelOptions.model_validate(r.options).lanes):
                with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
                    await jobs.defer(
                        conn,
                        runtime.job_app,
                        SEND_TASK,
                        queueing_lock=f"send:{r.tenant_id}:{r.channel_id}:{lane}",
                        tenant_id=r.tenant_id,
                        channel_id=r.channel_id,
                        lane=lane,
                    )
                    queued += 1
    return queued


def register(app: procrastinate.App, tick_cron: str) -> None:
    @app.task(name=SEND_TASK, queue=SEND_QUEUE, pass_context=True)
    async def send_task(context: JobContext, /, tenant_id: str, channel_id: int, lane: int) -> None:
        runtime = runtime_of(context)
        me = str(context.job.worker_id)
        bind(tenant=tenant_id, channel=channel_id)
        try:
            stats = await run_send(runtime, tenant_id, channel_id, me)
            if stats.claimed:
                log.info("send: lane done", lane=lane, **vars(stats))
        finally:
            unbind("tenant", "channel")

    @app.periodic(cron=tick_cron, periodic_id="")
    @app.task(name=TICK_TASK, queue=jobs.ENGINE_QUEUE, pass_context=True)
    async def tick_task(context: JobContext, /, timestamp: int) -> None:
        await tick(runtime_of(context))

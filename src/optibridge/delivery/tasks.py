"""Delivery jobs: a tick that finds channels with due work, and send jobs that do it.

The tick runs every second (once in the cluster: procrastinate periodic) and enqueues, for each
channel with due or stale-claimed messages, one send job per lane. Per lane, a queueing lock keeps
at most one job waiting and a job lock (procrastinate `lock`: a job is not fetched while another
with its lock is `doing`) at most one running, so `lanes` is the number of send jobs working a
channel at once across all workers. A send job works its lane for a short time budget, one small
slice at a time, then ends; the lane's next job goes to whichever worker fetches it first, so the
workers of a cluster share a campaign. Jobs stay coarse: a job is many slices, never one message.
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
from optibridge.delivery.results import DatabaseAway
from optibridge.engine import jobs
from optibridge.runtime import Runtime, runtime_of
from optibridge.store import messages as message_store

log = get_logger(__name__)

SEND_TASK = "optibridge.delivery.send"
TICK_TASK = "optibridge.delivery.tick"
SEND_QUEUE = "delivery"
# Short, so that a lane's work moves between workers (a worker that joins a running campaign gets
# the next job of a lane) and a drain or a deploy never waits long; checked between chunks.
BUDGET_S = 5.0


def lane_lock(tenant_id: str, channel_id: int, lane: int) -> str:
    return f"send:{tenant_id}:{channel_id}:{lane}"


async def run_send(
    runtime: Runtime, tenant_id: str, channel_id: int, me: str, budget_s: float = BUDGET_S
) -> dsp.SliceStats:
    """Work a channel until out of time, out of due messages, or the process drains: reconcile dead
    workers' claims, then claim, send and write one slice at a time."""
    d = dsp.dispatcher_of(runtime)
    total = dsp.SliceStats()
    deadline = time.monotonic() + budget_s

    def stop() -> bool:
        return runtime.draining.is_set() or time.monotonic() >= deadline

    try:
        # Results an earlier outage left behind go in before anything is claimed or reconciled.
        await d.writer.flush()
        reconciled = False
        while not stop():
            async with runtime.pool.connection() as conn, d.registry.using(conn, tenant_id, channel_id) as ch:
                if not reconciled:
                    await reconcile(conn, ch, datetime.now(UTC))
                    reconciled = True
                rows = await dsp.claim(conn, ch, me, datetime.now(UTC))
                if not rows:
                    break
                total.merge(await dsp.send_slice(d, conn, ch, rows, me, stop=stop))
    except DatabaseAway as exc:
        log.warning("send job ends: the database is away", error=str(exc), **vars(total))
    return total


async def replay_journals(runtime: Runtime) -> None:
    """Write the send results a stopped process of this machine journaled (and this process's own
    backlog). The first send job of a process does it anyway; a worker may call it at start so that
    the results are in before any tick. Raises the database's error if it is away."""
    await dsp.dispatcher_of(runtime).writer.flush()


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
                        lock=lane_lock(r.tenant_id, r.channel_id, lane),
                        queueing_lock=lane_lock(r.tenant_id, r.channel_id, lane),
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

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
from typing import Any

import procrastinate
from procrastinate import JobContext

from optibridge.core.config import ChannelOptions
from optibridge.core.logs import bind, get_logger, unbind
from optibridge.delivery import dispatcher as dsp
from optibridge.engine import jobs
from optibridge.feedback.keys import TrackingKeys
from optibridge.runtime import runtime_of

log = get_logger(__name__)

SEND_TASK = "optibridge.delivery.send"
TICK_TASK = "optibridge.delivery.tick"
SEND_QUEUE = "delivery"
BUDGET_S = 20.0


def dispatcher_of(runtime: Any) -> dsp.Dispatcher:
    found = runtime.extras.get("dispatcher")
    if found is None:
        found = dsp.Dispatcher(
            pool=runtime.pool,
            box=runtime.box,
            settings=runtime.settings,
            keys=TrackingKeys.from_settings(runtime.settings),
        )
        runtime.extras["dispatcher"] = found
    return found  # type: ignore[no-any-return]


async def run_send(
    runtime: Any, tenant_id: str, channel_id: int, me: str, budget_s: float = BUDGET_S
) -> dsp.SliceStats:
    d = dispatcher_of(runtime)
    ch = await d.channel(tenant_id, channel_id)
    total = dsp.SliceStats()
    deadline = time.monotonic() + budget_s
    async with runtime.pool.connection() as conn:
        await dsp.reconcile(conn, ch, datetime.now(UTC))
        while time.monotonic() < deadline:
            rows = await dsp.claim(conn, ch, me, datetime.now(UTC))
            if not rows:
                break
            stats = await dsp.send_slice(d, conn, ch, rows, me)
            for name in ("claimed", "sent", "retried", "failed", "suppressed", "expired"):
                setattr(total, name, getattr(total, name) + getattr(stats, name))
    return total


DUE_SQL = """
SELECT ch.tenant_id, ch.optimove_channel_id AS channel_id, ch.options FROM channels ch
WHERE EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = ch.tenant_id
              AND m.channel_id = ch.optimove_channel_id AND m.state = 'pending' AND m.send_at <= %(now)s)
   OR EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = ch.tenant_id
              AND m.channel_id = ch.optimove_channel_id AND m.state = 'claimed'
              AND (m.claimed_until < %(now)s OR NOT EXISTS (
                   SELECT 1 FROM procrastinate_workers w WHERE w.id::text = m.claimed_by
                   AND w.last_heartbeat > %(now)s - %(dead)s)))
"""


async def tick(runtime: Any, now: datetime | None = None) -> int:
    """Enqueue send jobs for every channel with due work; returns how many were enqueued."""
    now = now or datetime.now(UTC)
    queued = 0
    async with runtime.pool.connection() as conn:
        rows = await (await conn.execute(DUE_SQL, {"now": now, "dead": dsp.DEAD_WORKER_AFTER})).fetchall()
        for r in rows:
            for lane in range(ChannelOptions.model_validate(r["options"]).lanes):
                with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
                    await jobs.defer(
                        conn,
                        runtime.job_app,
                        SEND_TASK,
                        queueing_lock=f"send:{r['tenant_id']}:{r['channel_id']}:{lane}",
                        tenant_id=r["tenant_id"],
                        channel_id=r["channel_id"],
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

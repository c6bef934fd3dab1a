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

import asyncio
import contextlib
import random
import time
from datetime import UTC, datetime, timedelta

import procrastinate
from procrastinate import JobContext

from optibridge.core.config import ChannelOptions
from optibridge.core.logs import bind, get_logger, unbind
from optibridge.delivery import dispatcher as dsp
from optibridge.delivery.fence import FenceClosed
from optibridge.delivery.reconcile import DEAD_WORKER_AFTER, reconcile
from optibridge.delivery.results import SLICE_ENDERS, DatabaseAway
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
# A send job that runs out of due messages waits for the next one if it is due this soon (and
# within its budget) instead of ending: otherwise a campaign whose send times are spread out
# (below capacity) waits for the next tick, up to a second late, every time the lane catches up.
IDLE_WAIT_S = 1.0
# Each send job's budget is BUDGET_S stretched by up to this fraction, at random: lanes started by
# the same tick would otherwise all end together every 5 s, and the messages due while their
# successors are being fetched (up to the next tick) would all wait; with the ends spread, another
# lane of the channel is still claiming then. Measured by bench/scale.py (paced runs' p99).
BUDGET_JITTER = 0.5
# The tick queues a channel's send jobs when its next message is due within this lead (one tick
# period), not only once it is due: the job starts early, finds nothing due yet and waits for it
# (IDLE_WAIT_S), so the first message of a campaign goes out on time instead of up to a tick plus
# a job start late. Measured by bench/scale.py: every paced message later than 250 ms was due in
# the campaign's first second, and p99 lateness (2 workers) was 500-991 ms from that alone.
TICK_LEAD = timedelta(seconds=IDLE_WAIT_S)


def idle_wait_s(next_due: datetime | None, now: datetime, left_s: float) -> float | None:
    """How long an idle send job should wait for its channel's next due message; None: end now.

    A next message already due but not claimable (paused or held campaign, or locked by another
    lane) is not waited for: the tick brings a job back when there is claimable work."""
    if next_due is None:
        return None
    wait = (next_due - now).total_seconds()
    if wait <= 0 or wait > min(IDLE_WAIT_S, left_s):
        return None
    return wait


def _as_away(exc: BaseException) -> DatabaseAway:
    """A database error met outside a slice, as the DatabaseAway a slice raises."""
    return exc if isinstance(exc, DatabaseAway) else DatabaseAway(str(exc))


def lane_lock(tenant_id: str, channel_id: int, lane: int) -> str:
    return f"send:{tenant_id}:{channel_id}:{lane}"


async def run_send(
    runtime: Runtime, tenant_id: str, channel_id: int, me: str, budget_s: float = BUDGET_S
) -> dsp.SliceStats:
    """Work a channel until out of time, out of due messages, or the process drains: reconcile dead
    workers' claims, then claim, send and write slices (dsp.slice_loops at once)."""
    d = dsp.dispatcher_of(runtime)
    total = dsp.SliceStats()
    deadline = time.monotonic() + budget_s

    away: list[DatabaseAway] = []
    failed = asyncio.Event()

    lease = d.lease(me)
    window = dsp.Window()  # the job's sends in flight, across its slice loops

    def stop() -> bool:
        return bool(away) or failed.is_set() or runtime.draining.is_set() or time.monotonic() >= deadline

    async def work(part: dsp.SliceStats) -> None:
        """One slice loop: claim, send and write a slice at a time (dsp.slice_loops of them run)."""
        try:
            while not stop():
                if not lease.open():  # fence.py: claim nothing the others may soon take over
                    raise FenceClosed("the send fence closed before a claim")
                wait: float | None = 0.0
                async with (
                    runtime.pool.connection() as conn,
                    d.registry.using(conn, tenant_id, channel_id) as ch,
                ):
                    rows = await dsp.claim(d, conn, ch, me, datetime.now(UTC))
                    if rows:
                        part.merge(
                            await dsp.send_slice(d, conn, ch, rows, me, stop=stop, lease=lease, window=window)
                        )
                    else:
                        upcoming = await message_store.next_due(conn, tenant_id, channel_id)
                        wait = idle_wait_s(upcoming, datetime.now(UTC), deadline - time.monotonic())
                if wait is None:
                    break
                if wait > 0:
                    await asyncio.sleep(wait)  # outside the connection: idle, it holds nothing
        except SLICE_ENDERS as exc:
            # The other loops stop at their next chunk. A connection or a lookup that failed here
            # (not a claim, `dsp.claim` says so itself) held nothing: the job just ends.
            away.append(_as_away(exc))
        except Exception:
            failed.set()  # a bug, not an outage: the other loops stop too, and the job raises
            raise

    try:
        # Results an earlier outage left behind go in before anything is claimed or reconciled.
        await d.writer.flush()
        async with runtime.pool.connection() as conn, d.registry.using(conn, tenant_id, channel_id) as ch:
            await reconcile(conn, ch, datetime.now(UTC))
            loops = dsp.slice_loops(ch)
    except SLICE_ENDERS as exc:
        away.append(_as_away(exc))
        loops = 0
    # Several slices at once when one slice holds fewer messages than the channel's sends in
    # flight: one slice's claim and writes overlap another's sends, so the pipeline never drains.
    parts = [dsp.SliceStats() for _ in range(loops)]
    # Every loop ends before the job does, even when one fails: a loop left running would send on
    # after its job (and the lane's lock) ended.
    ended = await asyncio.gather(*(work(part) for part in parts), return_exceptions=True)
    for part in parts:
        total.merge(part)
    for failure in ended:
        if failure is not None:
            raise failure
    if away:
        log.warning("send job ends: the database is away", error=str(away[0]), **vars(total))
    return total


async def defer_successor(runtime: Runtime, tenant_id: str, channel_id: int, lane: int) -> None:
    """A send job that ran out of time while more work is due within IDLE_WAIT_S queues its lane's
    next job at once (it starts when this one's lane lock is free), rather than leaving up to a
    second to the next tick. A waiting job of the lane already there is enough (queueing lock)."""
    async with runtime.pool.connection() as conn:
        upcoming = await message_store.next_due(conn, tenant_id, channel_id)
        if upcoming is None or (upcoming - datetime.now(UTC)).total_seconds() > IDLE_WAIT_S:
            return
        with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
            await jobs.defer(
                conn,
                runtime.job_app,
                SEND_TASK,
                lock=lane_lock(tenant_id, channel_id, lane),
                queueing_lock=lane_lock(tenant_id, channel_id, lane),
                tenant_id=tenant_id,
                channel_id=channel_id,
                lane=lane,
            )


async def replay_journals(runtime: Runtime) -> None:
    """Write the send results a stopped process of this machine journaled (and this process's own
    backlog). The first send job of a process does it anyway; a worker may call it at start so that
    the results are in before any tick. Raises the database's error if it is away."""
    await dsp.dispatcher_of(runtime).writer.flush()


async def tick(runtime: Runtime, now: datetime | None = None) -> int:
    """Enqueue send jobs for every channel with work due within TICK_LEAD; returns how many."""
    now = now or datetime.now(UTC)
    queued = 0
    async with runtime.pool.connection() as conn:
        due = await message_store.channels_with_due_work(
            conn, now, dead_after=DEAD_WORKER_AFTER, due_by=now + TICK_LEAD
        )
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
            began = time.monotonic()
            budget = BUDGET_S * (1.0 + BUDGET_JITTER * random.random())
            stats = await run_send(runtime, tenant_id, channel_id, me, budget_s=budget)
            if stats.claimed:
                seconds = round(time.monotonic() - began, 2)
                log.info("send: lane done", lane=lane, worker=me, seconds=seconds, **vars(stats))
            if time.monotonic() - began >= budget and not runtime.draining.is_set():
                try:
                    await defer_successor(runtime, tenant_id, channel_id, lane)
                except Exception as exc:  # an optimisation only: the next tick queues it anyway
                    log.debug("send: successor not queued", error=type(exc).__name__)
        finally:
            unbind("tenant", "channel")

    @app.periodic(cron=tick_cron, periodic_id="")
    @app.task(name=TICK_TASK, queue=jobs.ENGINE_QUEUE, pass_context=True)
    async def tick_task(context: JobContext, /, timestamp: int) -> None:
        await tick(runtime_of(context))

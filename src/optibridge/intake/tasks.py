"""The jobs behind notifications: ingest a campaign, resolve a cancellation.

Both are idempotent and resumable, so procrastinate may retry them after an Optimove failure or a
worker crash (the stalled-job reaper re-queues jobs of dead workers) without loss or duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import procrastinate
from procrastinate import JobContext

from optibridge.core.logs import bind, get_logger, unbind
from optibridge.engine.jobs import TransientRetry
from optibridge.intake import accept, ingest, promotions
from optibridge.intake.page_check import PageCheck
from optibridge.optimove import OptimoveClientError
from optibridge.runtime import Runtime, runtime_of
from optibridge.store import campaigns as campaign_store
from optibridge.store import messages as message_store

log = get_logger(__name__)

# Optimove failures the client already retried (with backoff) are retried again here, slower.
JOB_RETRY = TransientRetry(max_attempts=8)


async def run_ingest(runtime: Runtime, tenant_id: str, channel_id: int, campaign_id: int) -> str:
    """Ingest (or resume) one campaign on one channel; returns the campaign's final status."""
    pool = runtime.pool
    async with pool.connection() as conn:
        start = await campaign_store.ingest_start(conn, tenant_id, channel_id, campaign_id)
        if start is None:
            log.warning("ingest: campaign or channel no longer exists")
            return "gone"
        if start.status != "ingesting":
            return start.status
        skip = start.ingest_skip
        plan = await ingest.plan_at_start(conn, start, tenant_id, channel_id, campaign_id)
    client = await runtime.clients.get(tenant_id)
    pages = client.iter_send_details(campaign_id, channel_id, plan.attributes, start_skip=skip)
    # Three stages overlap: the client fetches page k+2 while page k+1 is turned into rows (CPU,
    # here) and page k is written (CPU, in PostgreSQL). At most two built pages wait in between.
    ready: asyncio.Queue[tuple[int, ingest.PageRows] | BaseException | None] = asyncio.Queue(maxsize=2)

    timing = {"fetch": 0.0, "build": 0.0}

    async def produce() -> None:
        try:
            it = aiter(pages)
            while True:
                t0 = time.perf_counter()
                try:
                    page = await anext(it)
                except StopAsyncIteration:
                    break
                t1 = time.perf_counter()
                # In a thread: the writer's turn comes as soon as PostgreSQL answers, instead of
                # after a whole page is built (measured: 36k -> see docs/benchmarks.md).
                built = await asyncio.to_thread(ingest.build_rows, plan, page.rows)
                timing["fetch"] += t1 - t0
                timing["build"] += time.perf_counter() - t1
                await ready.put((page.skip, built))
        except Exception as exc:  # handed to the writer, which raises it in the job
            await ready.put(exc)
            return
        await ready.put(None)

    producer = asyncio.create_task(produce())
    check = PageCheck(top=client.config.page_size)
    total = cleaned = 0
    waited = wrote = 0.0  # where the time goes: waiting for pages vs writing them
    try:
        async with pool.connection() as conn:
            while True:
                t0 = time.perf_counter()
                item = await ready.get()
                t1 = time.perf_counter()
                waited += t1 - t0
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                page_skip, rows = item
                result = await ingest.write_page(conn, plan, page_skip, rows)
                wrote += time.perf_counter() - t1
                if result.canceled:
                    log.info("ingest: campaign canceled; stopped reading")
                    return "canceled"
                total += rows.count
                cleaned += rows.cleaned
                notes = check.observe(rows.count, result.inserted)
                if notes:
                    log.warning("ingest: pages look inconsistent", notes=notes)
                    await campaign_store.add_ingest_notes(conn, tenant_id, channel_id, campaign_id, notes)
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
    async with pool.connection() as conn:
        if cleaned:  # counted, never silent (optibridge.intake.ingest: control characters)
            note = f"control characters stripped from the attributes of {cleaned} customers (sent cleaned)"
            log.warning("ingest: control characters stripped", customers=cleaned)
            await campaign_store.add_ingest_notes(conn, tenant_id, channel_id, campaign_id, [note])
        await campaign_store.mark_ingested(conn, tenant_id, channel_id, campaign_id)
    log.info(
        "ingest: done",
        rows_this_run=total,
        resumed_from=skip,
        waiting_for_pages_s=round(waited, 2),
        writing_s=round(wrote, 2),
        fetching_s=round(timing["fetch"], 2),
        building_s=round(timing["build"], 2),
    )
    return "ingested"


async def mark_failed(
    runtime: Runtime, tenant_id: str, channel_id: int, campaign_id: int, error: str
) -> None:
    async with runtime.pool.connection() as conn:
        await campaign_store.mark_ingest_failed(conn, tenant_id, channel_id, campaign_id, error)


async def run_cancel(runtime: Runtime, tenant_id: str, campaign_id: int) -> str:
    """Event 4: cancel only the customers Optimove lists, or, with no list, the whole campaign.

    GetCanceledCampaignCustomers is not on the list of calls a third-party key may make
    (docs/optimove-api-notes.md): a refusal (4xx) means "no list", so the whole campaign stops.
    """
    client = await runtime.clients.get(tenant_id)
    try:
        canceled = [c.customer_id for c in await client.get_canceled_campaign_customers(campaign_id)]
    except OptimoveClientError as exc:
        log.info("cancel: no customer list from Optimove; canceling the whole campaign", reason=str(exc))
        canceled = []
    async with runtime.pool.connection() as conn, conn.transaction():
        await campaign_store.lock_campaign(conn, tenant_id, campaign_id)
        if canceled:
            await campaign_store.add_cancellations(conn, tenant_id, campaign_id, set(canceled))
            count = await message_store.cancel_listed(conn, tenant_id, campaign_id)
            outcome = f"canceled {count} message(s) of {len(set(canceled))} customer(s)"
        else:
            await campaign_store.mark_pending_cancels_done(conn, tenant_id, campaign_id)
            count = await message_store.cancel_all_pending(conn, tenant_id, campaign_id)
            outcome = f"campaign canceled; {count} pending message(s) canceled"
        await campaign_store.clear_cancel_pending(conn, tenant_id, campaign_id)
    log.info("cancel: done", outcome=outcome)
    return outcome


def register(app: procrastinate.App) -> None:
    promotions.register(app)

    @app.task(name=accept.INGEST_TASK, queue="intake", pass_context=True, retry=JOB_RETRY)
    async def ingest_task(context: JobContext, /, tenant_id: str, channel_id: int, campaign_id: int) -> None:
        runtime = runtime_of(context)
        bind(tenant=tenant_id, channel=channel_id, campaign=campaign_id)
        try:
            await run_ingest(runtime, tenant_id, channel_id, campaign_id)
        except Exception as exc:
            attempts = (context.job.attempts or 0) + 1
            final = not JOB_RETRY.get_retry_decision(exception=exc, job=context.job)
            log.warning("ingest: attempt failed", attempt=attempts, final=final, error=str(exc)[:300])
            if final:
                await mark_failed(runtime, tenant_id, channel_id, campaign_id, str(exc))
            raise
        finally:
            unbind("tenant", "channel", "campaign")

    @app.task(name=accept.CANCEL_TASK, queue="intake", pass_context=True, retry=JOB_RETRY)
    async def cancel_task(context: JobContext, /, tenant_id: str, campaign_id: int, **_: Any) -> None:
        bind(tenant=tenant_id, campaign=campaign_id)
        try:
            await run_cancel(runtime_of(context), tenant_id, campaign_id)
        finally:
            unbind("tenant", "campaign")

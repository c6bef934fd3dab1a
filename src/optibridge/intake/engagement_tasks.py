"""The event-14 ingest job: metadata and Avro customer files from GCS into `messages`.

The rows are built and written by the classic flow's code (`ingest.build_rows` / `write_page`):
the same message ids, send-time policy, contacts, cancel and hold handling. The resume point is
the campaign's `ingest_skip` counted in customers that became rows: the files never change, so a
retried job reads them again from the start and skips that many before writing.

A thread reads GCS and decodes Avro (blocking client) and builds pages; at most two built pages
wait for the writer, so memory is flat in the number of files and rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import procrastinate
from procrastinate import JobContext

from optibridge.core.logs import bind, get_logger, unbind
from optibridge.engine.jobs import TransientRetry
from optibridge.intake import ingest
from optibridge.intake.engagement_accept import ENGAGEMENT_TASK
from optibridge.intake.engagement_files import EngagementFiles, gcs_client
from optibridge.intake.engagement_payload import (
    CATALOG_TEMPLATE_MAX,
    DEFAULT_CUSTOMER_ID_FIELD,
    EngagementMetadata,
    InvalidEngagement,
    RecordReader,
    parse_metadata,
)
from optibridge.optimove import SendDetail
from optibridge.runtime import Runtime, runtime_of
from optibridge.store import campaigns as campaign_store
from optibridge.store import engagements

log = get_logger(__name__)
JOB_RETRY = TransientRetry(max_attempts=8)
PAGE_ROWS = 10_000
_PUT_WAIT_S = 0.5


class GcsReadError(Exception):
    """GCS refused or failed; `retryable` and `status` steer the job's retry (TransientRetry)."""

    def __init__(self, message: str, *, status: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def _gcs_error(exc: Exception) -> Exception:
    """google-api-core / requests errors as a GcsReadError with the retry it deserves."""
    # Here, not at the top: the google client libraries load only when event 14 is used.
    import requests  # google-cloud-storage's transport
    from google.api_core import exceptions as gexc

    if isinstance(exc, InvalidEngagement):
        return exc
    if isinstance(exc, gexc.GoogleAPICallError):
        code = int(exc.code) if exc.code is not None else None
        retry = isinstance(exc, (gexc.ServerError, gexc.TooManyRequests, gexc.RequestRangeNotSatisfiable))
        return GcsReadError(f"GCS: {exc}"[:500], status=code, retryable=retry)
    if isinstance(exc, (OSError, TimeoutError)):
        return exc
    if isinstance(exc, requests.RequestException):
        return GcsReadError(f"GCS unreachable: {exc}"[:500], status=None, retryable=True)
    return exc


@dataclass
class _Pages:
    """The producer thread's side: records -> SendDetails -> built pages, into a bounded queue."""

    files: EngagementFiles
    folder: str
    count: int
    reader: RecordReader
    plan: ingest.IngestPlan
    skip: int
    out: queue.Queue[tuple[int, ingest.PageRows] | BaseException | None]
    stop: threading.Event

    def _put(self, item: tuple[int, ingest.PageRows] | BaseException | None) -> bool:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=_PUT_WAIT_S)
                return True
            except queue.Full:
                continue
        return False

    def _details(self) -> Iterator[SendDetail]:
        for number in range(1, self.count + 1):
            if self.stop.is_set():
                return
            yield from self.reader.details(self.files.records(self.folder, number), f"file {number}")

    def run(self) -> None:
        try:
            position = 0  # rows produced so far (the campaign's ingest_skip unit)
            page: list[SendDetail] = []
            for detail in self._details():
                position += 1
                if position <= self.skip:
                    continue  # written by an earlier run
                page.append(detail)
                if len(page) >= PAGE_ROWS:
                    if not self._put((position - len(page), ingest.build_rows(self.plan, page))):
                        return
                    page = []
            if page and not self._put((position - len(page), ingest.build_rows(self.plan, page))):
                return
            self._put(None)
        except Exception as exc:  # handed to the writer, which raises it in the job
            self._put(_gcs_error(exc))


async def _fail(
    runtime: Runtime, tenant_id: str, channel_id: int, engagement_id: int, campaign_id: int, why: str
) -> str:
    async with runtime.pool.connection() as conn:
        await engagements.set_status(conn, tenant_id, channel_id, engagement_id, "failed", why)
        await campaign_store.mark_ingest_failed(conn, tenant_id, channel_id, campaign_id, why)
    log.warning("engagement: failed", reason=why)
    return "failed"


async def run_engagement(runtime: Runtime, tenant_id: str, channel_id: int, engagement_id: int) -> str:
    """Ingest (or resume) one engagement; returns its final status."""
    pool = runtime.pool
    async with pool.connection() as conn:
        e = await engagements.get(conn, tenant_id, channel_id, engagement_id)
        if e is None:
            return "gone"
        if e.status in ("ingested", "failed", "duplicate"):
            return e.status
        start = await campaign_store.ingest_start(conn, tenant_id, channel_id, e.campaign_id)
    if start is None:
        log.warning("engagement: campaign or channel no longer exists")
        return "gone"
    campaign_id = e.campaign_id
    if start.status != "ingesting":
        async with pool.connection() as conn:
            await engagements.set_status(conn, tenant_id, channel_id, engagement_id, start.status)
        return start.status
    key = runtime.box.decrypt(e.decryption_key) if e.decryption_key else None
    files = EngagementFiles(gcs_client(runtime.settings.gcs_api_endpoint), e.bucket_name, key)
    try:
        meta: EngagementMetadata = parse_metadata(await asyncio.to_thread(files.metadata, e.metadata_path))
    except InvalidEngagement as exc:
        return await _fail(runtime, tenant_id, channel_id, engagement_id, campaign_id, str(exc))
    except Exception as exc:
        raise _gcs_error(exc) from exc
    async with pool.connection() as conn:
        await engagements.store_metadata(
            conn,
            tenant_id,
            channel_id,
            engagement_id,
            template_id=meta.template_id,
            template_name=meta.template_name,
            scheduled_time=meta.scheduled_time,
            duration_days=meta.duration_days,
            promotions=meta.promotions,
            tags=meta.tags,
            number_of_files=meta.number_of_files,
            number_of_customers=meta.number_of_customers,
            metadata=meta.raw,
        )
        if meta.template_id > CATALOG_TEMPLATE_MAX:
            why = (
                f"TemplateID {meta.template_id} names none of our templates (catalog template ids "
                f"are at most {CATALOG_TEMPLATE_MAX}); kept exact on the engagement, nothing sent"
            )
            return await _fail(runtime, tenant_id, channel_id, engagement_id, campaign_id, why)
        skip = start.ingest_skip
        plan = await ingest.plan_at_start(conn, start, tenant_id, channel_id, campaign_id)
    id_field = str(start.channel_options.get("engagement_customer_id_field") or DEFAULT_CUSTOMER_ID_FIELD)
    reader = RecordReader(plan.attributes, meta.template_id, meta.scheduled_time, id_field)
    out: queue.Queue[tuple[int, ingest.PageRows] | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()
    pages = _Pages(files, e.customers_folder, meta.number_of_files, reader, plan, skip, out, stop)
    producer = threading.Thread(target=pages.run, name=f"engagement-{engagement_id}", daemon=True)
    producer.start()

    def take() -> tuple[int, ingest.PageRows] | BaseException | None:
        # Bounded waits: a job canceled meanwhile must not leave this thread blocked forever.
        while True:
            try:
                return out.get(timeout=_PUT_WAIT_S)
            except queue.Empty:
                if stop.is_set():
                    return None

    total = cleaned = 0
    waited = wrote = 0.0  # where the time goes: waiting for pages (GCS, Avro, rows) vs writing them
    try:
        async with pool.connection() as conn:
            while True:
                t0 = time.perf_counter()
                item = await asyncio.to_thread(take)
                t1 = time.perf_counter()
                waited += t1 - t0
                if item is None:
                    break
                if isinstance(item, InvalidEngagement):
                    return await _fail(runtime, tenant_id, channel_id, engagement_id, campaign_id, str(item))
                if isinstance(item, BaseException):
                    raise item
                page_skip, rows = item
                result = await ingest.write_page(conn, plan, page_skip, rows)
                wrote += time.perf_counter() - t1
                if result.canceled:
                    log.info("engagement: campaign canceled; stopped reading")
                    async with pool.connection() as c2:
                        await engagements.set_status(c2, tenant_id, channel_id, engagement_id, "ingested")
                    return "canceled"
                total += rows.count
                cleaned += rows.cleaned
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                out.get_nowait()
        await asyncio.to_thread(producer.join, 30)
    notes = reader.notes(meta.number_of_customers)
    if cleaned:
        notes.append(f"control characters stripped from the attributes of {cleaned} customers (sent cleaned)")
    async with pool.connection() as conn:
        if notes:
            log.warning("engagement: ingest notes", notes=notes)
            await campaign_store.add_ingest_notes(conn, tenant_id, channel_id, campaign_id, notes)
        await campaign_store.mark_ingested(conn, tenant_id, channel_id, campaign_id)
        await engagements.set_status(conn, tenant_id, channel_id, engagement_id, "ingested")
    log.info(
        "engagement: done",
        rows_this_run=total,
        resumed_from=skip,
        records=reader.read,
        waiting_for_pages_s=round(waited, 2),
        writing_s=round(wrote, 2),
    )
    return "ingested"


def register(app: procrastinate.App) -> None:
    @app.task(name=ENGAGEMENT_TASK, queue="intake", pass_context=True, retry=JOB_RETRY)
    async def engagement_task(
        context: JobContext, /, tenant_id: str, channel_id: int, engagement_id: int, **_: Any
    ) -> None:
        runtime = runtime_of(context)
        bind(tenant=tenant_id, channel=channel_id, engagement=engagement_id)
        try:
            await run_engagement(runtime, tenant_id, channel_id, engagement_id)
        except Exception as exc:
            attempts = (context.job.attempts or 0) + 1
            final = not JOB_RETRY.get_retry_decision(exception=exc, job=context.job)
            log.warning("engagement: attempt failed", attempt=attempts, final=final, error=str(exc)[:300])
            if final:
                async with runtime.pool.connection() as conn:
                    e = await engagements.get(conn, tenant_id, channel_id, engagement_id)
                    if e is not None:
                        await engagements.set_status(
                            conn, tenant_id, channel_id, engagement_id, "failed", str(exc)
                        )
                        await campaign_store.mark_ingest_failed(
                            conn, tenant_id, channel_id, e.campaign_id, str(exc)
                        )
            raise
        finally:
            unbind("tenant", "channel", "engagement")

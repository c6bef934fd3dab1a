"""Promotions for event-5 campaigns (§10): pull whom the campaign targets, have the tenant's
promotion system activate them (or accept all), report each customer's Status to Optimove before
ClearanceRequiredBy. docs/flows/promotions.md.

One job per campaign (`optibridge.intake.promotions`, queued by the listener with the hold). A
batch is one GetProcessedCampaignCustomers page (≤ 10,000 customers): activated, reported, then
recorded (`promotion_runs.next_skip`), so a crash or restart resumes at the first unfinished batch.
A promotion-system failure is retried with backoff until the cutoff (ClearanceRequiredBy minus the
tenant's margin): short waits inside the job, longer ones (or a stopping worker) by queueing the job
again for later, so an outage never holds a worker's job slot for long. Optimove failures the client
already retried fail the job, which procrastinate retries (TransientRetry) from the recorded batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp
import procrastinate
from procrastinate import JobContext

from optibridge.core.logs import bind, get_logger, unbind
from optibridge.core.outbound import DestinationRefusedError, OutboundPolicy
from optibridge.engine import jobs
from optibridge.engine.jobs import TransientRetry
from optibridge.intake import promotions_plan as plan
from optibridge.optimove.promotions import (
    ProcessedCustomer,
    iter_processed_customers,
    update_customer_promotion_status,
)
from optibridge.runtime import Runtime, runtime_of
from optibridge.store import promotions as store

log = get_logger(__name__)

PROMOTIONS_TASK: Final = "optibridge.intake.promotions"
JOB_RETRY = TransientRetry(max_attempts=8)
WEBHOOK_TIMEOUT_S: Final = 60.0
MAX_ANSWER_BYTES: Final = 8 * 1024 * 1024  # 10,000 results of ~60 bytes need well under 1 MiB
RETRY_BASE_S: Final = 1.0
RETRY_CAP_S: Final = 60.0
IN_JOB_WAIT_S: Final = 10.0


def job_lock(tenant_id: str, campaign_id: int) -> str:
    return f"promotions:{tenant_id}:{campaign_id}"


class PromotionSystemError(Exception):
    """The promotion system did not answer a batch usefully; `retry` says whether to ask again."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class WebhookActivator:
    """POSTs batches to the tenant's promotion system (webhook_body / statuses_from_answer).

    The URL is checked against the outbound policy before every call (literal IPs) and resolved
    through its guard (names), redirects are not followed, and the answer is read up to a bound.
    The bearer token is sent in a header and never logged.
    """

    def __init__(
        self, url: str, token: str | None, policy: OutboundPolicy, *, timeout_s: float = WEBHOOK_TIMEOUT_S
    ) -> None:
        self.url = url
        self._policy = policy
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebhookActivator:
        connector = aiohttp.TCPConnector(resolver=self._policy.resolver(), limit=2)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def activate(
        self, tenant_id: str, campaign_id: int, clearance_by: datetime, batch: Sequence[ProcessedCustomer]
    ) -> plan.Statuses:
        assert self._session is not None, "use as an async context manager"
        refused = self._policy.check_url(self.url)
        if refused is not None:
            raise PromotionSystemError(
                f"promotion webhook refused by the outbound policy: {refused}", retry=False
            )
        body = json.dumps(plan.webhook_body(tenant_id, campaign_id, clearance_by, batch)).encode()
        try:
            async with self._session.post(
                self.url, data=body, headers=self._headers, allow_redirects=False
            ) as response:
                kind = plan.classify_http(response.status)
                if kind != "ok":
                    raise PromotionSystemError(
                        f"promotion system answered HTTP {response.status}", retry=kind == "retry"
                    )
                raw = await _read_bounded(response)
        except DestinationRefusedError as exc:
            raise PromotionSystemError(str(exc), retry=False) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # aiohttp wraps the guarded resolver's refusal in a connector error.
            if isinstance(getattr(exc, "os_error", None), DestinationRefusedError) or isinstance(
                exc.__cause__, DestinationRefusedError
            ):
                raise PromotionSystemError(
                    "promotion webhook destination refused by the outbound policy", retry=False
                ) from None
            raise PromotionSystemError(
                f"promotion system unreachable: {type(exc).__name__}", retry=True
            ) from None
        try:
            return plan.statuses_from_answer(batch, json.loads(raw))
        except (ValueError, plan.PromotionAnswerError) as exc:
            raise PromotionSystemError(f"promotion system answer unreadable: {exc}", retry=True) from None


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """The whole answer, at most MAX_ANSWER_BYTES (more is an error, not a truncated read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise PromotionSystemError("promotion system answer too large", retry=True)
        chunks.append(chunk)
    return b"".join(chunks)


class AcceptAll:
    async def __aenter__(self) -> AcceptAll:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def activate(
        self, tenant_id: str, campaign_id: int, clearance_by: datetime, batch: Sequence[ProcessedCustomer]
    ) -> plan.Statuses:
        return plan.accept_all(batch)


@dataclass
class RunOptions:
    """Knobs for tests; the service uses the defaults."""

    retry_base_s: float = RETRY_BASE_S
    retry_cap_s: float = RETRY_CAP_S
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Optimove's per-call limit for PromosUpdated (emulator: max_promotion_statuses).
    report_per_call: int = 10_000
    # Waits longer than this (in total, per job) re-queue the job for later instead of holding one
    # of the worker's job slots through a promotion-system outage.
    in_job_wait_s: float = IN_JOB_WAIT_S


@dataclass(frozen=True)
class Requeue:
    """Ask the promotion system again in `delay_s`, from a new job."""

    delay_s: float


async def _activate_until_cutoff(
    runtime: Runtime,
    activator: WebhookActivator | AcceptAll,
    run: store.PromotionRun,
    settings: store.PromotionSettings,
    batch: list[ProcessedCustomer],
    options: RunOptions,
) -> plan.Statuses | Requeue | None:
    """The batch's statuses, asking again after failures; None if the cutoff came first; Requeue
    when the next attempt is further off than this job may wait (or the worker is stopping)."""
    failures = run.promo_failures  # the backoff goes on growing across re-queued jobs
    waited = 0.0
    while True:  # bounded by the cutoff: retry_delay returns None once it has passed
        try:
            return await activator.activate(run.tenant_id, run.campaign_id, run.clearance_by, batch)
        except PromotionSystemError as exc:
            async with runtime.pool.connection() as conn:
                await store.note_failure(conn, run.tenant_id, run.campaign_id, str(exc))
            if not exc.retry:
                log.warning("promotions: batch refused; its customers get Status false", error=str(exc))
                return plan.refuse_all(batch)
            failures += 1
            delay = plan.retry_delay(
                failures,
                options.now(),
                run.clearance_by,
                settings.deadline_margin_s,
                base_s=options.retry_base_s,
                cap_s=options.retry_cap_s,
            )
            log.info("promotions: promotion system failed", error=str(exc), failures=failures, retry_in=delay)
            if delay is None:
                return None
            if waited + delay > options.in_job_wait_s or runtime.draining.is_set():
                return Requeue(delay)
            waited += delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.draining.wait(), timeout=delay)
            if runtime.draining.is_set():
                return Requeue(0.0)


async def _requeue(runtime: Runtime, tenant_id: str, campaign_id: int, delay_s: float) -> None:
    lock = job_lock(tenant_id, campaign_id)
    at = datetime.now(UTC) + timedelta(seconds=delay_s)
    async with runtime.pool.connection() as conn:
        with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
            await jobs.defer(
                conn, runtime.job_app, PROMOTIONS_TASK, schedule_at=at, lock=lock, queueing_lock=lock,
                tenant_id=tenant_id, campaign_id=campaign_id,
            )  # fmt: skip


async def run_promotions(
    runtime: Runtime, tenant_id: str, campaign_id: int, options: RunOptions | None = None
) -> str:
    """Activate and report one campaign's promotions (or resume); returns the run's final status, or
    "waiting" when a later job (already queued) goes on after a promotion-system outage."""
    options = options or RunOptions()
    async with runtime.pool.connection() as conn:
        run = await store.get_run(conn, tenant_id, campaign_id)
        settings = await store.get_settings(conn, tenant_id)
        token = await store.bearer_token(conn, runtime.box, tenant_id) if settings.webhook_url else None
    if run is None:
        return "gone"
    if run.status != "running":
        return run.status
    if not settings.enabled:
        async with runtime.pool.connection() as conn:
            await store.finish(conn, tenant_id, campaign_id, "failed", error="promotions disabled meanwhile")
        return "failed"
    client = await runtime.clients.get(tenant_id)
    activator: WebhookActivator | AcceptAll = (
        WebhookActivator(settings.webhook_url, token, runtime.settings.outbound_policy)
        if settings.webhook_url
        else AcceptAll()
    )
    past_deadline = plan.past_cutoff(options.now(), run.clearance_by, settings.deadline_margin_s)
    pages = iter_processed_customers(
        client, campaign_id, page_size=settings.batch_size, start_skip=run.next_skip
    )
    async with activator:
        async for page in pages:
            batch = plan.unique_customers(page.customers)
            statuses: plan.Statuses | None = None
            if not past_deadline:
                answer = await _activate_until_cutoff(runtime, activator, run, settings, batch, options)
                if isinstance(answer, Requeue):
                    await _requeue(runtime, tenant_id, campaign_id, answer.delay_s)
                    log.info("promotions: promotion system down; asking again later", in_s=answer.delay_s)
                    return "waiting"
                statuses = answer
                past_deadline = statuses is None
            late = 0
            if statuses is None:
                if settings.on_deadline == "leave":
                    log.warning("promotions: cutoff reached; the rest is left unreported", skip=page.skip)
                    async with runtime.pool.connection() as conn:
                        await store.finish(
                            conn, tenant_id, campaign_id, "deadline",
                            error=f"cutoff reached; customers from offset {page.skip} left unreported",
                        )  # fmt: skip
                    return "deadline"
                statuses = plan.deadline_statuses(batch, settings.on_deadline) or []
                late = len(statuses)
            await update_customer_promotion_status(
                client, campaign_id, statuses, timestamp=options.now(), per_call=options.report_per_call
            )
            activated, refused = plan.count(statuses)
            async with runtime.pool.connection() as conn:
                await store.batch_done(
                    conn,
                    tenant_id,
                    campaign_id,
                    from_skip=page.skip,
                    count=len(page),
                    activated=activated,
                    refused=refused - late,
                    past_deadline=late,
                    bad_rows=page.bad_rows,
                )
            if page.bad_rows:
                log.warning("promotions: rows without a CustomerID skipped", rows=page.bad_rows)
            log.info("promotions: batch reported", skip=page.skip, activated=activated, refused=refused)
    final: store.RunStatus = "deadline" if past_deadline else "done"
    async with runtime.pool.connection() as conn:
        await store.finish(conn, tenant_id, campaign_id, final)
    return final


def register(app: procrastinate.App) -> None:
    @app.task(name=PROMOTIONS_TASK, queue="intake", pass_context=True, retry=JOB_RETRY)
    async def promotions_task(context: JobContext, /, tenant_id: str, campaign_id: int, **_: Any) -> None:
        runtime = runtime_of(context)
        bind(tenant=tenant_id, campaign=campaign_id)
        try:
            outcome = await run_promotions(runtime, tenant_id, campaign_id)
            log.info("promotions: run ended", outcome=outcome)
        except Exception as exc:
            final = not JOB_RETRY.get_retry_decision(exception=exc, job=context.job)
            log.warning("promotions: attempt failed", final=final, error=str(exc)[:300])
            if final:
                async with runtime.pool.connection() as conn:
                    await store.finish(conn, tenant_id, campaign_id, "failed", error=str(exc))
            raise
        finally:
            unbind("tenant", "campaign")

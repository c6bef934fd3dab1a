"""Delivery reports of the SMS aggregator flow: what we tell Optimove about each recipient of an
aggregator batch, once its outcome is known (reference §12; body fields UNCONFIRMED, chosen in
docs/flows/sms-aggregator.md).

When: a message failed at intake, failed at send, expired, was suppressed or canceled: at once,
"Failed". A message the provider accepted: when its provider receipt arrives (delivered: "Delivered";
bounced/failed: "Failed"), or `receipt_wait_s` (per channel; 0 by default) after it was sent without
one: "Delivered" with subStatus "AcceptedByProvider".

Exactly once, as far as a network allows: every report row is leased before it is sent (a crashed
reporter's rows come back when the lease ends) and marked reported in the same pass; a transient
failure (timeout, 408/429/5xx) is retried with backoff, a refusal (other 4xx) slowly, and after
`MAX_ATTEMPTS` the row is given up (recorded, never silent). Optimove may see a report twice only if
we crash between its 2xx and our commit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from optibridge.core.logs import get_logger
from optibridge.optimove.aggregator import AggregatorClient, AggregatorEndpoint, AggregatorError
from optibridge.runtime import Runtime
from optibridge.store import aggregator as store

log = get_logger(__name__)

DELIVERED = "Delivered"
FAILED = "Failed"
ABANDONED = "abandoned"
LEASE = timedelta(minutes=2)
MAX_ATTEMPTS = 12
SLICE = 200
CONCURRENCY = 16


@dataclass(frozen=True)
class Verdict:
    status: str
    sub_status: str


_FAILED_STATES = {
    "failed": "SendFailed",
    "expired": "Expired",
    "suppressed": "Suppressed",
    "canceled": "Canceled",
}


def verdict(c: store.ReportCandidate, now: datetime, receipt_wait_s: int) -> Verdict | datetime:
    """The report a message's outcome calls for, or the time to look again (sent, no receipt yet)."""
    if c.state in _FAILED_STATES:
        return Verdict(FAILED, (c.reason or _FAILED_STATES[c.state])[:200])
    if c.receipt == "delivered":
        return Verdict(DELIVERED, "DeliveredToHandset")
    if c.receipt in ("bounced", "failed"):
        return Verdict(
            FAILED, (c.receipt_reason or ("InvalidNumber" if c.receipt == "bounced" else "Undelivered"))[:200]
        )
    ready_at = (c.sent_at or now) + timedelta(seconds=receipt_wait_s)
    if now >= ready_at:
        return Verdict(DELIVERED, "AcceptedByProvider")
    return ready_at


def report_body(c: store.ReportCandidate, v: Verdict, now: datetime) -> dict[str, Any]:
    """The delivery report: the batch's metadata echoed at the top level (reference §12), the status
    under `type`, and the recipient."""
    body: dict[str, Any] = {k: val for k, val in c.metadata.items() if k != "type"}
    body.update(
        type={"status": v.status, "subStatus": v.sub_status},
        batchId=c.batch_id,
        requestId=c.request_id,
        customerId=c.customer_id,
        mobileNumber=c.mobile_number,
        messageId=str(c.message_id),
        timestamp=int(now.timestamp() * 1000),
    )
    if c.sender_id:
        body["senderId"] = c.sender_id
    return body


def backoff(attempts: int, *, transient: bool) -> timedelta:
    """After the n-th failed try: 15 s doubling to an hour (a refusal: an hour at once)."""
    if not transient:
        return timedelta(hours=1)
    return timedelta(seconds=min(15 * 2 ** max(attempts - 1, 0), 3600))


@dataclass
class ReportRun:
    reported: int = 0
    waiting: int = 0
    failed: int = 0
    abandoned: int = 0
    errors: list[str] = field(default_factory=list)


async def _send_slice(
    runtime: Runtime, client: AggregatorClient, rows: list[store.ReportCandidate], run: ReportRun
) -> None:
    now = datetime.now(UTC)
    async with runtime.pool.connection() as conn:
        channels = await store.channels_for(conn, runtime.box, {(r.tenant_id, r.channel_id) for r in rows})
    gate = asyncio.Semaphore(CONCURRENCY)
    updates: list[tuple[store.ReportCandidate, Verdict | datetime, AggregatorError | None]] = []

    async def one(row: store.ReportCandidate) -> None:
        channel = channels.get((row.tenant_id, row.channel_id))
        if channel is None:  # aggregator mode switched off: nothing to report to
            updates.append((row, Verdict(ABANDONED, "channel not in aggregator mode"), None))
            return
        v = verdict(row, now, channel.receipt_wait_s)
        if isinstance(v, datetime):
            updates.append((row, v, None))
            return
        endpoint = AggregatorEndpoint(channel.base_url, channel.app_api_key, channel.shared_secret)
        async with gate:
            try:
                await client.delivery_report(endpoint, report_body(row, v, now))
            except AggregatorError as exc:
                updates.append((row, v, exc))
                return
        updates.append((row, v, None))

    await asyncio.gather(*(one(r) for r in rows))
    async with runtime.pool.connection() as conn, conn.transaction():
        for row, v, error in updates:
            if isinstance(v, datetime):
                run.waiting += 1
                await store.postpone(conn, row.message_id, v, None, attempt=False)
            elif error is None:
                run.reported += v.status != ABANDONED
                run.abandoned += v.status == ABANDONED
                await store.mark_reported(conn, row.message_id, v.status, now)
            elif row.attempts + 1 >= MAX_ATTEMPTS:
                run.abandoned += 1
                await store.mark_reported(conn, row.message_id, f"{ABANDONED}: {str(error)[:200]}", now)
            else:
                run.failed += 1
                if len(run.errors) < 5:
                    run.errors.append(str(error)[:200])
                retry_at = now + backoff(row.attempts + 1, transient=error.transient)
                await store.postpone(conn, row.message_id, retry_at, str(error)[:500], attempt=True)


async def run_reports(
    runtime: Runtime, *, client: AggregatorClient | None = None, budget_s: float = 20.0
) -> ReportRun:
    """Send every due delivery report, slice by slice, until none is left or the budget is spent."""
    run = ReportRun()
    own = client is None
    client = client or AggregatorClient(runtime.settings.outbound_policy)
    began = time.monotonic()
    try:
        while time.monotonic() - began < budget_s and not runtime.draining.is_set():
            async with runtime.pool.connection() as conn:
                rows = await store.lease_due_reports(conn, datetime.now(UTC), LEASE, SLICE)
            if not rows:
                break
            await _send_slice(runtime, client, rows, run)
    finally:
        if own:
            await client.aclose()
    if run.reported or run.failed or run.abandoned:
        log.info(
            "aggregator delivery reports",
            reported=run.reported,
            failed=run.failed,
            abandoned=run.abandoned,
            waiting=run.waiting,
            errors=run.errors,
        )
    return run

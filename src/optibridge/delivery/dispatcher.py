"""Flow 5: send every due message of a channel, at its time, exactly once.

A send job owns one (tenant, channel) lane for a time budget. It claims a slice of due messages
(`FOR UPDATE SKIP LOCKED`, so any number of workers on any number of machines share the work),
triages them (`triage`: suppressed, expired, no template), composes the rest (`compose`), sends
them in chunks through the channel's healthiest provider, and writes each chunk's outcome before
sending the next. The provider is called only for claimed rows. Stale claims of crashed workers
are settled first (`reconcile`).

This module is the orchestration: claim -> triage -> compose -> send -> record. The decisions are
in `triage` and `transitions`, the SQL in `optibridge.store.messages`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from optibridge.channels import base
from optibridge.core import telemetry as metrics
from optibridge.core.logs import get_logger
from optibridge.core.states import MessageState
from optibridge.delivery import triage as tri
from optibridge.delivery.compose import Composer, Templates
from optibridge.delivery.lookup import settle_uncertain
from optibridge.delivery.registry import Channel, ChannelRegistry
from optibridge.delivery.transitions import Transition, after_send
from optibridge.feedback import suppression
from optibridge.feedback.keys import TrackingKeys
from optibridge.feedback.send_results import record_send_results
from optibridge.rendering import RenderError
from optibridge.runtime import Runtime
from optibridge.store import messages as message_store
from optibridge.store.messages import ClaimedMessage, ClaimOutcome, Conn

log = get_logger(__name__)
Clock = Callable[[], datetime]

SLICE = 500
LEASE = timedelta(minutes=10)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SliceStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    suppressed: int = 0
    expired: int = 0

    def add(self, state: MessageState) -> None:
        if state == MessageState.SENT:
            self.sent += 1
        elif state == MessageState.PENDING:
            self.retried += 1
        elif state == MessageState.FAILED:
            self.failed += 1
        elif state == MessageState.SUPPRESSED:
            self.suppressed += 1
        elif state == MessageState.EXPIRED:
            self.expired += 1

    def merge(self, other: SliceStats) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.suppressed += other.suppressed
        self.expired += other.expired


@dataclass
class Dispatcher:
    """One per process: channels, compiled templates and tracking keys, shared by its send jobs."""

    registry: ChannelRegistry
    composer: Composer
    templates: Templates = field(default_factory=Templates)

    async def channel(self, tenant_id: str, channel_id: int) -> Channel:
        return await self.registry.channel(tenant_id, channel_id)

    async def close(self) -> None:
        await self.registry.close()


def dispatcher_of(runtime: Runtime) -> Dispatcher:
    """The process's dispatcher, built on first use and kept in `runtime.extras`."""
    found = runtime.extras.get("dispatcher")
    if isinstance(found, Dispatcher):
        return found
    public_url = runtime.settings.public_url
    dispatcher = Dispatcher(
        registry=ChannelRegistry(pool=runtime.pool, box=runtime.box, public_url=public_url),
        composer=Composer(public_url=public_url, keys=TrackingKeys.from_settings(runtime.settings)),
    )
    runtime.extras["dispatcher"] = dispatcher
    return dispatcher


async def claim(conn: Conn, ch: Channel, me: str, now: datetime, limit: int = SLICE) -> list[ClaimedMessage]:
    return await message_store.claim_due(conn, ch.tenant_id, ch.channel_id, me, now, limit=limit, lease=LEASE)


@dataclass
class Outcomes:
    """The outcomes of one write: message states, and the provider answers feedback records."""

    items: list[ClaimOutcome] = field(default_factory=list)
    results: list[tuple[uuid.UUID, base.SendResult]] = field(default_factory=list)

    def put(self, message_id: uuid.UUID, t: Transition, provider: str | None = None) -> None:
        self.items.append(
            ClaimOutcome(
                message_id=message_id,
                state=t.state,
                reason=t.reason[:1000] if t.reason else None,
                send_at=t.send_at,
                attempts_delta=t.attempts_delta,
                provider=provider,
                provider_message_id=t.provider_message_id,
            )
        )

    def put_all(self, decisions: Iterable[tri.Decision]) -> None:
        for d in decisions:
            self.put(d.message.id, d.transition)

    @property
    def states(self) -> list[MessageState]:
        return [o.state for o in self.items]

    def __len__(self) -> int:
        return len(self.items)


async def write(conn: Conn, out: Outcomes, me: str, now: datetime) -> int:
    """Record outcomes of claims this worker holds, with the provider answers, in one transaction."""
    if not out:
        return 0
    async with conn.transaction():
        written = await message_store.release_claims(conn, out.items, me, now)
        if out.results:
            await record_send_results(conn, out.results, now=now)
    return written


async def send_slice(
    d: Dispatcher, conn: Conn, ch: Channel, rows: list[ClaimedMessage], me: str, clock: Clock | None = None
) -> SliceStats:
    now_fn = clock or utc_now
    stats = SliceStats(claimed=len(rows))
    now = now_fn()

    blocked = await suppression.suppressed(
        conn, ch.tenant_id, ch.name,
        addresses=[r.address for r in rows if r.address],
        customer_ids=[r.customer_id for r in rows],
    )  # fmt: skip
    templates = await d.templates.for_channel(conn, ch, {r.template_id for r in rows})
    decided = tri.triage(rows, now=now, policy=ch.retry, suppressed=blocked, templates=templates)
    first = Outcomes()
    first.put_all(decided.settle)
    ready: list[tuple[ClaimedMessage, base.OutboundMessage]] = []
    for item in decided.send:
        row = item.message
        try:
            app_id = d.templates.app_id(ch, row.template_id)
            ready.append((row, d.composer.compose(ch, row, item.template, now, app_id)))
        except RenderError as exc:
            first.put_all([tri.render_failed(row, exc)])
    for state in first.states:
        stats.add(state)
    await write(conn, first, me, now)

    for start in range(0, len(ready), ch.chunk):
        chunk = ready[start : start + ch.chunk]
        # A pause or cancel takes effect before the next chunk, not only at the next claim.
        held = await message_store.held_campaigns(
            conn, ch.tenant_id, ch.channel_id, {row.campaign_id for row, _ in chunk}
        )
        if held:
            out = Outcomes()
            settled, _ = tri.hold_back([row for row, _ in chunk], held)
            out.put_all(settled)
            await write(conn, out, me, now_fn())
            chunk = [(row, m) for row, m in chunk if row.campaign_id not in held]
            if not chunk:
                continue
        picked = ch.providers.pick()
        out = Outcomes()
        if picked is None:
            # Every provider is benched: give the messages back, unharmed, for when one returns.
            wait = timedelta(seconds=max(1.0, ch.providers.seconds_until_usable()))
            out.put_all(tri.give_back([row for row, _ in ready[start:]], now_fn() + wait))
            stats.retried += len(out)
            await write(conn, out, me, now_fn())
            break
        index, provider = picked
        if ch.bucket is not None:
            await ch.bucket.take(len(chunk))
        started = time.monotonic()
        results = await provider.send_many([m for _, m in chunk])
        elapsed = time.monotonic() - started
        if ch.lookup_url and any(r.uncertain for r in results):
            results = await settle_uncertain(ch.lookup_url, [row for row, _ in chunk], results)
        now = now_fn()
        sent = 0
        for (row, _), result in zip(chunk, results, strict=True):
            t = after_send(result, attempts=row.attempts, send_at=row.send_at, now=now, policy=ch.retry)
            out.put(row.id, t, provider.name)
            if result.bounce or result.unregistered:
                out.results.append((row.id, result))
            if result.outcome is base.Outcome.SENT:
                sent += 1
                metrics.observe_send_delay(ch.kind, row.send_at, now)
            else:
                metrics.count_provider_error(provider.name, result.outcome.value)
            stats.add(t.state)
        metrics.count_sent(provider.name, sent)
        await write(conn, out, me, now)
        if ch.providers.report(index, results):
            log.warning(
                "provider benched: throttled or failing",
                provider=provider.name,
                tenant=ch.tenant_id,
                reasons=sorted({r.reason or "" for r in results if r.outcome is not base.Outcome.SENT})[:3],
                seconds=round(elapsed, 2),
            )
    return stats

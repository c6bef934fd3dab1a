"""Flow 5: send every due message of a channel, at its time, exactly once.

A send job owns one (tenant, channel) lane for a time budget. It claims a slice of due messages
(`FOR UPDATE SKIP LOCKED`, so any number of workers on any number of machines share the work),
triages them (`triage`: suppressed, expired, no template), composes the rest (`compose`), sends
them in chunks through the channel's healthiest provider, and writes each chunk's outcome before
sending the next. The provider is called only for claimed rows. Stale claims of crashed workers
are settled first (`reconcile`).

A slice is small (`chunk` x `claim_chunks`): several workers share a campaign, and a crash parks at
most one slice per job. Between chunks a slice stops when its job is out of time or the process is
draining: the chunk in flight is finished and written, the unstarted claims go back to `pending`.
A result the provider gave is never dropped: if the database is away when it is written, the
`ResultWriter` keeps it (journal, retries) until it is written (`results`).

This module is the orchestration: claim -> triage -> compose -> send -> record. The decisions are
in `triage` and `transitions`, the SQL in `optibridge.store.messages`.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from optibridge.channels import base
from optibridge.core import telemetry as metrics
from optibridge.core.logs import get_logger
from optibridge.core.states import MessageState
from optibridge.delivery import triage as tri
from optibridge.delivery.compose import Composer, Templates, compose_slice
from optibridge.delivery.fence import FENCED, PROBE_TIMEOUT_S, FenceClosed, Lease, fenced
from optibridge.delivery.lookup import settle_uncertain
from optibridge.delivery.registry import Channel, ChannelRegistry
from optibridge.delivery.results import (
    DATABASE_AWAY,
    SLICE_ENDERS,
    DatabaseAway,
    Journal,
    LostClaim,
    ResultWriter,
)
from optibridge.delivery.transitions import Transition, after_send
from optibridge.feedback import suppression
from optibridge.feedback.keys import TrackingKeys
from optibridge.feedback.send_results import record_send_results
from optibridge.runtime import Runtime
from optibridge.store import messages as message_store
from optibridge.store import workers as worker_store
from optibridge.store.messages import ClaimedMessage, ClaimOutcome, Conn

log = get_logger(__name__)
Clock = Callable[[], datetime]

LEASE = timedelta(minutes=10)
# At exit (Dispatcher.shut_down), after the jobs ended: together inside the 5 s the supervisor
# allows beyond shutdown_timeout_s (service.STOP_MARGIN_S). Both take milliseconds when healthy.
SHUTDOWN_FLUSH_S = 2.0
SHUTDOWN_CLOSE_S = 2.0
SHUT_DOWN_FAILURES: tuple[type[BaseException], ...] = (*DATABASE_AWAY, TimeoutError)


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
    returned: int = 0  # given back to `pending` unsent (out of time, draining, database away)

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
        self.returned += other.returned


@dataclass
class Dispatcher:
    """One per process: channels, compiled templates and tracking keys, shared by its send jobs."""

    registry: ChannelRegistry
    composer: Composer
    writer: ResultWriter
    templates: Templates = field(default_factory=Templates)
    leases: dict[str, Lease] = field(default_factory=dict)
    last_until: datetime = field(default_factory=lambda: datetime.min.replace(tzinfo=UTC))

    def claim_until(self, now: datetime) -> datetime:
        """The lease end of a new claim, unique in this process (one worker id per process): it
        names the claim's rows should its answer be lost (`claim`)."""
        until = max(now + LEASE, self.last_until + timedelta(microseconds=1))
        self.last_until = until
        return until

    async def channel(self, tenant_id: str, channel_id: int) -> Channel:
        return await self.registry.channel(tenant_id, channel_id)

    def lease(self, worker_id: str) -> Lease:
        """The send fence of a worker id (fence.py), its watcher running while jobs ask about it."""
        found = self.leases.get(worker_id)
        if found is None:
            pool = self.writer.pool

            async def age_of(worker: str) -> float | None:
                async with pool.connection(timeout=PROBE_TIMEOUT_S) as conn:
                    return await worker_store.heartbeat_age_s(conn, worker)

            found = self.leases[worker_id] = Lease(worker_id, age_of)
        found.start()
        return found

    async def close(self) -> None:
        for lease in self.leases.values():
            await lease.stop()
        await self.registry.close()
        self.writer.close()

    async def shut_down(self) -> None:
        """At process exit: write what an outage left while the database may still answer (lost
        claims given back, this process's backlog), then close the providers (SMTP QUIT, HTTP
        connections) and the journal, each within a bounded time. Whatever is not written stays in
        the journal for the next process; lost claims not given back are a dead worker's
        (reconcile.py) once this process's heartbeat stops."""
        try:
            async with asyncio.timeout(SHUTDOWN_FLUSH_S):
                await self.writer.flush_own()
        except SHUT_DOWN_FAILURES as exc:
            log.warning(
                "send results not written at exit: kept in the journal",
                backlog=sum(len(b.outcomes) for b in self.writer.backlog),
                lost_claims=len(self.writer.lost),
                error=type(exc).__name__,
            )
        try:
            async with asyncio.timeout(SHUTDOWN_CLOSE_S):
                await self.close()
        except TimeoutError:
            # A provider that does not answer QUIT: its connections close with the process.
            log.warning("providers not closed in time at exit", seconds=SHUTDOWN_CLOSE_S)
            self.writer.close()

    async def write(self, conn: Conn, out: Outcomes, me: str, now: datetime) -> int:
        """`write`, and if the database is away, the `ResultWriter` keeps the outcomes until they
        are written; then raises DatabaseAway: `conn` is dead, the slice must end."""
        try:
            return await write(conn, out, me, now)
        except DATABASE_AWAY as exc:
            await self.writer.keep(out.items, me, exc)
            # Bounce/unregistered records ride along only on the first try; the message states
            # (what decides on a resend) are what must never be lost.
            raise DatabaseAway("written after the database came back") from exc


def dispatcher_of(runtime: Runtime) -> Dispatcher:
    """The process's dispatcher, built on first use and kept in `runtime.extras`."""
    found = runtime.extras.get("dispatcher")
    if isinstance(found, Dispatcher):
        return found
    public_url = runtime.settings.public_url
    dispatcher = Dispatcher(
        registry=ChannelRegistry(
            pool=runtime.pool,
            box=runtime.box,
            public_url=public_url,
            policy=runtime.settings.outbound_policy,
            proxy_from_env=runtime.settings.outbound_proxy_from_env,
        ),
        composer=Composer(
            public_url=public_url,
            keys=TrackingKeys.from_settings(runtime.settings),
            render_timeout_s=runtime.settings.render_timeout_s,
        ),
        writer=ResultWriter(
            pool=runtime.pool,
            journal=Journal(journal_folder(runtime.settings.data_dir)),
            draining=runtime.draining,
        ),
    )
    runtime.extras["dispatcher"] = dispatcher
    return dispatcher


async def shut_down(runtime: Runtime) -> None:
    """Shut the process's dispatcher down, if it was built (`Dispatcher.shut_down`)."""
    found = runtime.extras.pop("dispatcher", None)
    if isinstance(found, Dispatcher):
        await found.shut_down()


def journal_folder(data_dir: Path) -> Path:
    return data_dir / "journal"


IN_FLIGHT_DEFAULT = 512
EXPECTED_LATENCY_S = 0.3  # the slow end of providers' answers (Twilio, SES ~200-300 ms)


def in_flight(ch: Channel) -> int:
    """Sends a send job keeps in flight (pure): the option, else rate x expected latency (enough to
    reach the rate at 300 ms answers), else 512 - the providers' default connection count. At a
    latency L a job sends at most in_flight / L messages per second."""
    if ch.options.in_flight is not None:
        return ch.options.in_flight
    if ch.options.rate_per_s:
        return max(ch.chunk, math.ceil(ch.options.rate_per_s * EXPECTED_LATENCY_S))
    return max(ch.chunk, IN_FLIGHT_DEFAULT)


def slice_size(ch: Channel) -> int:
    """Messages claimed at once: a few chunks, so that workers share a campaign and a crash parks at
    most this many messages per slice."""
    return ch.chunk * ch.options.claim_chunks


SPARE_SLICES = 2


def slice_loops(ch: Channel) -> int:
    """Slices a send job works at once (pure), each on its own connection: enough that `in_flight`
    sends are in flight although one slice holds fewer, plus SPARE_SLICES claiming, composing and
    writing while the others send. The job's sends in flight are capped by its `Window` (shared
    by these loops), so the spares add claimed rows, not sends.

    Two spares, measured (bench/send.py --latency-ms 200, push): a slice spends longer between
    sends (claim, suppression, compose, writes, on a busy event loop) than its sends take at 200 ms,
    so with one spare the job averaged ~320 of its 512 sends in flight."""
    if ch.options.in_flight is not None and ch.options.in_flight <= slice_size(ch):
        return 1  # asked for no more than a slice in flight: one slice at a time
    return max(1, min(8, math.ceil(in_flight(ch) / slice_size(ch)) + SPARE_SLICES))


class Window:
    """A send job's sends in flight, shared by its slice loops, so that the channel's `in_flight`
    holds across slices (not per slice: a slice between claims sends nothing, and its sends end
    together). Taken when a chunk is handed to the provider, given back when its sends return."""

    def __init__(self) -> None:
        self.used = 0
        self._room: asyncio.Future[None] | None = None

    def fits(self, n: int, limit: int) -> bool:
        # An empty window takes any chunk: a limit under one chunk still sends, a chunk at a time.
        return self.used == 0 or self.used + n <= limit

    def take(self, n: int) -> None:
        self.used += n

    def give(self, n: int) -> None:
        self.used -= n
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    def give_when_done(self, sends: asyncio.Future[list[base.SendResult]], n: int) -> None:
        """Give `n` back when `sends` ends (returned, given up or cancelled)."""
        sends.add_done_callback(lambda _: self.give(n))

    def room(self) -> asyncio.Future[None]:
        """Done when sends next return: a slice waiting for room wakes when any slice's sends return."""
        if self._room is None:
            self._room = asyncio.get_running_loop().create_future()
        return self._room


async def claim(
    d: Dispatcher, conn: Conn, ch: Channel, me: str, now: datetime, limit: int | None = None
) -> list[ClaimedMessage]:
    """Claim a slice. Raises DatabaseAway when the database stops answering: the claim may have
    committed with its answer lost, so its rows (named by their lease end) go back at the writer's
    next flush instead of waiting out the 10-minute lease of a worker that is alive."""
    until = d.claim_until(now)
    try:
        return await message_store.claim_due(
            conn, ch.tenant_id, ch.channel_id, me, now, limit=limit or slice_size(ch), until=until
        )
    except DATABASE_AWAY as exc:
        d.writer.lose_claim(LostClaim(ch.tenant_id, ch.channel_id, me, until))
        raise DatabaseAway(f"claim: {exc}") from exc


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
    """Record outcomes of claims this worker holds, with the provider answers, atomically."""
    if not out:
        return 0
    if not out.results:
        # One statement, atomic on its own (the pool's connections autocommit): no BEGIN and
        # COMMIT round trips on the common path, a write per returned chunk.
        return await message_store.release_claims(conn, out.items, me, now)
    async with conn.transaction():
        written = await message_store.release_claims(conn, out.items, me, now)
        await record_send_results(conn, out.results, now=now)
    return written


async def send_slice(
    d: Dispatcher,
    conn: Conn,
    ch: Channel,
    rows: list[ClaimedMessage],
    me: str,
    clock: Clock | None = None,
    stop: Callable[[], bool] | None = None,
    lease: Lease | None = None,
    window: Window | None = None,
) -> SliceStats:
    """Send a claimed slice. `stop` is asked before each chunk (out of time, draining): when it says
    so, the rest of the slice goes back to `pending` unsent. `window`: the send job's sends in
    flight, shared with its other slices (default: this slice's own). Raises DatabaseAway when the database
    stopped answering, or when the send fence (`lease`, fence.py) closed: results received are
    written (or kept, see `results`), unsent claims given back, and the caller's connection is dead."""
    now_fn = clock or utc_now
    stats = SliceStats(claimed=len(rows))
    # Claims not yet written or handed to the provider: what goes back if the slice ends early.
    unsent = {r.id for r in rows}
    try:
        await _send_slice(
            d, conn, ch, rows, me, now_fn, stop or (lambda: False), stats, unsent, lease, window or Window()
        )
    except SLICE_ENDERS as exc:
        if unsent:
            back = [
                ClaimOutcome(message_id=i, state=MessageState.PENDING, reason=UNSENT, attempts_delta=-1)
                for i in unsent
            ]
            stats.returned += len(back)
            await d.writer.keep(back, me, exc)
        if isinstance(exc, DatabaseAway):
            raise
        raise DatabaseAway(str(exc)) from exc
    return stats


UNSENT = "returned unsent (database away)"


async def _send_slice(
    d: Dispatcher,
    conn: Conn,
    ch: Channel,
    rows: list[ClaimedMessage],
    me: str,
    now_fn: Clock,
    stop: Callable[[], bool],
    stats: SliceStats,
    unsent: set[uuid.UUID],
    lease: Lease | None,
    window: Window,
) -> None:
    now = now_fn()

    def settling(out: Outcomes) -> Outcomes:
        unsent.difference_update(o.message_id for o in out.items)
        return out

    blocked = await suppression.suppressed(
        conn, ch.tenant_id, ch.name,
        addresses=[r.address for r in rows if r.address],
        customer_ids=[r.customer_id for r in rows],
    )  # fmt: skip
    templates = await d.templates.for_channel(conn, ch, {r.template_id for r in rows})
    decided = tri.triage(rows, now=now, policy=ch.retry, suppressed=blocked, templates=templates)
    first = Outcomes()
    first.put_all(decided.settle)
    # Rendered in a thread, one hop per slice (compose.py): a heavy template cannot stall the loop.
    items = [(i.message, i.template, d.templates.app_id(ch, i.message.template_id)) for i in decided.send]
    composed = await compose_slice(d.composer, ch, items, now)
    ready = composed.ready
    first.put_all(tri.render_failed(row, exc) for row, exc in composed.failed)
    if composed.over_limits:
        log.warning(
            "messages failed: template exceeded render limits", tenant=ch.tenant_id, n=composed.over_limits
        )
    for state in first.states:
        stats.add(state)
    await d.write(conn, settling(first), me, now)

    # The pipeline: chunks handed to the provider while the job's window (`in_flight`, shared with
    # its other slices) has room; the outcomes of the chunks whose sends returned are written (on
    # this task, the connection's only user) as soon as they return, together (`write`).
    limit = in_flight(ch)
    flying: dict[asyncio.Task[list[base.SendResult]], Flight] = {}

    async def wait_some(room: asyncio.Future[None] | None = None) -> None:
        """Wait for one of this slice's chunks to return (or, given `room`, for the window to have
        room) and write the outcomes of every chunk returned by then."""
        waiting: set[asyncio.Future[list[base.SendResult]] | asyncio.Future[None]] = set(flying)
        if room is not None:
            waiting.add(room)
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        done = [task for task in flying if task.done()]
        if done:
            landed = [(flying.pop(task), task.result()) for task in done]
            await _record(d, conn, ch, landed, me, now_fn, stats, settling)

    try:
        for start in range(0, len(ready), ch.chunk):
            if lease is not None and not lease.open():
                # The others may soon count this worker dead and send its claims: start nothing.
                raise FenceClosed(
                    "the send fence closed: this worker's heartbeat is not reaching the database"
                )
            if stop():
                # Out of time or draining: never mid-chunk; the rest goes back unsent, for any worker.
                back = [row.id for row, _ in ready[start:]]
                stats.returned += await message_store.unclaim(conn, back, me, now_fn())
                unsent.difference_update(back)
                break
            chunk = ready[start : start + ch.chunk]
            # A pause or cancel takes effect before the next chunk, not only at the next claim.
            held = await message_store.held_campaigns(
                conn, ch.tenant_id, ch.channel_id, {row.campaign_id for row, _ in chunk}
            )
            if held:
                out = Outcomes()
                settled, _ = tri.hold_back([row for row, _ in chunk], held)
                out.put_all(settled)
                await d.write(conn, settling(out), me, now_fn())
                chunk = [(row, m) for row, m in chunk if row.campaign_id not in held]
                if not chunk:
                    continue
            while True:
                picked = ch.providers.pick()
                if picked is None:
                    break
                if window.fits(len(chunk), ch.providers.in_flight(limit, ch.chunk)) and (
                    window.used == 0 or ch.providers.proven(picked[0])
                ):
                    break
                # Back-pressure: the job's window, narrowed by throttles; and a provider not yet
                # proven gets one chunk at a time across the job's slices (providers.Health).
                await wait_some(window.room())
            if picked is None:
                # Every provider is benched: give the messages back, unharmed, for when one returns.
                out = Outcomes()
                wait = timedelta(seconds=max(1.0, ch.providers.seconds_until_usable()))
                out.put_all(tri.give_back([row for row, _ in ready[start:]], now_fn() + wait))
                stats.retried += len(out)
                await d.write(conn, settling(out), me, now_fn())
                break
            index, provider = picked
            # Taken before the first await: no other slice of the job sees the window empty (and
            # starts on an unproven provider too) while this one waits for the rate limit.
            window.take(len(chunk))
            try:
                if ch.bucket is not None:
                    await ch.bucket.take(len(chunk))
                messages = [m for _, m in chunk]
                task = asyncio.create_task(
                    fenced(lease, provider.send_many(messages), _given_up(len(messages)))
                )
            except BaseException:
                window.give(len(chunk))
                raise
            window.give_when_done(task, len(chunk))
            flying[task] = Flight(chunk, index, provider, time.monotonic())
        while flying:
            await wait_some()
    except BaseException as exc:
        # Sends already handed to the provider have outcomes the database must get: wait for them
        # and keep them (journal) when the slice ends on a database outage; a cancelled job
        # cancels them (as a cancelled send_many did before the pipeline).
        if flying:
            if isinstance(exc, SLICE_ENDERS):
                await asyncio.wait(flying)
                await _keep_flown(d, ch, flying, me, now_fn, exc, settling)
            else:
                for task in flying:
                    task.cancel()
        raise


def _given_up(n: int) -> Callable[[], list[base.SendResult]]:
    """The answers of a chunk the send fence gave up: each message may have reached the provider."""
    return lambda: [base.SendResult(base.Outcome.TRANSIENT, reason=FENCED, uncertain=True) for _ in range(n)]


@dataclass
class Flight:
    chunk: list[tuple[ClaimedMessage, base.OutboundMessage]]
    index: int
    provider: base.Provider
    started: float


def _outcomes_of(
    ch: Channel, flight: Flight, results: list[base.SendResult], now: datetime, stats: SliceStats
) -> Outcomes:
    out = Outcomes()
    provider = flight.provider
    sent = 0
    for (row, _), result in zip(flight.chunk, results, strict=True):
        t = after_send(result, attempts=row.attempts, send_at=row.send_at, now=now, policy=ch.retry)
        out.put(row.id, t, provider.name)
        if result.bounce or result.unregistered:
            out.results.append((row.id, result))
        if result.outcome is base.Outcome.SENT:
            sent += 1
            metrics.observe_send_delay(ch.kind, row.send_at, now)
        else:
            metrics.count_provider_error(provider.name, result.outcome.value, tenant=ch.tenant_id)
        stats.add(t.state)
    metrics.count_sent(provider.name, sent)
    return out


async def _record(
    d: Dispatcher,
    conn: Conn,
    ch: Channel,
    landed: list[tuple[Flight, list[base.SendResult]]],
    me: str,
    now_fn: Clock,
    stats: SliceStats,
    settling: Callable[[Outcomes], Outcomes],
) -> None:
    """Write the outcomes of the chunks whose sends returned in one `write` (at a provider's
    steady latency a slice's chunks return together: one write instead of one per chunk), then
    pace and judge the providers by each chunk."""
    out = Outcomes()
    judged: list[tuple[Flight, list[base.SendResult], float]] = []
    for flight, results in landed:
        elapsed = time.monotonic() - flight.started
        if ch.lookup_url and any(r.uncertain for r in results):
            results = await settle_uncertain(ch.lookup_url, [row for row, _ in flight.chunk], results)
        chunk_out = _outcomes_of(ch, flight, results, now_fn(), stats)
        out.items += chunk_out.items
        out.results += chunk_out.results
        if not all(r.reason == FENCED for r in results):
            # (Given up by the send fence: says nothing of the provider's health or pace.)
            ch.providers.pace(results, in_flight(ch), ch.chunk)
            judged.append((flight, results, elapsed))
    await d.write(conn, settling(out), me, now_fn())
    for flight, results, elapsed in judged:
        if ch.providers.report(flight.index, results):
            log.warning(
                "provider benched: throttled or failing",
                provider=flight.provider.name,
                tenant=ch.tenant_id,
                reasons=sorted({r.reason or "" for r in results if r.outcome is not base.Outcome.SENT})[:3],
                seconds=round(elapsed, 2),
            )


async def _keep_flown(
    d: Dispatcher,
    ch: Channel,
    flying: dict[asyncio.Task[list[base.SendResult]], Flight],
    me: str,
    now_fn: Clock,
    exc: BaseException,
    settling: Callable[[Outcomes], Outcomes],
) -> None:
    """The database went away with sends in flight: their outcomes go to the ResultWriter."""
    for task, flight in flying.items():
        if task.cancelled() or task.exception() is not None:
            continue  # no answer to keep: the claims stay unsent, returned by send_slice
        out = _outcomes_of(ch, flight, task.result(), now_fn(), SliceStats())
        await d.writer.keep(settling(out).items, me, exc)

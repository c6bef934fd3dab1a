"""The send fence: a worker that may already count as dead to the others sends nothing more.

Another worker takes over a worker's claims when that worker's heartbeat is DEAD_AFTER old
(reconcile.py) and, without a delivery lookup, sends them again. A worker cut off from the
database (a network partition, a frozen host) cannot know that has happened; if its sends were
only stalled (a cut link, not a dead peer), they would go out when the link returns: a second copy.
So every send job holds a lease on the right to send, renewed by reading its own heartbeat's age
from the database every PROBE_EVERY_S. The lease runs out MARGIN_S before the moment the others
may judge the worker dead; from then on no chunk starts, and chunks in flight are given up: their
connections are reset (SO_LINGER 0, channels/sockets.py), so nothing buffered reaches the provider
later, and their messages are uncertain (the provider may have taken them before the cut).

The trigger is the worker's heartbeat as the others see it, not a send taking long: a slow
provider on a healthy worker is never fenced (an earlier elapsed-time fence gave up slow sends on a
loaded machine and caused the very duplicates it was meant to prevent).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from optibridge.core.logs import get_logger
from optibridge.delivery.results import DATABASE_AWAY, DEAD_AFTER, DatabaseAway

log = get_logger(__name__)

PROBE_EVERY_S = 2.0
PROBE_TIMEOUT_S = 3.0
MARGIN_S = 5.0  # the fence closes this long before the others may judge us dead
IDLE_STOP_S = 60.0  # a watcher no send job asked about for this long stops
FENCED = "no answer before the send fence (the worker lost the database); connection reset"

HeartbeatAge = Callable[[str], Awaitable[float | None]]
T = TypeVar("T")


class FenceClosed(DatabaseAway):
    """The lease ran out: the send job ends as after a database outage (unsent claims go back)."""


def lease_end(probe_started: float, heartbeat_age_s: float | None, *, dead_after_s: float) -> float:
    """When the right to send runs out (pure; monotonic seconds): MARGIN_S before the others may
    judge the worker dead, counting the heartbeat's age from when the probe was sent (the age was
    read after that, so this errs early). No heartbeat row: the others already count it dead."""
    if heartbeat_age_s is None:
        return probe_started
    return probe_started - heartbeat_age_s + dead_after_s - MARGIN_S


@dataclass
class Lease:
    """One worker id's right to send, kept fresh by a watcher task while send jobs ask about it."""

    worker_id: str
    age_of: HeartbeatAge
    dead_after_s: float = DEAD_AFTER.total_seconds()
    clock: Callable[[], float] = time.monotonic
    ends_at: float = 0.0
    asked_at: float = 0.0
    closed_logged: bool = False
    probed: bool = False  # the start grant is a guess until the first probe's reading replaces it
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # The job that creates the lease was just fetched from the database under this worker id,
        # whose heartbeat the engine renews every few seconds: grant what the worst case allows.
        now = self.clock()
        self.ends_at = now + self.dead_after_s - 5.0 - MARGIN_S
        self.asked_at = now

    def seconds_left(self) -> float:
        self.asked_at = self.clock()
        left = self.ends_at - self.asked_at
        if left <= 0 and not self.closed_logged:
            self.closed_logged = True
            log.warning(
                "send fence closed: the worker's heartbeat is not reaching the database",
                worker=self.worker_id,
            )
        return left

    def open(self) -> bool:
        return self.seconds_left() > 0

    async def probe(self) -> None:
        """One renewal: read the heartbeat's age; a database that does not answer renews nothing."""
        started = self.clock()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                age = await self.age_of(self.worker_id)
        except TimeoutError:
            return
        except DATABASE_AWAY:
            return
        ends = lease_end(started, age, dead_after_s=self.dead_after_s)
        # A later probe never shortens a lease a fresher heartbeat granted (readings arrive late
        # and out of order), except to close it: the row is gone, the others have judged. The
        # start grant was a guess: the first reading replaces it.
        self.ends_at = ends if age is None or not self.probed else max(self.ends_at, ends)
        self.probed = True
        if self.ends_at > self.clock():
            self.closed_logged = False

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(), name=f"send-fence:{self.worker_id}")

    async def _watch(self) -> None:
        while self.clock() - self.asked_at < IDLE_STOP_S:
            try:
                await self.probe()
            except Exception as exc:  # a watcher that dies would close the fence for good
                log.warning("send fence probe failed", error=type(exc).__name__)
            await asyncio.sleep(PROBE_EVERY_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def fenced(lease: Lease | None, work: Awaitable[T], given_up: Callable[[], T]) -> T:
    """`work`, unless the lease runs out first: then it is cancelled (its connections reset) and
    `given_up()` is the answer. Without a lease (tests, tools), just `work`. Raises FenceClosed,
    without starting `work`, when the lease has already run out: nothing went out, nothing is
    uncertain."""
    if lease is not None and not lease.open():
        if inspect.iscoroutine(work):
            work.close()
        raise FenceClosed("the send fence closed: this worker's heartbeat is not reaching the database")
    if lease is None:
        return await work
    task = asyncio.ensure_future(work)
    try:
        while True:
            left = lease.seconds_left()
            if left <= 0:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                if task.cancelled():
                    return given_up()
                return task.result()  # it finished as it was being given up: the answer stands
            done, _ = await asyncio.wait({task}, timeout=min(left, PROBE_EVERY_S))
            if done:
                return task.result()
    except asyncio.CancelledError:
        task.cancel()
        raise

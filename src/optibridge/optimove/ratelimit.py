"""Client-side rate limiting: stay under Optimove's per-key sliding window instead of hitting 429.

Optimove counts requests per API key over a sliding window (50 per 10 s) and allows one Login
per second. Every client instance and task of a process that uses the same key must share one
budget, so schedulers live in a registry keyed by the credential, not in the client.

The scheduler hands out send times instead of locking: a caller reserves the earliest slot that
keeps every window within the limit and sleeps until then. Reservations are FIFO (fair) and need
no lock across tasks, and the arithmetic is pure, so it is tested without a clock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from optibridge.optimove.clock import Clock


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `requests` requests in any `window_s` seconds."""

    requests: int = 50
    window_s: float = 10.0

    def __post_init__(self) -> None:
        if self.requests < 1 or self.window_s <= 0:
            raise ValueError("a rate limit needs requests >= 1 and window_s > 0")


def next_slot(recent: Sequence[float], now: float, limit: RateLimit) -> float:
    """The earliest send time (>= now) for one more request, given the send times already
    reserved inside the last window (`recent`, oldest first)."""
    n, window = limit.requests, limit.window_s
    live = [t for t in recent if t > now - window]
    # The new send and the n-1 before it must span more than one window.
    at = now if len(live) < n else max(now, live[-n] + window)
    if live and at < live[-1]:
        at = live[-1]  # keep slots sorted: FIFO behind already-delayed callers
    return at


class Limiter(Protocol):
    """Something that makes a caller wait for its turn under a rate limit."""

    async def wait(self) -> float:
        """Sleep until this caller may send; return how long it waited."""
        ...


class LimiterSource(Protocol):
    """Hands out the limiter of a credential: every client of one API key must share it."""

    def limiter(self, key: str, limit: RateLimit, clock: Clock) -> Limiter: ...


class SlidingWindowScheduler:
    """Reserves send times so that no window of `window_s` seconds holds more than `limit`."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._slots: deque[float] = deque()  # reserved send times, non-decreasing
        # Reservations are a few list operations; the lock only matters if threads share a key.
        self._lock = threading.Lock()

    def reserve(self, now: float) -> float:
        """Reserve a send slot; return the time (>= now) at which the request may go."""
        with self._lock:
            slots = self._slots
            horizon = now - self.limit.window_s
            while slots and slots[0] <= horizon:
                slots.popleft()
            at = next_slot(slots, now, self.limit)
            slots.append(at)
            return at

    def pending(self, now: float) -> int:
        """Reservations whose send time is still ahead (callers currently waiting)."""
        with self._lock:
            return sum(1 for slot in self._slots if slot > now)


class LocalLimiter:
    """A limiter on this process's own scheduler."""

    def __init__(self, scheduler: SlidingWindowScheduler, clock: Clock) -> None:
        self.scheduler = scheduler
        self._clock = clock

    async def wait(self) -> float:
        return await wait_for_slot(self.scheduler, self._clock)


class RateLimiterRegistry:
    """Schedulers shared by every client in a process that uses the same credential (a
    `LimiterSource`; optibridge.optimove.shared_limit shares them across processes instead)."""

    def __init__(self) -> None:
        self._schedulers: dict[tuple[str, int, float], SlidingWindowScheduler] = {}
        self._lock = threading.Lock()

    def scheduler(self, key: str, limit: RateLimit) -> SlidingWindowScheduler:
        """The scheduler for `key` (e.g. "key:<api key>") under `limit`, created on first use."""
        ident = (key, limit.requests, limit.window_s)
        with self._lock:
            found = self._schedulers.get(ident)
            if found is None:
                found = self._schedulers[ident] = SlidingWindowScheduler(limit)
            return found

    def limiter(self, key: str, limit: RateLimit, clock: Clock) -> Limiter:
        return LocalLimiter(self.scheduler(key, limit), clock)


# The process-wide default. Tests that use a ManualClock pass their own registry, since slots
# reserved on virtual time mean nothing to a client on the system clock.
DEFAULT_REGISTRY = RateLimiterRegistry()


async def wait_for_slot(scheduler: SlidingWindowScheduler, clock: Clock) -> float:
    """Reserve a slot and sleep until it; return how long this caller waited."""
    now = clock.monotonic()
    delay = scheduler.reserve(now) - now
    if delay > 0:
        await clock.sleep(delay)
    return max(0.0, delay)

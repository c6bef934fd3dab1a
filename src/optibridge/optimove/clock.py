"""Time as an injected dependency, so rate limits, backoff and token expiry are testable.

Logic asks a `Clock` for the time and to sleep; production uses `SYSTEM_CLOCK`, tests use
`ManualClock`, whose `sleep` advances virtual time at once, so no test waits for real.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for windows, TTLs, deadlines)."""
        ...

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware in UTC."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


# One instance per process, so everything keyed by clock agrees on what "now" means.
SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """Virtual time: `sleep` advances the clock instead of waiting, and records each sleep."""

    def __init__(self, start: float = 1000.0, wall: datetime | None = None) -> None:
        self._t = start
        self._wall0 = wall or datetime(2024, 1, 1, tzinfo=UTC)
        self._t0 = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._t

    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._t - self._t0)

    def advance(self, seconds: float) -> None:
        self._t += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        # Still yield, so other tasks run in the order a real sleep would let them.
        await asyncio.sleep(0)

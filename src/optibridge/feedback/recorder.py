"""Where tracking hits go: straight to the database, or through a small in-process buffer.

`BufferedRecorder` collects opens and clicks and writes them in one INSERT every `interval`
(50 ms by default): a hit costs an append instead of a database round trip, which is what lets one
process take thousands of hits per second (docs/benchmarks.md, "tracking"). The price is a
durability window: hits answered in the last `interval` before a crash are lost. Only opens and
clicks are buffered; unsubscribes and receipts are written before the answer is sent.

If the database is unavailable, batches are kept and retried; beyond `max_events` unwritten hits a
new hit waits briefly for room and is then dropped (and logged), so requests never pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
import psycopg_pool

from optibridge.core.logs import get_logger
from optibridge.feedback.events import Event, record_events

log = get_logger(__name__)

Pool = psycopg_pool.AsyncConnectionPool[Any]
ROOM_WAIT_S = 1.0
MAX_BATCH = 5000


class Recorder(Protocol):
    async def record(self, event: Event) -> None: ...

    async def flush(self) -> int: ...

    async def aclose(self) -> None: ...


class DirectRecorder:
    """One transaction per hit."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def record(self, event: Event) -> None:
        async with self._pool.connection() as conn:
            await record_events(conn, [event])

    async def flush(self) -> int:
        return 0  # nothing is ever held back

    async def aclose(self) -> None:
        return None


class BufferedRecorder:
    def __init__(self, pool: Pool, *, interval_s: float = 0.05, max_events: int = 20_000) -> None:
        self._pool = pool
        self._interval = interval_s
        self._max = max_events
        self._pending: list[Event] = []
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.written = 0
        self.dropped = 0

    def _ensure_started(self) -> None:
        # Started on first use, in whatever loop serves requests; stopped by `aclose`.
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="tracking-flush")

    async def record(self, event: Event) -> None:
        if self._closed:
            raise RuntimeError("recorder is closed")
        self._ensure_started()
        if len(self._pending) >= self._max:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), ROOM_WAIT_S)
            if len(self._pending) >= self._max:
                self.dropped += 1
                if self.dropped % 1000 == 1:
                    log.warning("tracking buffer full; hits dropped", dropped=self.dropped)
                return
        self._pending.append(event)

    async def _run(self) -> None:
        while True:  # ends when aclose cancels the task
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> int:
        """Write what is pending now; on failure keep it for the next round. Returns rows sent."""
        sent = 0
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self._write(batch)
            except BaseException as exc:
                # Put the batch back whatever happened (even a cancellation mid-write): if it was
                # in fact committed, writing it again inserts nothing (dedupe keys).
                self._pending[:0] = batch
                if not isinstance(exc, (psycopg.Error, psycopg_pool.PoolTimeout, OSError)):
                    raise
                log.warning(
                    "tracking hits not written yet; will retry",
                    pending=len(self._pending),
                    error=str(exc)[:200],
                )
                break
            sent += len(batch)
            self.written += len(batch)
        if len(self._pending) < self._max:
            self._room.set()
        return sent

    async def _write(self, batch: Sequence[Event]) -> None:
        async with self._pool.connection() as conn:
            await record_events(conn, batch)

    async def aclose(self) -> None:
        """Stop the flusher and write what is left (once more if the first attempt fails)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        if self._pending:
            log.error("tracking hits lost at shutdown", count=len(self._pending))

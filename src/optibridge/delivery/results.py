"""Send results are never dropped: what a provider answered is written to the database, however long
the database takes to come back, or kept in a local journal until it does.

A chunk's outcomes are written in one statement right after the provider answers
(`dispatcher.write`). When that fails because the database is away (connection lost, restart,
pool exhausted), `ResultWriter.record`

1. appends the outcomes to this process's journal (JSON lines, fsync'd) before anything else, so
   that even a `kill -9` from here on loses nothing;
2. retries on a fresh connection each time (the old one is dead), with backoff, for up to
   `RETRY_FOR` (`DRAIN_RETRY_FOR` once the process is draining), writing with
   `release_claims_late`: rows still claimed by this worker, and a final answer also to rows
   reconciled back to `pending` meanwhile (docs/delivery.md, "Results and the database");
3. marks the journal batch done once written; or, out of time, keeps it in memory (flushed before
   the next slice of any send job of this process) and in the journal.

A journal whose process is gone (its file lock is free) is replayed by the next process of the
machine that sends (`replay_orphans`), then deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import psycopg
import psycopg_pool

from optibridge.core.logs import get_logger
from optibridge.core.states import MessageState
from optibridge.runtime import Pool
from optibridge.store import messages as message_store
from optibridge.store.messages import ClaimOutcome

log = get_logger(__name__)

# Errors that say "the database is not answering", after which a fresh connection may succeed.
DATABASE_AWAY: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg_pool.PoolTimeout)
RETRY_FOR = timedelta(minutes=5)  # well inside the 10-minute claim lease
DRAIN_RETRY_FOR = timedelta(seconds=3)  # the process is stopping: journal and go
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
CONNECT_TIMEOUT_S = 5.0
# A claim whose worker has sent no heartbeat for this long is a dead worker's (reconcile.py).
DEAD_AFTER = timedelta(seconds=20)


class DatabaseAway(Exception):
    """The database stopped answering during a slice. Results already received are written (or
    journaled); the send job should end: its connection is dead."""


# What ends a slice early: the database stopped answering, at a write or anywhere else.
SLICE_ENDERS: tuple[type[BaseException], ...] = (DatabaseAway, *DATABASE_AWAY)


# -- the journal ----------------------------------------------------------------------------------


def _to_json(o: ClaimOutcome) -> dict[str, object]:
    return {
        "id": str(o.message_id),
        "state": str(o.state),
        "reason": o.reason,
        "send_at": o.send_at.isoformat() if o.send_at else None,
        "delta": o.attempts_delta,
        "provider": o.provider,
        "pmid": o.provider_message_id,
    }


def _from_json(d: dict[str, object]) -> ClaimOutcome:
    send_at = d.get("send_at")
    reason, provider, pmid = d.get("reason"), d.get("provider"), d.get("pmid")
    delta = d.get("delta")
    return ClaimOutcome(
        message_id=uuid.UUID(str(d["id"])),
        state=MessageState(str(d["state"])),
        reason=reason if isinstance(reason, str) else None,
        send_at=datetime.fromisoformat(send_at) if isinstance(send_at, str) else None,
        attempts_delta=delta if isinstance(delta, int) else 0,
        provider=provider if isinstance(provider, str) else None,
        provider_message_id=pmid if isinstance(pmid, str) else None,
    )


@dataclass
class JournalBatch:
    number: int
    worker: str
    outcomes: list[ClaimOutcome]


class Journal:
    """This process's journal: one append-only file of JSON lines, created on first use and locked
    (flock) while the process lives, so no other process replays it under its feet."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._file: IO[str] | None = None
        self._next = 1

    def _open(self) -> IO[str]:
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open while the process lives
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._file = f
        return self._file

    def _append(self, entry: dict[str, object]) -> None:
        f = self._open()
        f.write(json.dumps(entry, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())

    def append(self, worker: str, outcomes: Sequence[ClaimOutcome]) -> JournalBatch:
        batch = JournalBatch(self._next, worker, list(outcomes))
        self._next += 1
        self._append({"batch": batch.number, "worker": worker, "outcomes": [_to_json(o) for o in outcomes]})
        return batch

    def done(self, batch: JournalBatch) -> None:
        if batch.number:  # 0: never journaled (see ResultWriter.keep)
            with contextlib.suppress(OSError):
                self._append({"done": batch.number})

    def close(self, *, all_done: bool) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            if all_done:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()


def read_batches(lines: Sequence[str]) -> list[JournalBatch]:
    """The batches of a journal not marked done; a torn last line (the process died mid-write) is
    skipped: its batch was never acknowledged, its messages were reconciled as after any crash."""
    batches: dict[int, JournalBatch] = {}
    done: set[int] = set()
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if "done" in entry:
            done.add(int(entry["done"]))
        elif "batch" in entry:
            outcomes = [_from_json(o) for o in entry.get("outcomes", []) if isinstance(o, dict)]
            batches[int(entry["batch"])] = JournalBatch(int(entry["batch"]), str(entry["worker"]), outcomes)
    return [b for n, b in sorted(batches.items()) if n not in done]


async def replay_orphans(pool: Pool, folder: Path, own: Path | None = None) -> int:
    """Write the journaled results of processes that are gone (their file lock is free), then delete
    their journals. Returns how many rows were written. A database error leaves the journal for the
    next try."""
    # Blocking file calls on purpose: a few small local files, read once per process start.
    if not folder.is_dir():  # noqa: ASYNC240
        return 0
    written = 0
    for path in sorted(folder.glob("*.jsonl")):  # noqa: ASYNC240
        if own is not None and path == own:
            continue
        try:
            f = open(path, "r+", encoding="utf-8")  # noqa: SIM115, ASYNC230 - closed below
        except FileNotFoundError:
            continue
        with f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive
            batches = read_batches(f.read().splitlines())
            now = datetime.now(UTC)
            async with pool.connection(timeout=CONNECT_TIMEOUT_S) as conn, conn.transaction():
                for batch in batches:
                    written += await message_store.release_claims_late(
                        conn, batch.outcomes, batch.worker, now, dead_after=DEAD_AFTER
                    )
            path.unlink()
        log.warning(
            "replayed the send results of a stopped process",
            journal=path.name,
            batches=len(batches),
            messages=sum(len(b.outcomes) for b in batches),
            written=written,
        )
    return written


# -- the writer -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LostClaim:
    """A claim that may have committed while its answer was lost with the connection: its rows, if
    any, are claimed by `worker` until exactly `until` (unique per worker), and were never sent."""

    tenant_id: str
    channel_id: int
    worker: str
    until: datetime


@dataclass
class ResultWriter:
    """One per process (in the dispatcher): writes results late when the database was away."""

    pool: Pool
    journal: Journal
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    backlog: list[JournalBatch] = field(default_factory=list)
    lost: list[LostClaim] = field(default_factory=list)
    replayed: bool = False

    async def _write_late(self, outcomes: Sequence[ClaimOutcome], worker: str) -> int:
        async with self.pool.connection(timeout=CONNECT_TIMEOUT_S) as conn, conn.transaction():
            return await message_store.release_claims_late(
                conn, outcomes, worker, datetime.now(UTC), dead_after=DEAD_AFTER
            )

    async def keep(self, outcomes: Sequence[ClaimOutcome], worker: str, error: BaseException) -> int:
        """The write of these outcomes failed with `error` (database away): journal them, retry on
        fresh connections, and return how many rows were written, or raise DatabaseAway with the
        batch kept for later (journal + backlog) when time is out."""
        try:
            batch = self.journal.append(worker, outcomes)
        except OSError as exc:  # no journal (disk full, read-only): keep trying from memory
            log.error("send results journal not written", error=str(exc), journal=str(self.journal.path))
            batch = JournalBatch(0, worker, list(outcomes))
        log.warning(
            "database away while writing send results; kept, retrying",
            count=len(outcomes),
            error=type(error).__name__,
            journal=self.journal.path.name,
        )
        started = time.monotonic()
        delay = BACKOFF_FIRST_S
        while True:
            limit = DRAIN_RETRY_FOR if self.draining.is_set() else RETRY_FOR
            try:
                written = await self._write_late(batch.outcomes, worker)
            except DATABASE_AWAY:
                if time.monotonic() - started + delay > limit.total_seconds():
                    self.backlog.append(batch)
                    log.warning(
                        "send results not written yet: kept in the journal",
                        count=len(outcomes),
                        journal=str(self.journal.path),
                    )
                    raise DatabaseAway("the database did not answer in time") from None
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX_S, delay * 2)
                continue
            self.journal.done(batch)
            log.info("send results written after the database came back", count=written)
            return written

    def lose_claim(self, claim: LostClaim) -> None:
        """A claim failed with the database away: its rows go back to `pending` at the next flush.
        Only in memory: if this process dies first, its claims are a dead worker's (reconcile.py)."""
        self.lost.append(claim)

    async def flush(self) -> None:
        """Write what an earlier outage left (claims whose answer was lost, this process's backlog,
        then the journals of stopped processes on this machine). Raises DATABASE_AWAY errors: the
        caller's job then ends."""
        await self.flush_own()
        if not self.replayed:
            await replay_orphans(self.pool, self.journal.folder, own=self.journal.path)
            self.replayed = True

    async def flush_own(self) -> None:
        """Give back the claims whose answer was lost and write this process's backlog."""
        while self.lost:
            c = self.lost[0]
            async with self.pool.connection(timeout=CONNECT_TIMEOUT_S) as conn:
                back = await message_store.unclaim_lost(
                    conn, c.tenant_id, c.channel_id, c.worker, c.until, datetime.now(UTC)
                )
            if back:
                log.warning("a claim's answer was lost with the database: given back", count=back)
            self.lost.pop(0)
        while self.backlog:
            batch = self.backlog[0]
            await self._write_late(batch.outcomes, batch.worker)
            self.journal.done(batch)
            self.backlog.pop(0)

    def close(self) -> None:
        self.journal.close(all_done=not self.backlog)

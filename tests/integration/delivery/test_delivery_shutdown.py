"""At process exit the dispatcher writes what an outage left and closes its providers.

Before, nothing closed it: results kept in memory waited for the next process to replay the
journal, and the providers' connections were dropped without a goodbye.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from deliverykit import CHANNEL_ID, TENANT, add_campaign, add_tenant, delivered, register_worker, runtime

from optibridge.delivery import dispatcher as dsp
from optibridge.delivery import results
from optibridge.delivery.tasks import run_send
from optibridge.runtime import Runtime
from optibridge.sinks.http_sink import HttpSink
from optibridge.store import messages as message_store

TOTAL = 600


async def away(*args: Any, **kwargs: Any) -> int:
    raise psycopg.OperationalError("the database system is shutting down")


async def send_with_the_database_away(rt: Runtime, sink: HttpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """One send job: the provider takes the first chunk, then the database is away longer than the
    writer waits, so the slice's results are kept (journal + backlog) and the job ends. The
    database stays "away" (for writes) until the caller undoes `monkeypatch`."""
    await add_tenant(rt, sink, chunk=50, claim_chunks=4, in_flight=200)  # one slice at a time
    await add_campaign(rt, 1, TOTAL)
    me = await register_worker(rt)
    monkeypatch.setattr(results, "RETRY_FOR", timedelta(seconds=0.5))
    monkeypatch.setattr(message_store, "release_claims", away)
    monkeypatch.setattr(message_store, "release_claims_late", away)
    await run_send(rt, TENANT, CHANNEL_ID, me, budget_s=30)


def states_now(db_url: str) -> dict[str, int]:
    # The runtime (and its pool) is gone: a plain connection.
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT state::text, count(*) FROM messages GROUP BY 1").fetchall()
    return {str(s): int(n) for s, n in rows}


def unfinished_batches(folder: Path) -> int:
    lines = [line for p in folder.glob("*.jsonl") for line in p.read_text().splitlines()]
    return len(results.read_batches(lines))


async def test_at_exit_the_backlog_is_written_the_journal_removed_and_the_providers_closed(
    db_url: str, test_secret_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    async with HttpSink() as sink:
        async with runtime(db_url, test_secret_key, data) as rt:
            await send_with_the_database_away(rt, sink, monkeypatch)
            monkeypatch.undo()  # the database answers again; no send job runs before the exit
            d = dsp.dispatcher_of(rt)
            kept = sum(len(b.outcomes) for b in d.writer.backlog)
            assert kept == 200, "the slice's results and its unsent claims are kept"
            provider = (await d.channel(TENANT, CHANNEL_ID)).providers.providers[0]
            assert provider._client is not None  # type: ignore[attr-defined]
        # The runtime closed: the dispatcher wrote its backlog before the pool closed.
        assert "dispatcher" not in rt.extras
        assert len(delivered(sink)) == 50
        assert states_now(db_url) == {"sent": 50, "pending": TOTAL - 50}
        assert list((data / "journal").glob("*.jsonl")) == [], "all written: the journal is removed"
        assert provider._client is None  # type: ignore[attr-defined]


async def test_at_exit_with_the_database_still_away_the_results_stay_in_the_journal_and_exit_is_bounded(
    db_url: str, test_secret_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    async with HttpSink() as sink:
        async with runtime(db_url, test_secret_key, data) as rt:
            await send_with_the_database_away(rt, sink, monkeypatch)
            assert dsp.dispatcher_of(rt).writer.backlog
            started = time.monotonic()
        took = time.monotonic() - started
        monkeypatch.undo()
        assert took < dsp.SHUTDOWN_FLUSH_S + dsp.SHUTDOWN_CLOSE_S + 2.0, took
        # Nothing written, nothing lost: the batches wait in the journal for the next process.
        assert states_now(db_url) == {"claimed": 200, "pending": TOTAL - 200}
        assert unfinished_batches(data / "journal") >= 2
        assert len(delivered(sink)) == 50

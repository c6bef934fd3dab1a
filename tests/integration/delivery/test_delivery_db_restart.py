"""A real PostgreSQL restart in the middle of a campaign (issue 14, fault 1: a 5-second restart sent
256 duplicates with no process crashing). The test's own embedded server is stopped with
`pg_ctl stop -m immediate` while send jobs run, kept down 5 s, and started again: every message
reaches the sink exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from deliverykit import (
    CHANNEL_ID,
    TENANT,
    add_campaign,
    add_tenant,
    delivered,
    heartbeats,
    register_worker,
    runtime,
)

from optibridge.delivery.tasks import run_send
from optibridge.sinks.http_sink import HttpSink
from optibridge.store import migrate
from optibridge.store.database import Database
from optibridge.store.embedded import EmbeddedPostgres

TOTAL = 3000


@pytest.mark.slow  # ~30 s: its own server, a restart
async def test_a_five_second_database_restart_mid_campaign_sends_every_message_once(
    pg_tmp: Path, test_secret_key: str, tmp_path: Path
) -> None:
    # Durable commits (fsync on): what a production server guarantees, and what the test is about.
    server = EmbeddedPostgres(pg_tmp / "data", fsync=True)
    url = await asyncio.to_thread(server.start)
    try:
        await migrate.upgrade(Database(url=url))
        async with HttpSink() as sink, runtime(url, test_secret_key, tmp_path / "data") as rt:
            await add_tenant(rt, sink, chunk=50, claim_chunks=2, rate_per_s=300)
            await add_campaign(rt, 1, TOTAL)
            me = await register_worker(rt)
            errors: list[str] = []

            async def send_jobs() -> None:
                """Send jobs one after the other, as ticks queue them; a job that fails is logged."""
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and len(delivered(sink)) < TOTAL:
                    try:
                        stats = await run_send(rt, TENANT, CHANNEL_ID, me, budget_s=5)
                        if not stats.claimed:
                            await asyncio.sleep(0.2)
                    except Exception as exc:
                        errors.append(type(exc).__name__)
                        await asyncio.sleep(0.5)

            async with heartbeats(rt, me):
                jobs = asyncio.create_task(send_jobs())
                deadline = time.monotonic() + 60
                while len(delivered(sink)) < 600:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                await asyncio.to_thread(server._pg_ctl, "stop", "-m", "immediate", "-w", check=True)
                await asyncio.sleep(5)
                await asyncio.to_thread(server._start_server)
                await asyncio.wait_for(jobs, 150)

            async with rt.pool.connection() as conn:
                rows = await (
                    await conn.execute("SELECT state::text AS s, count(*) AS n FROM messages GROUP BY 1")
                ).fetchall()
            assert {r["s"]: r["n"] for r in rows} == {"sent": TOTAL}, errors
            per_id = delivered(sink)
            assert len(per_id) == TOTAL
            dupes = sum(n - 1 for n in per_id.values())
            assert dupes == 0, f"{dupes} duplicate(s) after a database restart"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(server.stop)

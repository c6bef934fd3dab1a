"""Optimove's rate limit is per API key: processes that share a key share one budget, through
PostgreSQL, and together stay under the server's window at close to the fastest rate it allows."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from optibridge.emulator import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.optimove.ratelimit import RateLimit, next_slot
from optibridge.store import rate_slots

WORKER = Path(__file__).with_name("shared_limit_worker.py")


async def test_reservations_on_two_connections_share_one_window(conn: Any, db_url: str) -> None:
    limit = RateLimit(3, 2.0)

    def choose(recent: list[datetime], now: datetime) -> datetime:
        at = next_slot([t.timestamp() for t in recent], now.timestamp(), limit)
        return datetime.fromtimestamp(at, UTC)

    other = await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row)
    async with other:
        slots = []
        for i in range(7):
            c = conn if i % 2 else other  # alternate: two processes' connections
            slot, now = await rate_slots.reserve(c, b"k" * 32, timedelta(seconds=2), 3, choose)
            slots.append(slot)
        # A second credential has its own budget.
        elsewhere, now = await rate_slots.reserve(conn, b"j" * 32, timedelta(seconds=2), 3, choose)
    assert slots == sorted(slots)
    assert (slots[3] - slots[0]).total_seconds() >= 2.0  # the 4th waits a window behind the 1st
    assert (slots[6] - slots[3]).total_seconds() >= 2.0
    assert (slots[2] - slots[0]).total_seconds() < 1.0  # the first three go at once
    assert (elsewhere - now).total_seconds() < 1.0
    rows = await (await conn.execute("SELECT count(*) AS n FROM optimove_rate_slots")).fetchone()
    assert rows["n"] == 8


@pytest.mark.slow
async def test_three_processes_on_one_key_make_300_calls_with_no_429_near_the_fastest_rate(
    db_url: str,
) -> None:
    # Optimove's own limit: 50 requests per 10 s per API key.
    requests, window_s, calls, workers = 50, 10.0, 300, 3
    config = EmulatorConfig(
        rate_limit_enabled=True, rate_limit_requests=requests, rate_limit_window_s=window_s
    )
    async with running_emulator(config) as emu:
        await emu.control.create_tenant("t1", api_key="shared-key")
        args = [str(WORKER), db_url, emu.base_url, str(calls // workers), str(requests), str(window_s)]
        pipe = asyncio.subprocess.PIPE
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, *args, stdout=pipe, stderr=pipe)
            for _ in range(workers)
        ]
        outputs = [await asyncio.wait_for(p.communicate(), 180) for p in procs]
        answers = [r["status"] for r in await emu.control.requests() if r["function"] == "GetLastDataUpdate"]
    results = []
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert len(answers) == calls
    assert 429 not in answers
    assert all(r["retries"] == 0 for r in results)
    span = max(r["last"] for r in results) - min(r["first"] for r in results)
    # The fastest the server allows: `requests` at once, then `requests` more every window.
    fastest = math.floor((calls - 1) / requests) * window_s
    print(f"{calls} calls in {span:.2f} s; fastest allowed {fastest:.1f} s; ratio {fastest / span:.3f}")
    # The 0.5 s margin on each 10 s window (shared_limit.DEFAULT_MARGIN_S) costs 5 % by itself.
    assert span <= fastest / 0.93, f"{calls} calls took {span:.2f} s; the limit allows {fastest:.1f} s"

"""A send job's sends in flight hold across its slice loops (issue 15: `in_flight` per job).

Before: each slice counted only its own sends, so a job of N slice loops could have N slices in
flight whatever `in_flight` said, and between a slice's claims none of its sends were in flight
(measured with bench/send.py at 200 ms: ~320 of 512 in flight per job). Now the loops share one
window (dispatcher.Window): never more than `in_flight`, and kept near full.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

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
    states,
)

from optibridge.channels import base
from optibridge.delivery import dispatcher as dsp
from optibridge.delivery.tasks import run_send
from optibridge.sinks.http_sink import HttpSink


# Slow tier: it measures concurrency (the median), like the lane tests.
@pytest.mark.slow
async def test_one_send_job_keeps_at_most_in_flight_sends_across_its_slice_loops(
    db_url: str, test_secret_key: str, tmp_path: Path
) -> None:
    total = 600
    async with HttpSink() as sink, runtime(db_url, test_secret_key, tmp_path / "data") as rt:
        # Slices of 10, in_flight 30: 5 slice loops (dsp.slice_loops), up to 50 claimed at once.
        await add_tenant(rt, sink, chunk=10, claim_chunks=1, in_flight=30)
        await add_campaign(rt, 1, total)
        sink.latency(0.1)
        now = peak = 0
        seen: list[int] = []
        real = sink._injected

        async def counting(kind: str) -> Any:
            nonlocal now, peak
            now += 1
            peak = max(peak, now)
            seen.append(now)
            try:
                return await real(kind)
            finally:
                now -= 1

        sink._injected = counting  # type: ignore[method-assign]
        me = await register_worker(rt)
        async with heartbeats(rt, me):
            stats = await asyncio.wait_for(run_send(rt, TENANT, CHANNEL_ID, me, budget_s=60), 60)
        ch = await dsp.dispatcher_of(rt).channel(TENANT, CHANNEL_ID)
        assert dsp.slice_loops(ch) == 5
        print(f"sends in flight at the sink: peak {peak}, median {sorted(seen)[len(seen) // 2]}")
        assert stats.sent == total
        assert peak <= 30, f"{peak} sends in flight, over the job's in_flight of 30"
        # Kept near full: the loops overlap one another's claims and writes (one slice is 10).
        assert sorted(seen)[len(seen) // 2] >= 15
        assert await states(rt) == {"sent": total}
        assert set(delivered(sink).values()) == {1}


async def test_a_waiting_slice_wakes_when_another_slices_sends_return() -> None:
    window = dsp.Window()
    first: asyncio.Future[list[base.SendResult]] = asyncio.get_running_loop().create_future()
    window.take(8)
    window.give_when_done(first, 8)
    assert window.fits(2, 10)
    assert not window.fits(3, 10)
    room = window.room()
    assert not room.done()
    first.set_result([])
    await asyncio.sleep(0)  # the done callback runs on the loop
    assert room.done()
    assert window.used == 0
    assert window.fits(50, 10), "an empty window takes any chunk: a limit under one chunk still sends"
    cancelled: asyncio.Future[list[base.SendResult]] = asyncio.get_running_loop().create_future()
    window.take(5)
    window.give_when_done(cancelled, 5)
    cancelled.cancel()
    await asyncio.sleep(0)
    assert window.used == 0, "cancelled sends give their room back"

"""Drain (issue 14, fault 2): SIGTERM aborted send jobs mid-slice (their budget was checked only
between 500-row slices), leaving 696-1,632 rows `claimed` to be reconciled and, under
`uncertain = resend`, sent twice. Now a send job honours `runtime.draining` between chunks: it
finishes the chunk in flight, writes it, gives its unstarted claims back and returns at once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from deliverykit import (
    CHANNEL_ID,
    TENANT,
    add_campaign,
    add_tenant,
    assert_each_delivered_once,
    delivered,
    heartbeats,
    register_worker,
    runtime,
    send_until_all_sent,
    states,
    wait_for,
)

from optibridge.delivery.tasks import run_send
from optibridge.sinks.http_sink import HttpSink

TOTAL = 3000


async def test_draining_send_job_returns_promptly_with_nothing_claimed_and_nothing_sent_twice(
    db_url: str, test_secret_key: str, tmp_path: Path
) -> None:
    async with HttpSink() as sink, runtime(db_url, test_secret_key, tmp_path / "data") as rt:
        # 400/s: the campaign takes ~8 s; slices of 4 chunks of 40.
        await add_tenant(rt, sink, chunk=40, claim_chunks=4, rate_per_s=400)
        await add_campaign(rt, 1, TOTAL)
        me = await register_worker(rt)
        async with heartbeats(rt, me):
            job = asyncio.create_task(run_send(rt, TENANT, CHANNEL_ID, me, budget_s=120))

            async def some_sent() -> bool:
                return len(delivered(sink)) >= 500

            await wait_for(some_sent, 30, "sending under way")
            asked = time.monotonic()
            rt.draining.set()
            stats = await asyncio.wait_for(job, 10)
            took = time.monotonic() - asked
            print(f"drain: the send job returned {took:.3f} s after the drain was asked")
            assert took < 1.0, f"the job took {took:.2f} s to return after the drain was asked"

            left = await states(rt)
            assert left.get("claimed", 0) == 0, left
            assert left.get("sent", 0) == len(delivered(sink)) < TOTAL, (left, len(delivered(sink)))
            assert left["pending"] == TOTAL - left["sent"]
            # Unstarted claims went back to `pending` (nothing is left claimed, above); how many
            # depends on where in its slice the job was: none when the drain came as the last chunk
            # of every running slice was already out (seen once in CI), so it is not asserted.
            assert stats.returned <= stats.claimed

            # The next job (here: after the drain, as the next process would) sends the rest.
            rt.draining.clear()
            await send_until_all_sent(rt, me, TOTAL, jobs=10, budget_s=60)
        assert await states(rt) == {"sent": TOTAL}
        assert_each_delivered_once(sink, TOTAL)


async def test_time_budget_is_checked_between_chunks_not_only_between_slices(
    db_url: str, test_secret_key: str, tmp_path: Path
) -> None:
    async with HttpSink() as sink, runtime(db_url, test_secret_key, tmp_path / "data") as rt:
        # One slice of 20 chunks of 20 at 100/s takes 4 s; the budget is 1 s.
        await add_tenant(rt, sink, chunk=20, claim_chunks=20, rate_per_s=100)
        await add_campaign(rt, 1, 400)
        me = await register_worker(rt)
        async with heartbeats(rt, me):
            started = time.monotonic()
            await run_send(rt, TENANT, CHANNEL_ID, me, budget_s=1.0)
            took = time.monotonic() - started
        assert took < 2.0, f"{took:.2f} s for a 1 s budget"
        left = await states(rt)
        assert left.get("claimed", 0) == 0, left
        assert 0 < left["sent"] < 400, left


# Slow tier: these measure concurrency and timing (lanes, joins, drains, outages) and run there
# alone; beside three other test workers on two cores they failed now and then.
pytestmark = pytest.mark.slow

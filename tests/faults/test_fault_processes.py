"""Processes dying or asked to stop mid-campaign: SIGKILL of a worker, of serve, SIGTERM (drain),
and a worker killed while send, ingest and report jobs all run."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from conftest import MakeCluster
from faultkit import Options, TcpPostgres, assert_no_duplicates_or_losses, wait_for

pytestmark = pytest.mark.slow

TOTAL = 3000


@pytest.mark.parametrize("lookup", [True, False], ids=["lookup", "no-lookup"])
async def test_sigkill_worker_mid_send(shared_pg: TcpPostgres, make_cluster: MakeCluster, lookup: bool) -> None:
    """kill -9 of the worker three times while it sends; a new worker takes over each time."""
    opt = Options(lookup=lookup, rate_per_s=150, chunk=16, lanes=1)
    c = await make_cluster(shared_pg, opt)
    started = time.monotonic()
    cid = await c.campaign(TOTAL)
    await wait_for(lambda: c.states().get("sent", 0) >= 200, 90, "sending to start", detail=c.tail)
    rng = random.Random(14)
    kills = 3
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        c.workers[-1].kill()
        c.start_worker()
    await c.wait_final(TOTAL, 240)
    await c.wait_jobs_settled(90)
    fig = await c.figures(f"sigkill worker x{kills} mid-send ({'lookup' if lookup else 'no lookup'})",
                          TOTAL, cid, started, kills=kills)  # fmt: skip
    # Without a lookup, a killed worker's chunk in flight is sent again (at least once).
    assert_no_duplicates_or_losses(fig, duplicate_bound=0 if lookup else kills * opt.chunk * opt.lanes)

"""PostgreSQL crashes (`pg_ctl stop -m immediate`) mid-send and comes back 5 s later on the same
port and data: every process logs the outage once and its end once, with no traceback; nothing is
lost, duplicated, left claimed or left `failed`."""

from __future__ import annotations

import asyncio
import time

import pytest
from faultkit import Options, TcpPostgres, assert_no_duplicates_or_losses, wait_for

from conftest import MakeCluster

pytestmark = pytest.mark.slow

TOTAL = 2000
DOWN_S = 5.0


# Without a lookup too, nothing is sent twice: the results written before the crash were
# committed (synchronous_commit on, as in production; faultkit.TcpPostgres), those that could not
# be written were journaled and written late to rows still claimed by the pre-restart worker id.
@pytest.mark.parametrize("lookup", [True, False], ids=["lookup", "no-lookup"])
async def test_postgres_crash_and_restart_mid_send(
    own_pg: TcpPostgres, make_cluster: MakeCluster, lookup: bool
) -> None:
    opt = Options(lookup=lookup, rate_per_s=150, chunk=16, lanes=2, workers=1)
    c = await make_cluster(own_pg, opt)
    started = time.monotonic()
    cid = await c.campaign(TOTAL)
    await wait_for(lambda: c.states().get("sent", 0) >= 300, 90, "sending to start", detail=c.tail)
    await asyncio.to_thread(own_pg.crash)
    await asyncio.sleep(DOWN_S)
    await asyncio.to_thread(own_pg.boot)
    await c.wait_final(TOTAL, 240)
    await c.wait_jobs_settled(90)
    await asyncio.sleep(3)  # the watchers' next probe: the "reachable again" lines
    warnings = c.log_lines('"event": "database unreachable, retrying"')
    recovered = c.log_lines('"event": "database reachable again"')
    pool_noise = c.log_lines("psycopg.pool")
    fig = await c.figures(
        f"PostgreSQL crash (-m immediate) + restart after {DOWN_S:g} s mid-send "
        f"({'lookup' if lookup else 'no lookup'})",
        TOTAL, cid, started, outage_warnings=len(warnings), recovered_lines=len(recovered),
        pool_lines=len(pool_noise), error_lines=len(c.log_lines('"level": "error"')),
    )  # fmt: skip
    assert_no_duplicates_or_losses(fig, duplicate_bound=0)
    assert fig.tracebacks == 0, "\n".join(c.tracebacks()[:5])
    # serve and the worker: one warning each when they notice, one info each when it is back.
    per_process = {line.split(":", 1)[0] for line in warnings}
    assert len(warnings) == len(per_process) <= 2, warnings
    assert {line.split(":", 1)[0] for line in recovered} == per_process, (warnings, recovered)
    assert not pool_noise, pool_noise[:5]
    errors = c.log_lines('"level": "error"')
    assert not errors, errors[:5]

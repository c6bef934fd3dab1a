"""The e-mail provider misbehaves mid-send: it refuses (SMTP 421 for a while), or it accepts mails
and the answer never arrives (the connection drops after DATA: kept by the provider, unknown to
the sender)."""

from __future__ import annotations

import time

import pytest
from faultkit import Options, TcpPostgres, assert_no_duplicates_or_losses, wait_for

from conftest import MakeCluster

pytestmark = pytest.mark.slow

TOTAL = 2000


async def test_smtp_refusing_for_a_while(shared_pg: TcpPostgres, make_cluster: MakeCluster) -> None:
    """421 at MAIL FROM for 5 s: every message is retried after the window and sent once."""
    c = await make_cluster(shared_pg, Options(lookup=True, rate_per_s=200))
    started = time.monotonic()
    cid = await c.campaign(TOTAL)
    await wait_for(lambda: c.states().get("sent", 0) >= 200, 90, "sending to start", detail=c.tail)
    await c.sink_faults(throttle={"code": 421, "seconds": 5})
    await c.wait_final(TOTAL, 240)
    await c.wait_jobs_settled(60)
    stats = await c.sink_stats()
    fig = await c.figures("SMTP 421 for 5 s mid-send", TOTAL, cid, started, rejections=stats["rejections"])
    assert stats["rejections"] > 0, "the fault never applied"
    assert_no_duplicates_or_losses(fig, duplicate_bound=0)
    assert fig.tracebacks == 0, "\n".join(c.tracebacks()[:5])


@pytest.mark.parametrize("lookup", [True, False], ids=["lookup", "no-lookup"])
async def test_smtp_accepts_but_the_answer_is_lost(
    shared_pg: TcpPostgres, make_cluster: MakeCluster, lookup: bool
) -> None:
    """For 3 s the sink keeps each mail and drops the connection instead of answering 250.

    With a delivery lookup the dispatcher learns those were delivered: no duplicate. Without one
    an unanswered mail may be sent again (at least once): at most one duplicate per lost answer.
    """
    c = await make_cluster(shared_pg, Options(lookup=lookup, rate_per_s=200))
    started = time.monotonic()
    cid = await c.campaign(TOTAL)
    await wait_for(lambda: c.states().get("sent", 0) >= 200, 90, "sending to start", detail=c.tail)
    await c.sink_faults(drop={"at": "ACCEPTED", "seconds": 3})
    await c.wait_final(TOTAL, 240)
    await c.wait_jobs_settled(60)
    fig = await c.figures(
        f"SMTP answer lost after accepting, 3 s ({'lookup' if lookup else 'no lookup'})", TOTAL, cid, started
    )
    assert fig.unanswered > 0, "the fault never applied"
    assert_no_duplicates_or_losses(fig, duplicate_bound=0 if lookup else fig.unanswered)
    assert fig.tracebacks == 0, "\n".join(c.tracebacks()[:5])

"""Processes dying or asked to stop mid-campaign: SIGKILL of a worker, of serve, SIGTERM (drain),
and a worker killed while send, ingest and report jobs all run."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from faultkit import Options, TcpPostgres, assert_no_duplicates_or_losses, wait_for

from conftest import MakeCluster

pytestmark = pytest.mark.slow

TOTAL = 2000


@pytest.mark.parametrize("lookup", [True, False], ids=["lookup", "no-lookup"])
async def test_sigkill_worker_mid_send(
    shared_pg: TcpPostgres, make_cluster: MakeCluster, lookup: bool
) -> None:
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


async def test_sigkill_serve_mid_ingest(shared_pg: TcpPostgres, make_cluster: MakeCluster) -> None:
    """kill -9 of `serve` (HTTP app and its in-process worker) while it ingests; serve restarts."""
    opt = Options(lookup=True, serve_workers=1, workers=0, emulator_page_size=100, rate_per_s=300)
    c = await make_cluster(shared_pg, opt)
    assert c.control is not None
    # Pages slow enough that the kill lands mid-ingest: 30 pages of 100, 150 ms each.
    await c.control.add_fault(function="GetCustomerSendDetailsByChannel", latency_ms=150)
    started = time.monotonic()
    cid = await c.campaign(TOTAL)

    def mid_ingest() -> bool:
        n = sum(c.states().values())
        return 300 <= n < TOTAL

    await wait_for(mid_ingest, 90, "ingest under way", interval=0.1, detail=c.tail)
    ingested_at_kill = sum(c.states().values())
    assert c.serve is not None
    c.serve.kill()
    c.start_serve()
    await c.wait_healthy()
    await c.control.clear_faults()
    await c.wait_final(TOTAL, 240)
    await c.wait_jobs_settled(90)
    fig = await c.figures(
        "sigkill serve mid-ingest (lookup)", TOTAL, cid, started, ingested_at_kill=ingested_at_kill
    )
    assert_no_duplicates_or_losses(fig, duplicate_bound=0)


@pytest.mark.parametrize("lookup", [True, False], ids=["lookup", "no-lookup"])
async def test_sigterm_three_times_mid_campaign_drains(
    shared_pg: TcpPostgres, make_cluster: MakeCluster, lookup: bool
) -> None:
    """SIGTERM of the worker three times while it sends: each stop drains (the send job finishes its
    chunk, hands back its claims and ends) well within shutdown_timeout_s; nothing is aborted,
    duplicated or lost, and nothing is logged as a traceback."""
    opt = Options(lookup=lookup, rate_per_s=100, chunk=16, lanes=1, shutdown_timeout_s=10)
    c = await make_cluster(shared_pg, opt)
    started = time.monotonic()
    cid = await c.campaign(TOTAL)
    await wait_for(lambda: c.states().get("sent", 0) >= 200, 90, "sending to start", detail=c.tail)
    rng = random.Random(15)
    stops: list[float] = []
    for _ in range(3):
        await c.worker_ready(c.workers[-1])
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        # The stop is timed from SIGTERM to exit; procrastinate aborts what runs past the timeout.
        stops.append(round(await asyncio.to_thread(c.workers[-1].terminate, opt.shutdown_timeout_s + 10), 2))
        c.start_worker()
    await c.wait_final(TOTAL, 240)
    await c.wait_jobs_settled(30)
    fig = await c.figures(f"SIGTERM worker x3 mid-campaign ({'lookup' if lookup else 'no lookup'})",
                          TOTAL, cid, started, stop_seconds=stops)  # fmt: skip
    assert_no_duplicates_or_losses(fig, duplicate_bound=0)
    assert fig.jobs_with("aborted") == 0, f"jobs aborted by the stop: {fig.jobs}"
    assert fig.tracebacks == 0, "\n".join(c.tracebacks()[:5])
    assert len(c.log_lines("worker drained")) == 3
    # Draining is quick: a chunk at 150/s is 0.1 s; the rest is closing the pool and exiting.
    assert max(stops) < opt.shutdown_timeout_s, f"a stop waited for the timeout: {stops}"


async def test_worker_killed_with_send_ingest_and_report_jobs_running(
    shared_pg: TcpPostgres, make_cluster: MakeCluster
) -> None:
    """kill -9 of the only worker while a send job, an ingest job and a reporting tick all run:
    every one of them is re-queued within 60 s (the stalled-job re-queuer) and completes; no
    `failed` job row and no traceback."""
    opt = Options(
        lookup=True, rate_per_s=100, emulator_page_size=100,
        env={"OPTIBRIDGE_REPORTING": '{"tick_cron": "* * * * * */5"}'},
    )  # fmt: skip
    c = await make_cluster(shared_pg, opt)
    assert c.control is not None
    started = time.monotonic()
    # A: small, finishes first, so its first report push is due; B: sends a while; C: ingests slowly.
    small = await c.campaign(200)
    await c.wait_final(200, 60)
    await c.control.add_fault(function="UpdateCampaignMetrics", latency_ms=8000, times=2)
    big = await c.campaign(TOTAL)
    await wait_for(lambda: c.states().get("sent", 0) >= 400, 90, "B sending", detail=c.tail)
    await c.control.add_fault(function="GetCustomerSendDetailsByChannel", latency_ms=400)
    slow = await c.campaign(1000)

    def running() -> list[tuple[int, str, int | None]] | None:
        rows = c.doing_jobs()
        kinds = {task for _, task, _ in rows}
        wanted = ("optibridge.delivery.send", "optibridge.intake", "optibridge.reporting.tick")
        return rows if all(any(k.startswith(w) for k in kinds) for w in wanted) else None

    doing = await wait_for(running, 90, "send, ingest and report jobs running together", interval=0.2,
                           detail=lambda: str(c.job_rows()))  # fmt: skip
    c.workers[-1].kill()
    killed_at = time.monotonic()
    c.start_worker()

    def requeued() -> bool:
        # Each job the dead worker held is no longer `doing` under it: re-queued (todo), running
        # again under the new worker, or done (deleted).
        return not c.still_held(doing)

    await wait_for(
        requeued, 60, "the dead worker's jobs re-queued", interval=0.5, detail=lambda: str(c.job_rows())
    )
    requeue_s = round(time.monotonic() - killed_at, 1)
    await c.control.clear_faults()
    await c.wait_final(200 + TOTAL + 1000, 240)
    await c.wait_jobs_settled(90)
    fig = await c.figures(
        "worker killed with send, ingest and report jobs running", 200 + TOTAL + 1000,
        [small, big, slow], started, requeued_within_s=requeue_s, jobs_at_kill=[t for _, t, _ in doing],
    )  # fmt: skip
    assert_no_duplicates_or_losses(fig, duplicate_bound=0)
    assert requeue_s <= 60
    assert fig.tracebacks == 0, "\n".join(c.tracebacks()[:5])


async def test_sigterm_serve_with_worker_children_drains(
    shared_pg: TcpPostgres, make_cluster: MakeCluster
) -> None:
    """SIGTERM of `serve --workers 2` mid-campaign: its worker children drain and exit, then serve
    exits, all within shutdown_timeout_s; a new serve finishes the campaign. Nothing aborted."""
    opt = Options(lookup=False, serve_workers=2, workers=0, rate_per_s=150, lanes=2, shutdown_timeout_s=10)
    c = await make_cluster(shared_pg, opt)
    started = time.monotonic()
    cid = await c.campaign(TOTAL)
    await wait_for(lambda: c.states().get("sent", 0) >= 300, 90, "sending to start", detail=c.tail)
    assert c.serve is not None
    stop_s = round(await asyncio.to_thread(c.serve.terminate, opt.shutdown_timeout_s + 10), 2)
    c.start_serve()
    await c.wait_healthy()
    await c.wait_final(TOTAL, 240)
    await c.wait_jobs_settled(30)
    fig = await c.figures(
        "SIGTERM serve --workers 2 mid-campaign (no lookup)", TOTAL, cid, started, stop_seconds=stop_s
    )
    assert_no_duplicates_or_losses(fig, duplicate_bound=0)
    assert fig.jobs_with("aborted") == 0, f"jobs aborted by the stop: {fig.jobs}"
    assert fig.tracebacks == 0, "\n".join(c.tracebacks()[:5])
    assert len(c.log_lines('"event": "worker drained"')) >= 2
    assert stop_s < opt.shutdown_timeout_s, f"the stop waited for the timeout: {stop_s} s"

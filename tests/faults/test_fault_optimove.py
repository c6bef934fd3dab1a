"""Optimove misbehaves during ingest and during reporting: 500s, 429 storms, expired access (login
tokens, and API keys refused for a few seconds). The campaign still arrives whole, once, and its
totals reach Optimove."""

from __future__ import annotations

import time

import pytest
from faultkit import TENANT, Cluster, Options, TcpPostgres, assert_no_duplicates_or_losses, wait_for

from conftest import MakeCluster

pytestmark = pytest.mark.slow

TOTAL = 2000
# Ingest in 20 pages of 100, 100 ms each: the faults land while it runs.
SLOW_INGEST = Options(lookup=True, rate_per_s=400, emulator_page_size=100)


async def _mid_ingest(c: Cluster, cid_total: int) -> None:
    await wait_for(lambda: 200 <= sum(c.states().values()) < cid_total, 60, "ingest under way", interval=0.1)


async def _slow_pages(c: Cluster) -> None:
    assert c.control is not None
    await c.control.add_fault(function="GetCustomerSendDetailsByChannel", latency_ms=100)


async def test_optimove_500s_during_ingest_and_reporting(
    shared_pg: TcpPostgres, make_cluster: MakeCluster
) -> None:
    c = await make_cluster(shared_pg, SLOW_INGEST)
    assert c.control is not None
    await _slow_pages(c)
    started = time.monotonic()
    cid = await c.campaign(TOTAL)
    await _mid_ingest(c, TOTAL)
    # A third of every call fails with 500 from now on, reporting included.
    await c.control.add_fault(function="*", status_codes=[500], error_rate=0.3, duration_s=120)
    await c.wait_final(TOTAL, 240)
    await c.wait_jobs_settled(60)
    fig = await c.figures("Optimove 500 on 30% of calls during ingest and reporting", TOTAL, cid, started)
    fired = sum(f["fired"] for f in await c.control.request("GET", "/faults") if f["status_codes"] == [500])
    fig.notes["injected_500s"] = fired
    assert fired > 0
    assert_no_duplicates_or_losses(fig, duplicate_bound=0)
    assert fig.tracebacks == 0, "\n".join(c.tracebacks()[:5])


async def test_optimove_429_storms_during_ingest_and_reporting(
    shared_pg: TcpPostgres, make_cluster: MakeCluster
) -> None:
    c = await make_cluster(shared_pg, SLOW_INGEST)
    assert c.control is not None
    await _slow_pages(c)
    started = time.monotonic()
    cid = await c.campaign(TOTAL)
    await _mid_ingest(c, TOTAL)
    await c.control.rate_limit_storm(seconds=5, retry_after_s=1)
    await c.wait_final(TOTAL, 240)
    await c.wait_jobs_settled(60)
    await c.control.rate_limit_storm(seconds=4, retry_after_s=1)  # and while we report
    fig = await c.figures("Optimove 429 storms (5 s in ingest, 4 s at reporting)", TOTAL, cid, started)
    assert_no_duplicates_or_losses(fig, duplicate_bound=0)
    assert fig.tracebacks == 0, "\n".join(c.tracebacks()[:5])


@pytest.mark.parametrize("auth", ["login", "key"])
async def test_optimove_access_expires_during_ingest_and_reporting(
    shared_pg: TcpPostgres, make_cluster: MakeCluster, auth: str
) -> None:
    """Login tokens expire (403 Authorization-Token Expired: log in again); API keys are refused
    (401) for 3 s, as when a key is revoked and restored."""
    opt = Options(
        lookup=True, rate_per_s=400, emulator_page_size=100, auth="login" if auth == "login" else "key"
    )
    c = await make_cluster(shared_pg, opt)
    assert c.control is not None
    await _slow_pages(c)
    started = time.monotonic()
    cid = await c.campaign(TOTAL)
    await _mid_ingest(c, TOTAL)
    await c.control.expire_tokens(TENANT, api_key_seconds=3)
    await c.wait_final(TOTAL, 240)
    await c.wait_jobs_settled(60)
    await c.control.expire_tokens(TENANT, api_key_seconds=3)  # and just before we report
    fig = await c.figures(
        f"Optimove access expires during ingest and reporting ({auth} auth)", TOTAL, cid, started
    )
    assert_no_duplicates_or_losses(fig, duplicate_bound=0)
    assert fig.tracebacks == 0, "\n".join(c.tracebacks()[:5])

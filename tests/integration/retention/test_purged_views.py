"""What a purged campaign still shows: `reports show` (campaign_overview), the admin API's campaign
detail and the dashboard's campaign page, over real HTTP, count from the totals the purge kept
(not zero), and say when its rows were purged; the stage word stays `closed`."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from retentionkit import (
    Pool,
    add_tenant,
    customer_details,
    engage,
    ingest_campaign,
    mark_sent,
    report_cycle,
)

from optibridge.reporting.show import campaign_overview, render_overview
from optibridge.retention.policy import RetentionPolicy
from optibridge.retention.purge import run_retention
from optibridge.web import admin, auth

from inprocess import running_service

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CAMPAIGN = 4100
N = 400
# Counted from the kept totals exactly as from the rows (the test's data has no click without a
# human open; `opened` is compared apart: a machine-flagged open before a human click is an open
# for reporting, not in the totals' first-open count).
EXACT = ("sent", "delivered", "clicked", "unsubscribed", "dropped", "spam", "bounced")


@pytest.fixture
async def served(db_url: str, test_secret_key: str) -> AsyncIterator[tuple[str, str, Any]]:
    async with running_service(
        db_url, test_secret_key, worker=False, configure_app=lambda app: admin.install(app, app.state.runtime)
    ) as svc:
        async with svc.runtime.pool.connection() as conn:
            await add_tenant(conn, "acme")
            _, key = await auth.create_key(conn, "acme-ops", "acme")
        yield svc.base_url, key, svc.runtime.pool


async def _seed_and_count(pool: Pool) -> dict[int, dict[str, int]]:
    async with pool.connection() as conn:
        customers = [f"P{n:04d}" for n in range(N)]
        await ingest_campaign(conn, CAMPAIGN, customer_details(customers, T0), T0)
        await mark_sent(conn, CAMPAIGN, T0 + timedelta(minutes=5))
        await engage(conn, CAMPAIGN, T0, random.Random(7))
        await report_cycle(conn, T0 + timedelta(hours=1))
        await report_cycle(conn, T0 + timedelta(days=8))  # the final push is done
        before = await campaign_overview(conn, CAMPAIGN, "acme", now=T0 + timedelta(days=8))
    assert [b["purged_at"] for b in before] == [None]
    return {t["template_id"]: t["counted"] for t in before[0]["templates"]}


async def _purge(pool: Pool) -> datetime:
    at = T0 + timedelta(days=12)
    report = await run_retention(pool, None, at, RetentionPolicy())
    assert report.messages_deleted == N
    return at


def _check_counts(counted: dict[int, dict[str, int]], before: dict[int, dict[str, int]]) -> None:
    assert set(counted) == set(before) == {1, 2}
    for t, was in before.items():
        assert was["sent"] == N // 2
        assert {m: counted[t][m] for m in EXACT} == {m: was[m] for m in EXACT}, t
        # Opens: the human ones exactly; the machine-flagged opens a human click followed, not.
        assert was["opened"] - was["clicked"] <= counted[t]["opened"] <= was["opened"], t
        assert counted[t]["opened"] > 0


async def test_reports_show_counts_a_purged_campaign_from_its_totals(pool: Pool) -> None:
    async with pool.connection() as conn:
        await add_tenant(conn)
    before = await _seed_and_count(pool)
    purged_at = await _purge(pool)
    async with pool.connection() as conn:
        after = await campaign_overview(conn, CAMPAIGN, "acme", now=purged_at)
        rows = await (await conn.execute("SELECT count(*) AS n FROM messages")).fetchone()
    assert rows == {"n": 0}
    assert after[0]["purged_at"] == purged_at
    _check_counts({t["template_id"]: t["counted"] for t in after[0]["templates"]}, before)
    assert after[0]["suspect_hits"] > 0  # machine opens, from the event totals
    assert "rows purged 2026-03-14" in render_overview(after)


async def test_api_detail_and_dashboard_page_of_a_purged_campaign(served: tuple[str, str, Any]) -> None:
    base, key, pool = served
    before = await _seed_and_count(pool)
    purged_at = await _purge(pool)
    auth_header = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        url = f"{base}/api/v1/tenants/acme/channels/email/campaigns/{CAMPAIGN}"
        async with s.get(url, headers=auth_header) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        assert datetime.fromisoformat(body["purged_at"]) == purged_at
        assert body["progress"]["total"] == N
        assert body["progress"]["counts"]["sent"] == N
        assert body["progress"]["percent_sent"] == 100.0
        assert {t["template_id"]: t["progress"]["sent"] for t in body["templates"]} == {1: N // 2, 2: N // 2}

        async with s.get(f"{base}/api/v1/tenants/acme/campaigns", headers=auth_header) as resp:
            assert resp.status == 200
            listed = (await resp.json())["items"]
        assert [(c["campaign_id"], c["progress"]["sent"], c["progress"]["total"]) for c in listed] == [
            (CAMPAIGN, N, N)
        ]

        # The dashboard page, logged in with the tenant's key.
        async with s.get(base + "/ui/login") as resp:
            token = re.search(r'name="login_token" value="([^"]+)"', await resp.text())
        assert token is not None
        form = {"api_key": key, "login_token": token.group(1), "next": "/ui/campaigns"}
        async with s.post(base + "/ui/login", data=form, allow_redirects=False) as resp:
            assert resp.status == 303
        async with s.get(f"{base}/ui/campaigns/rows", headers={"X-Requested-With": "fetch"}) as resp:
            assert resp.status == 200
            rows_html = await resp.text()
        assert f'class="num sent-total">{N} / {N}<' in rows_html
        async with s.get(f"{base}/ui/campaigns/acme/email/{CAMPAIGN}") as resp:
            assert resp.status == 200
            page = await resp.text()
    assert re.search(r'id="campaign-status">closed<', page)
    assert "Message rows purged on 2026-03-14" in page
    assert re.search(rf'id="sent-count">{N}<', page)
    assert "nothing was sent" not in page
    # The funnel: "counted" per template from the totals, not zero.
    sent_cells = re.findall(r'data-metric="sent" data-counted="(\d+)"', page)
    assert sent_cells == [str(before[1]["sent"]), str(before[2]["sent"])]

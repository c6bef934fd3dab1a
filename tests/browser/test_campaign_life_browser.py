"""A campaign's whole life on the dashboard, in Debian's chromium, with an injected clock: notified,
ingesting, waiting, sending, sent, reporting (day N of 7), closed. At each stage the page's status
word; once sent, the funnel beside the database's and the emulator's numbers, the push history, a
"push now" from the page, and the charts (one bar per minute of sending, opens and clicks per hour).

Intake and the dispatcher are played by writing rows as they write them (the campaign row, then
messages pending at their send times, then flipped to sent/failed with `sent_at`); the rest is the
real thing: the recipients' opens, clicks and unsubscribes through the tracking endpoints, bounces
through the signed receipt endpoint, the report tick (`run_tick`) and the on-demand push against the
Optimove emulator. With OPTIBRIDGE_SCREENSHOTS=1 the screenshots for docs/dashboard.md are written
to docs/img/.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from browserkit import Browser
from reporting_helpers import API_KEY, EMAIL, T0, TENANT, Audience

from optibridge.core.config import Settings
from optibridge.emulator import EmulatorConfig
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.reporting.tasks import run_tick
from optibridge.testing.feedback import (
    FeedbackStack,
    MutableClock,
    SeededMessage,
    add_channel,
    add_tenant,
    feedback_stack,
)
from optibridge.web import admin, auth

from inprocess import Service, running_service

CAMPAIGN = 31
CUSTOMERS = 60  # C1..C60, templates 1 and 2 alternating; due in three batches of 20 a minute apart
FUNNEL = ("sent", "delivered", "opened", "clicked", "unsubscribed", "bounced", "dropped", "spam")
METRIC_IDS = {
    "sent": 0,
    "delivered": 1,
    "opened": 2,
    "clicked": 3,
    "unsubscribed": 4,
    "dropped": 5,
    "spam": 6,
}
METRIC_IDS["bounced"] = 9


@dataclass
class Life:
    svc: Service
    stack: FeedbackStack
    emu: RunningEmulator
    clock: MutableClock
    admin_key: str
    acme_key: str

    @property
    def page_url(self) -> str:
        return f"{self.svc.base_url}/ui/campaigns/{TENANT}/email/{CAMPAIGN}"

    async def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        async with self.svc.runtime.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return list(await cur.fetchall()) if cur.description else []


@pytest.fixture
async def life(db_url: str, test_secret_key: str, tmp_path: Path) -> AsyncIterator[Life]:
    clock = MutableClock(T0)

    def mount(app: Any) -> None:
        admin.install(app, app.state.runtime)
        app.state.dashboard_clock = clock  # the pages read their "now" from it

    settings = Settings(
        database_url=db_url,
        secret_key=test_secret_key,
        data_dir=tmp_path,
        optimove_rate_limit=0,
        allow_private_destinations=["127.0.0.0/8", "::1/128"],
    )
    async with (
        running_emulator(EmulatorConfig(rate_limit_enabled=False)) as emu,
        running_service(db_url, test_secret_key, worker=False, configure_app=mount) as svc,
        feedback_stack(settings, clock) as stack,
    ):
        await emu.control.create_tenant(TENANT, api_key=API_KEY)
        async with svc.runtime.pool.connection() as conn:
            await add_tenant(conn, svc.runtime.box, TENANT, emu.base_url, API_KEY)
            await add_channel(conn, TENANT, "email", "email", EMAIL)
            await add_tenant(conn, svc.runtime.box, "other", emu.base_url, "k2")
            _, admin_key = await auth.create_key(conn, "ops", None)
            _, acme_key = await auth.create_key(conn, "t1-ops", TENANT)
        yield Life(svc, stack, emu, clock, admin_key, acme_key)


async def login(b: Browser, life: Life, key: str) -> None:
    await b.page.goto(life.svc.base_url + "/ui/campaigns")
    await b.page.fill("#api_key", key)
    await b.page.click("#login-submit")
    await b.page.wait_for_selector("h1:text('Campaigns')")


async def stage_is(b: Browser, word: str, *, reload: bool = True) -> str:
    """The status word on the page becomes `word` (by the 2 s refresh, or a reload); returns the
    detail beside it."""
    if reload:
        await b.page.goto(b.page.url.split("?")[0])
    await b.page.wait_for_function(
        "w => document.querySelector('#campaign-status')?.textContent === w", arg=word, timeout=10_000
    )
    return str(await b.page.inner_text("#campaign-stage-detail"))


async def buttons(b: Browser) -> set[str]:
    found = set()
    for bid in ("pause", "resume", "cancel", "push-now"):
        if await b.page.locator(f"#{bid}").count():
            found.add(bid)
    return found


async def page_funnel(b: Browser) -> dict[tuple[int, str], tuple[int, int | None, bool]]:
    """(template, metric) -> (counted, reported, marked as different) as the page shows them."""
    out = {}
    for row in await b.page.locator("#funnel tbody tr[data-template]").all():
        template = int(await row.get_attribute("data-template") or "0")
        for cell in await row.locator("td[data-metric]").all():
            metric = await cell.get_attribute("data-metric") or ""
            counted = int((await cell.locator(".counted").inner_text()).replace(",", ""))
            shown = (await cell.locator(".reported").inner_text()).replace(",", "")
            marked = "differs" in (await cell.get_attribute("class") or "")
            out[(template, metric)] = (counted, None if shown == "—" else int(shown), marked)
    return out


async def db_funnel(life: Life) -> dict[tuple[int, str], int]:
    """The database's own numbers, by an independent query per metric (the definitions of
    docs/reporting.md for an e-mail channel whose delivery comes from 'sent')."""
    rows = await life.sql(
        """WITH ev AS (
             SELECT message_id, bool_or(kind IN ('opened', 'clicked') AND NOT suspect) AS opened,
                    bool_or(kind = 'clicked' AND NOT suspect) AS clicked,
                    bool_or(kind = 'unsubscribed') AS unsubscribed, bool_or(kind = 'bounced') AS bounced,
                    bool_or(kind = 'complained') AS spam
             FROM message_events WHERE campaign_id = %s GROUP BY 1)
           SELECT m.template_id,
                  count(*) FILTER (WHERE m.state = 'sent') AS sent,
                  count(*) FILTER (WHERE (m.state = 'sent' AND NOT coalesce(ev.bounced, false))
                                   OR coalesce(ev.opened, false)) AS delivered,
                  count(*) FILTER (WHERE ev.opened) AS opened, count(*) FILTER (WHERE ev.clicked) AS clicked,
                  count(*) FILTER (WHERE ev.unsubscribed) AS unsubscribed,
                  count(*) FILTER (WHERE ev.bounced) AS bounced,
                  count(*) FILTER (WHERE m.state IN ('failed', 'expired', 'suppressed')
                                   AND NOT coalesce(ev.bounced, false)) AS dropped,
                  count(*) FILTER (WHERE ev.spam) AS spam
           FROM messages m LEFT JOIN ev ON ev.message_id = m.id
           WHERE m.campaign_id = %s GROUP BY 1""",
        CAMPAIGN,
        CAMPAIGN,
    )
    return {(int(r["template_id"]), name): int(r[name]) for r in rows for name in FUNNEL}


async def emulator_funnel(life: Life) -> dict[tuple[int, str], int]:
    names = {v: k for k, v in METRIC_IDS.items()}
    return {
        (int(m["template_id"]), names[int(m["metric_id"])]): int(m["value"])
        for m in await life.emu.control.metrics(TENANT)
        if m["campaign_id"] == CAMPAIGN and m["channel_id"] == EMAIL
    }


async def send_batch(life: Life, customers: range, sent_at: datetime, state: str = "sent") -> None:
    await life.sql(
        "UPDATE messages SET state = %s, sent_at = CASE WHEN %s = 'sent' THEN %s END, updated_at = %s, "
        "reason = CASE WHEN %s = 'failed' THEN '550 5.1.1 mailbox unavailable' END, "
        "provider = 'smtp' WHERE campaign_id = %s AND customer_id = ANY(%s)",
        state,
        state,
        sent_at,
        sent_at,
        state,
        CAMPAIGN,
        [f"C{n}" for n in customers],
    )


async def test_a_campaign_walks_from_notification_to_closed_on_the_page(browser: Browser, life: Life) -> None:
    page = browser.page
    clock = life.clock
    # --- notified: the listener stored the notification and made the campaign row --------------
    await life.sql(
        "INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, status, first_event) "
        "VALUES (%s, %s, %s, 'email', 'awaiting', 1)",
        TENANT,
        EMAIL,
        CAMPAIGN,
    )
    await login(browser, life, life.acme_key)
    await page.goto(life.page_url)
    assert await stage_is(browser, "notified") == "waiting for ingest to start"
    assert await buttons(browser) == {"pause", "cancel"}

    # --- ingesting: customers read page by page into pending messages at their send times -------
    await life.sql("UPDATE campaigns SET status = 'ingesting' WHERE campaign_id = %s", CAMPAIGN)
    due = {n: T0 + timedelta(minutes=2 + (n - 1) // 20) for n in range(1, CUSTOMERS + 1)}
    ids = {n: uuid.uuid4() for n in due}
    async with (
        life.svc.runtime.pool.connection() as conn,
        conn.cursor().copy(
            "COPY messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id, scheduled_at, "
            "send_at, address, state) FROM STDIN"
        ) as copy,
    ):
        for n, at in due.items():
            template = 1 if n % 2 else 2
            await copy.write_row(
                (ids[n], TENANT, EMAIL, CAMPAIGN, f"C{n}", template, at, at, f"c{n}@x.test", "pending")
            )
    clock.advance(seconds=20)
    await stage_is(browser, "ingesting", reload=False)  # the 2 s refresh brings it

    # --- waiting: ingest finished, the first send time is ahead ---------------------------------
    await life.sql(
        "UPDATE campaigns SET status = 'ingested', ingested_at = %s, messages = %s WHERE campaign_id = %s",
        clock(),
        CUSTOMERS,
        CAMPAIGN,
    )
    assert await stage_is(browser, "waiting") == "first send at 2024-03-01 12:02 UTC"
    await browser.shot("campaign-waiting")

    # --- sending: 20 at 12:02, 20 at 12:03, then the last 20 a minute late (5 of them fail) -----
    clock.now = T0 + timedelta(minutes=2, seconds=30)
    await send_batch(life, range(1, 21), T0 + timedelta(minutes=2, seconds=5))
    assert await stage_is(browser, "sending") == "40 to go; next send at 2024-03-01 12:03 UTC"
    assert await page.inner_text("#rate") == "0.33"  # 20 in the last minute, not an average since creation
    assert await buttons(browser) == {"pause", "cancel", "push-now"}
    clock.now = T0 + timedelta(minutes=3, seconds=40)
    await send_batch(life, range(21, 41), T0 + timedelta(minutes=3, seconds=10))
    clock.now = T0 + timedelta(minutes=5, seconds=20)
    await send_batch(life, range(41, 56), T0 + timedelta(minutes=5, seconds=10))
    await send_batch(life, range(56, 61), T0 + timedelta(minutes=5, seconds=12), state="failed")
    assert (await stage_is(browser, "sent")).startswith("every message left the queue")
    assert await buttons(browser) == {"push-now"}  # no pause or cancel on a finished campaign
    assert await page.inner_text("#rate") == "0.25"  # the 15 sent at 12:05:10
    assert await page.inner_text("#late-max") == "1m 10s"

    # The sends chart: one bar per minute from the first due/sent minute to the last (12:02..12:05),
    # the bars' numbers the database's sends per minute, the due line one vertex per minute.
    span = await life.sql(
        "SELECT date_trunc('minute', min(least(send_at, coalesce(sent_at, send_at)))) AS a, "
        "date_trunc('minute', max(greatest(send_at, coalesce(sent_at, send_at)))) AS b "
        "FROM messages WHERE campaign_id = %s",
        CAMPAIGN,
    )
    minutes = int((span[0]["b"] - span[0]["a"]) / timedelta(minutes=1)) + 1
    assert minutes == 4
    bars = page.locator("#sends-chart rect.sent")
    assert await bars.count() == minutes
    assert await page.get_attribute("#sends-chart", "data-minutes") == str(minutes)
    per_minute = await life.sql(
        "SELECT date_trunc('minute', sent_at) AS m, count(*) AS n FROM messages WHERE campaign_id = %s "
        "AND state = 'sent' GROUP BY 1",
        CAMPAIGN,
    )
    db_sent = {r["m"].isoformat(): int(r["n"]) for r in per_minute}
    shown = {}
    for i in range(minutes):
        bar = bars.nth(i)
        shown[await bar.get_attribute("data-minute")] = int(await bar.get_attribute("data-sent") or "0")
    assert (
        {k: v for k, v in shown.items() if v}
        == db_sent
        == {
            (T0 + timedelta(minutes=2)).isoformat(): 20,
            (T0 + timedelta(minutes=3)).isoformat(): 20,
            (T0 + timedelta(minutes=5)).isoformat(): 15,
        }
    )
    points = await page.get_attribute("#sends-chart polyline.due", "points")
    assert points is not None
    assert len(points.split()) == minutes
    # Nothing pushed yet: every counted number is marked as not (yet) at Optimove.
    funnel = await page_funnel(browser)
    assert {k: v[0] for k, v in funnel.items()} == await db_funnel(life)
    assert all(reported is None and marked for _, reported, marked in funnel.values())
    await browser.shot("campaign-sent", doc="campaign-sent")

    # --- reporting: the tick finds the finished campaign and pushes at once ---------------------
    finished = T0 + timedelta(minutes=6)
    clock.now = finished
    tick = await run_tick(life.stack.runtime, finished)
    assert (tick.discovered, len(tick.pushed), tick.failed) == (1, 1, [])
    assert await stage_is(browser, "reporting") == "day 1 of 7, next push at 2024-03-01 16:06 UTC"
    assert await buttons(browser) == {"push-now"}
    funnel = await page_funnel(browser)
    counted = {k: v[0] for k, v in funnel.items()}
    assert counted == await db_funnel(life) == await emulator_funnel(life)
    assert counted[(1, "sent")] + counted[(2, "sent")] == 55
    assert counted[(1, "dropped")] + counted[(2, "dropped")] == 5
    assert not any(marked for _, _, marked in funnel.values())
    first_push = page.locator("#push-history tbody tr")
    assert await first_push.count() == 1
    assert "schedule" in await first_push.inner_text()
    assert "55 delivered, 5 dropped" in await first_push.inner_text()

    # --- recipients act an hour later: the page marks what Optimove does not have yet ------------
    clock.now = T0 + timedelta(hours=1, minutes=10)
    audience = Audience(
        life.stack,
        {n: SeededMessage(ids[n], f"C{n}", 1 if n % 2 else 2, f"c{n}@x.test") for n in range(1, 56)},
    )
    await audience.open(range(1, 21))
    await audience.click([2, 3, 4, 5])
    await audience.unsubscribe([6, 7])
    await audience.report("bounced", [50])
    await audience.settle()
    clock.now = T0 + timedelta(hours=2, minutes=30)
    await audience.open(range(21, 31))
    await audience.click([22])
    await audience.settle()
    await page.reload()
    funnel = await page_funnel(browser)
    assert {k: v[0] for k, v in funnel.items()} == await db_funnel(life)
    marked = {k for k, v in funnel.items() if v[2]}
    assert (1, "opened") in marked
    assert (2, "clicked") in marked
    assert (2, "bounced") in marked
    assert (1, "sent") not in marked
    await browser.shot("campaign-differs", doc="campaign-differs")

    # --- push now from the page: Optimove catches up -------------------------------------------
    await page.click("#push-now")
    assert (await page.inner_text("#outcome")).startswith("pushed: channel 504:")
    funnel = await page_funnel(browser)
    counted = {k: v[0] for k, v in funnel.items()}
    assert counted == await db_funnel(life) == await emulator_funnel(life)
    assert {k: v[1] for k, v in funnel.items()} == counted
    assert not any(v[2] for v in funnel.values())
    assert await page.locator("#push-history tbody tr").count() == 2
    newest = await page.locator("#push-history tbody tr").first.inner_text()
    assert "on demand" in newest
    assert "accepted (200)" in newest
    assert "38 new interaction(s): 30 opened, 5 clicked, 2 unsubscribed, 1 bounced" in newest

    # --- day 3: the opens and clicks chart has one pair of bars per hour since sending finished --
    clock.now = finished + timedelta(days=2, hours=1)
    assert (await stage_is(browser, "reporting")).endswith("(overdue: are the workers running?)")
    # The workers are back, but Optimove refuses the first call: the page says so, with our words.
    await life.emu.control.add_fault(function="*", tenant_id=TENANT, status_codes=[400], times=1)
    assert len((await run_tick(life.stack.runtime, clock.now)).failed) == 1
    detail = await stage_is(browser, "reporting")
    assert "1 failed attempt(s), last: " in detail
    refused = page.locator("#push-history tbody tr").first
    assert "refused" in (await refused.get_attribute("class") or "")
    assert (await refused.inner_text()).split("\t")[1:2] == ["schedule"]
    assert "refused: " in await refused.inner_text()
    clock.advance(minutes=5)  # the retry, 5 minutes later, goes through
    assert len((await run_tick(life.stack.runtime, clock.now)).pushed) == 1
    assert await stage_is(browser, "reporting") == "day 3 of 7, next push at 2024-03-03 16:06 UTC"
    history = page.locator("#push-history tbody tr")
    assert await history.count() == 4  # schedule, on demand, refused, schedule
    assert [await history.nth(i).get_attribute("class") for i in range(4)] == [
        "accepted",
        "refused",
        "accepted",
        "accepted",
    ]
    hours = int((clock.now.replace(minute=0) - finished.replace(minute=0)) / timedelta(hours=1)) + 1
    opened_bars = page.locator("#engagement-chart rect.opened")
    assert await opened_bars.count() == hours
    assert await page.locator("#engagement-chart rect.clicked").count() == hours
    shown_opens = sum([int(await opened_bars.nth(i).get_attribute("data-n") or "0") for i in range(hours)])
    db_opens = await life.sql(
        "SELECT count(*) AS n FROM message_events WHERE campaign_id = %s AND kind = 'opened' AND NOT suspect",
        CAMPAIGN,
    )
    assert shown_opens == int(db_opens[0]["n"]) == 30
    await browser.shot("campaign-reporting", doc="campaign-reporting")
    await page.goto(life.svc.base_url + "/ui/campaigns")
    row = page.locator(f"tr.campaign[data-campaign='{TENANT}/email/{CAMPAIGN}']")
    assert (await row.locator(".status").first.inner_text()) == "reporting"
    await browser.shot("campaigns", doc="campaigns")

    # --- the final push at the end of the window, then closed -----------------------------------
    clock.now = finished + timedelta(days=7)
    final = await run_tick(life.stack.runtime, clock.now)
    assert len(final.pushed) == 1
    await page.goto(life.page_url)
    assert (await stage_is(browser, "closed")).startswith("reporting window over")
    assert await buttons(browser) == set()
    assert await page.is_visible("#no-actions")
    # The push POST follows the same rule as the (absent) button: refused once closed.
    token = await page.get_attribute("input[name=csrf_token]", "value")
    reply = await page.request.post(life.page_url + "/push", form={"csrf_token": token or ""})
    assert reply.status == 409


async def test_pushing_a_campaign_with_nothing_sent_is_refused_and_needs_the_csrf_token(
    browser: Browser, life: Life
) -> None:
    page = browser.page
    await life.sql(
        "INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, status, first_event) "
        "VALUES (%s, %s, %s, 'email', 'awaiting', 1)",
        TENANT,
        EMAIL,
        CAMPAIGN,
    )
    await login(browser, life, life.acme_key)
    await page.goto(life.page_url)
    assert "push-now" not in await buttons(browser)
    no_token = await page.request.post(life.page_url + "/push", form={})
    assert no_token.status == 403
    token = await page.get_attribute("input[name=csrf_token]", "value")
    refused = await page.request.post(life.page_url + "/push", form={"csrf_token": token or ""})
    assert refused.status == 409
    assert "nothing to report" in await refused.text()
    assert await life.emu.control.metrics(TENANT) == []
    assert re.search(r"campaign \d+", await refused.text())
    # A tenant key cannot push another tenant's campaign (refused before anything is looked up).
    other = await page.request.post(
        f"{life.svc.base_url}/ui/campaigns/other/email/{CAMPAIGN}/push", form={"csrf_token": token or ""}
    )
    assert other.status == 403

"""The dashboard in a real browser: login, a campaign's progress moving while its messages are
"sent" (rows flipped from pending to sent in batches, as the dispatcher will), pause and cancel
buttons, the template preview, and tenant confinement. Screenshots go to the test's tmp dir."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from browserkit import Browser

from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec
from optibridge.core.config import TenantConfig
from optibridge.store import tenants
from optibridge.web import admin, auth

from inprocess import Service, running_service

SMTP_PASSWORD = "smtp-secret-0b7d9c"
OPTIMOVE_KEY = "optimove-key-41aa6e"


@dataclass
class Dash:
    svc: Service
    admin_key: str
    acme_key: str

    @property
    def url(self) -> str:
        return self.svc.base_url + "/ui"

    async def sql(self, query: str, *params: Any) -> int:
        async with self.svc.runtime.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return cur.rowcount


@pytest.fixture
async def dash(db_url: str, test_secret_key: str) -> AsyncIterator[Dash]:
    def mount(app: Any) -> None:
        admin.install(app, app.state.runtime)

    async with running_service(db_url, test_secret_key, worker=False, configure_app=mount) as svc:
        rt = svc.runtime
        async with rt.pool.connection() as conn:
            for tid in ("acme", "globex"):
                config = TenantConfig.model_validate(
                    {
                        "id": tid,
                        "api_base_url": "http://127.0.0.1:9",
                        "api_key": OPTIMOVE_KEY,
                        "channels": [
                            {
                                "name": "email",
                                "kind": "email",
                                "channel_id": 504,
                                "provider": {
                                    "type": "smtp",
                                    "host": "smtp.example.com",
                                    "from_address": "news@acme.example",
                                    "username": "acme",
                                    "password": SMTP_PASSWORD,
                                },
                            }
                        ],
                    }
                )
                await tenants.add(conn, rt.box, config, "cli")
            _, admin_key = await auth.create_key(conn, "ops", None)
            _, acme_key = await auth.create_key(conn, "acme-ops", "acme")
            spec = TemplateSpec(
                template_id=7,
                name="Welcome",
                subject="Hello [%FIRST_NAME:friend%]",
                body="<p>Hi {{ FIRST_NAME }}, your code is <b>{{ CODE }}</b></p>",
            )
            await catalog.upsert(conn, rt.job_app, "acme", "email", spec, create=True)
            await conn.execute(
                "INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, status, "
                "first_event) VALUES ('acme', 504, 42, 'email', 'ingested', 1), "
                "('globex', 504, 9, 'email', 'ingested', 1)"
            )
            past = datetime.now(UTC) - timedelta(minutes=1)
            async with conn.cursor().copy(
                "COPY messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id, "
                "scheduled_at, send_at, state) FROM STDIN"
            ) as copy:
                for i in range(100):
                    await copy.write_row(
                        (uuid.uuid4(), "acme", 504, 42, f"c{i:03d}", 7 if i % 2 else 8, past, past, "pending")
                    )
        yield Dash(svc, admin_key, acme_key)


async def login(b: Browser, dash: Dash, key: str) -> None:
    await b.page.goto(dash.url + "/campaigns")
    assert "/ui/login" in b.page.url
    await b.page.fill("#api_key", key)
    await b.page.click("#login-submit")
    await b.page.wait_for_selector("h1:text('Campaigns')")


async def test_login_refuses_a_bad_key_and_sets_a_strict_httponly_session_cookie(
    browser: Browser, dash: Dash
) -> None:
    page = browser.page
    await page.goto(dash.url + "/campaigns")
    assert "/ui/login" in page.url
    await browser.shot("login", doc="login")
    await page.fill("#api_key", "obk_not-a-real-key-at-all-000000000000000000")
    await page.click("#login-submit")
    assert "not valid" in await page.inner_text("#login-error")
    await page.fill("#api_key", dash.admin_key)
    await page.click("#login-submit")
    await page.wait_for_selector("h1:text('Campaigns')")
    assert page.url.endswith("/ui/campaigns")
    cookies = {c["name"]: c for c in await browser.context.cookies()}
    session = cookies["optibridge_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert dash.admin_key not in session["value"]
    await browser.shot("logged-in")
    await page.click("text=Log out")
    await page.wait_for_selector("#api_key")
    await page.goto(dash.url + "/tenants")
    assert "/ui/login" in page.url


async def test_campaign_progress_moves_on_screen_while_messages_are_sent(
    browser: Browser, dash: Dash
) -> None:
    page = browser.page
    await login(browser, dash, dash.admin_key)
    await page.goto(dash.url + "/campaigns/acme/email/42")
    bar = page.locator("#progress-sent")
    assert await bar.get_attribute("value") == "0"
    assert await page.inner_text("#total-count") == "100"
    first = await browser.shot("progress-0")
    values = []
    for step in range(1, 5):  # four batches of 25, as a dispatcher would send them
        await dash.sql(
            "UPDATE messages SET state = 'sent', sent_at = now() WHERE id IN (SELECT id FROM messages "
            "WHERE campaign_id = 42 AND state = 'pending' ORDER BY customer_id LIMIT 25)"
        )
        expected = str(25 * step)
        await page.wait_for_function(
            "v => document.querySelector('#sent-count')?.textContent === v", arg=expected, timeout=10_000
        )
        values.append(await bar.get_attribute("value"))
        shot = await browser.shot(f"progress-{step}")
        assert shot != first
    assert values == ["25", "50", "75", "100"]
    assert await page.inner_text("#percent-sent") == "100.0"
    assert float((await page.inner_text("#rate")).replace(",", "")) > 0
    assert await page.inner_text("#state-pending") == "0"
    await page.goto(dash.url + "/campaigns")
    row = page.locator("tr.campaign[data-campaign='acme/email/42']")
    assert await row.locator(".sent-total").inner_text() == "100 / 100"
    await browser.shot("campaign-list")


async def test_pause_resume_and_cancel_buttons_change_the_campaign(browser: Browser, dash: Dash) -> None:
    page = browser.page
    await login(browser, dash, dash.acme_key)
    await page.goto(dash.url + "/campaigns/acme/email/42")
    await page.click("#pause")
    assert await page.inner_text("#outcome") == "paused"
    assert await page.is_visible("#campaign-paused")
    await page.click("#resume")
    assert await page.inner_text("#outcome") == "resumed"
    await page.click("#cancel")  # confirms through the dialog handler
    assert await page.inner_text("#outcome") == "canceled; 100 pending message(s) canceled"
    assert await page.inner_text("#campaign-status") == "canceled"
    assert await page.inner_text("#state-canceled") == "100"
    await browser.shot("canceled")
    async with dash.svc.runtime.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT status, paused FROM campaigns WHERE campaign_id = 42")
        ).fetchone()
    assert row == {"status": "canceled", "paused": False}


async def test_template_preview_renders_for_a_sample_customer(browser: Browser, dash: Dash) -> None:
    page = browser.page
    await login(browser, dash, dash.admin_key)
    await page.goto(dash.url + "/templates")
    await page.click("a:text('7')")
    assert await page.input_value("#sample") == "FIRST_NAME=\nCODE="
    await page.fill("#sample", "FIRST_NAME=Ada <script>\nCODE=X42")
    await page.click("#preview-submit")
    assert await page.inner_text("#preview-subject") == "Hello Ada <script>"
    frame = page.frame_locator("#preview-html")
    assert await frame.locator("p").inner_text() == "Hi Ada <script>, your code is X42"
    assert await frame.locator("b").inner_text() == "X42"
    await browser.shot("template-preview", doc="template-preview")
    await page.fill("#sample", "FIRST_NAME=Ada")
    await page.click("#preview-submit")
    assert "CODE" in await page.inner_text("#preview-error")


async def test_pages_show_no_credentials_and_a_tenant_key_sees_only_its_tenant(
    browser: Browser, dash: Dash
) -> None:
    page = browser.page
    await login(browser, dash, dash.acme_key)
    for path in (
        "/campaigns",
        "/templates",
        "/tenants",
        "/campaigns/acme/email/42",
        "/templates/acme/email/7",
    ):
        await page.goto(dash.url + path)
        await asyncio.sleep(0)
        html = await page.content()
        for secret in (SMTP_PASSWORD, OPTIMOVE_KEY, dash.admin_key, dash.acme_key):
            assert secret not in html, path
    await page.goto(dash.url + "/tenants")
    assert await page.locator("section.tenant").count() == 1
    await page.wait_for_selector("#tenant-acme .probe .bad", timeout=15_000)  # Optimove at :9 is down
    await page.goto(dash.url + "/campaigns/globex/email/9")
    assert "belongs to tenant 'acme'" in await page.inner_text("#error-detail")
    await page.goto(dash.url + "/jobs")
    assert "admin API key" in await page.inner_text("#error-detail")


async def test_channel_health_shows_each_tenants_sending_errors_benches_and_in_flight(
    browser: Browser, dash: Dash
) -> None:
    from optibridge.channels.base import Outcome, SendResult
    from optibridge.delivery.dispatcher import dispatcher_of

    page = browser.page
    # acme's campaign 42: 30 sent just now, 6 failed (two reasons), 4 claimed, 5 waiting because
    # every provider was benched; globex's campaign 9 gets 3 sent (acme's viewer must not see them).
    await dash.sql(
        "UPDATE messages SET state = 'sent', sent_at = now() - interval '20 seconds' WHERE id IN "
        "(SELECT id FROM messages WHERE campaign_id = 42 ORDER BY customer_id LIMIT 30)"
    )
    await dash.sql(
        "UPDATE messages SET state = 'failed', updated_at = now(), reason = CASE WHEN customer_id < 'c034' "
        "THEN '550 5.1.1 user unknown' ELSE '554 rejected' END WHERE id IN (SELECT id FROM messages "
        "WHERE campaign_id = 42 AND state = 'pending' ORDER BY customer_id LIMIT 6)"
    )
    await dash.sql(
        "UPDATE messages SET state = 'claimed', claimed_by = 'w1', "
        "claimed_until = now() + interval '1 minute' WHERE id IN (SELECT id FROM messages "
        "WHERE campaign_id = 42 AND state = 'pending' ORDER BY customer_id LIMIT 4)"
    )
    await dash.sql(
        "UPDATE messages SET reason = 'all providers benched', updated_at = now() WHERE id IN "
        "(SELECT id FROM messages WHERE campaign_id = 42 AND state = 'pending' ORDER BY customer_id LIMIT 5)"
    )
    async with dash.svc.runtime.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id, "
            "scheduled_at, send_at, state, sent_at) SELECT gen_random_uuid(), 'globex', 504, 9, 'g' || i, 7, "
            "now(), now(), 'sent', now() FROM generate_series(1, 3) i"
        )
    # This process's dispatcher (a worker in the serve process) benches acme's SMTP provider after
    # a batch that came back throttled: the real channel build and the real bench rule.
    channel = await dispatcher_of(dash.svc.runtime).registry.channel("acme", 504)
    # Six troubled batches in a row: benched for 60 s (2 s doubling), longer than a loaded machine
    # can take to log in and load the page (a single one benched for 2 s, which it sometimes did).
    for _ in range(6):
        assert channel.providers.report(0, [SendResult(Outcome.THROTTLED)] * 4)

    await login(browser, dash, dash.acme_key)
    await page.goto(dash.url + "/tenants")
    row = page.locator("#channel-health-table tr[data-channel='acme/email']")
    await row.wait_for()
    assert await page.locator("#channel-health-table tr[data-channel]").count() == 1  # acme's only
    assert await row.locator(".sent").inner_text() == "30 (30)"
    assert await row.locator(".failed").inner_text() == "6"
    assert await row.locator(".error-rate").inner_text() == "16.7%"
    reasons = await row.locator(".reasons").inner_text()
    assert "× 550 5.1.1 user unknown" in reasons
    assert "× 554 rejected" in reasons
    assert await row.locator(".in-flight").inner_text() == "4 / 512"  # 2 lanes x 4 chunks x 64
    benched = await row.locator(".benched").inner_text()
    assert "5 waiting: every provider benched" in benched
    assert "smtp" in benched
    await browser.shot("tenants-health", doc="tenants")
    # Without JavaScript the same table is a page of its own; an admin sees both tenants there.
    await page.goto(dash.url + "/tenants/health")
    assert await page.locator("#channel-health-table tr[data-channel]").count() == 1
    await page.click("text=Log out")
    await login(browser, dash, dash.admin_key)
    await page.goto(dash.url + "/tenants/health")
    assert await page.locator("#channel-health-table tr[data-channel]").count() == 2
    globex = page.locator("#channel-health-table tr[data-channel='globex/email']")
    assert await globex.locator(".sent").inner_text() == "3 (3)"
    await page.goto(dash.url + "/jobs")
    await browser.shot("jobs", doc="jobs")

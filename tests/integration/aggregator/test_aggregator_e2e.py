"""The SMS aggregator flow end to end (issue 17, reference §12), through the emulator's Optimove side:
the handshake registers our campaignSendUrl and key; a campaign of 2,000 recipients in batches of
500 reaches the SMS sink once per recipient with Optimove's prepared text; a repeated batch changes
nothing; a batch with a wrong signature or key is refused and stores nothing; bad recipients fail
alone; every recipient's delivery report reaches the emulator once, with the right status."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from optibridge.core.config import TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.intake import aggregator_intake
from optibridge.intake.aggregator_tasks import defer_handshake
from optibridge.sinks.http_sink import HttpSink
from optibridge.store import aggregator as agg_store
from optibridge.store import reports as report_store
from optibridge.store import tenants

from inprocess import Service, running_service

pytestmark = pytest.mark.slow  # ~30 s: 2,000 sends and 2,000 signed reports

TENANT = "acme"
SMS = 505
RECIPIENTS, BATCH = 2000, 500
INVALID = {"+15550000007", "+15550000500", "+15550001999"}  # the sink refuses these: Failed reports


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out: {what}")


async def add_tenant(svc: Service, emu: RunningEmulator, http: HttpSink) -> None:
    await emu.control.create_tenant(TENANT, api_key="k", channels={SMS: "SMS"})
    config = TenantConfig.model_validate(
        {
            "id": TENANT,
            "api_base_url": emu.base_url,
            "api_key": "k",
            "channels": [
                {
                    "name": "sms",
                    "kind": "sms",
                    "channel_id": SMS,
                    "provider": {
                        "type": "twilio", "account_sid": "AC1", "auth_token": "secret-token",
                        "from_number": "+15550000000", "base_url": http.base_url,
                    },
                    "options": {"lanes": 2},
                }
            ],
        }
    )  # fmt: skip
    async with svc.runtime.pool.connection() as conn:
        await tenants.add(conn, svc.runtime.box, config, "cli")


async def control(session: aiohttp.ClientSession, method: str, url: str, **body: Any) -> Any:
    async with session.request(method, url, json=body or None) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def counts(svc: Service) -> dict[str, int]:
    async with svc.runtime.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT (SELECT count(*) FROM messages) AS messages, "
                "(SELECT count(*) FROM aggregator_batches) AS batches, "
                "(SELECT count(*) FROM aggregator_messages) AS reports"
            )
        ).fetchone()
    assert row is not None
    return dict(row)


async def test_aggregator_campaign_delivered_once_and_reported(db_url: str, test_secret_key: str) -> None:
    async with (
        running_emulator(EmulatorConfig()) as emu,
        HttpSink() as http,
        running_service(db_url, test_secret_key, dispatch_cron="* * * * * *") as svc,
        aiohttp.ClientSession() as session,
    ):
        await add_tenant(svc, emu, http)
        http.invalid_numbers(INVALID)
        account = await control(
            session, "POST", f"{emu.base_url}/emulator/aggregator/accounts", tenant_id="t1"
        )
        acc_url = f"{emu.base_url}/emulator/aggregator/accounts/{account['account_id']}"

        # Configured, the handshake is queued in the same transaction and runs as a job.
        rt = svc.runtime
        async with rt.pool.connection() as conn, conn.transaction():
            _, changed = await agg_store.configure(
                conn, rt.box, TENANT, SMS, base_url=account["base_url"],
                app_api_key=account["app_api_key"], shared_secret=account["shared_secret"],
            )  # fmt: skip
            assert changed
            assert await defer_handshake(conn, rt.job_app, TENANT, SMS)
        await svc.wait_idle(queues=("intake",))
        seen = await control(session, "GET", acc_url)
        assert seen["handshakes"] == 1
        assert seen["campaign_send_url"].startswith(f"{svc.base_url}/aggregator/{TENANT}/")
        assert seen["campaign_send_url"].endswith(f"/channels/{SMS}/campaigns")
        # Idempotent: the same URL and key again.
        assert (await aggregator_intake.handshake(rt, TENANT, SMS)).ok
        again = await control(session, "GET", acc_url)
        assert again["handshakes"] == 2
        assert again["campaign_send_url"] == seen["campaign_send_url"]
        async with rt.pool.connection() as conn:
            stored = await agg_store.get(conn, rt.box, TENANT, SMS)
        assert stored is not None
        assert stored.handshake_at is not None
        assert stored.handshake_error is None
        assert stored.handshake_url is not None
        assert "{token}" in stored.handshake_url

        # A wrong signature, or a wrong X-API-Key: 401 for every batch, nothing stored.
        for tamper in ("signature", "key"):
            out = await control(
                session, "POST", f"{acc_url}/campaigns", campaign_id=99, recipients=20, batch_size=10,
                tamper=tamper,
            )  # fmt: skip
            assert [b["status"] for b in out["batches"]] == [401, 401], out
        assert await counts(svc) == {"messages": 0, "batches": 0, "reports": 0}

        # The campaign, with three bad recipients in its first batch.
        bad = [
            {"customerId": "bad-no-number", "message": "hi"},
            {"customerId": "bad-empty", "mobileNumber": "+15559999001", "message": "  "},
            {"customerId": "bad-control", "mobileNumber": "+15559999002", "message": "hi\x1b[2J"},
        ]
        out = await control(
            session, "POST", f"{acc_url}/campaigns", campaign_id=42, recipients=RECIPIENTS, batch_size=BATCH,
            message="Hello {customer}: code {i} — ✓", sender_id="ACME", extra_recipients=bad,
        )  # fmt: skip
        assert [b["status"] for b in out["batches"]] == [200] * (RECIPIENTS // BATCH), out
        # Repeated batches (Optimove retrying): accepted, nothing new.
        repeat = await control(
            session, "POST", f"{acc_url}/campaigns", campaign_id=42, recipients=RECIPIENTS, batch_size=BATCH,
            message="Hello {customer}: code {i} — ✓", sender_id="ACME", extra_recipients=bad,
        )  # fmt: skip
        assert [b["status"] for b in repeat["batches"]] == [200] * (RECIPIENTS // BATCH)
        assert all('"duplicate"' in b["answer"] for b in repeat["batches"]), repeat
        total = RECIPIENTS + len(bad)
        assert await counts(svc) == {"messages": total, "batches": RECIPIENTS // BATCH, "reports": total}

        async def all_done() -> bool:
            async with rt.pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT count(*) AS n FROM messages WHERE state IN ('pending', 'claimed')"
                    )
                ).fetchone()
            return row is not None and row["n"] == 0

        await wait_until(all_done, 120, "every message sent or failed")

        texts = http.of_kind("twilio")
        sent_to = Counter(r.form["To"] for r in texts if r.form)
        assert len(sent_to) == RECIPIENTS, "every recipient"
        assert set(sent_to.values()) == {1}, "once per recipient"
        for r in texts:
            assert r.form is not None
            i = int(r.form["To"][-7:])
            assert r.form["Body"] == f"Hello agg-{i}: code {i} — ✓", "the prepared text, verbatim"

        async def all_reported() -> bool:
            return bool((await control(session, "GET", acc_url))["reports"] >= total)

        await wait_until(all_reported, 120, "every delivery report at the emulator")
        await asyncio.sleep(2.5)  # a tick or so: room for a duplicate report to show up
        reports = (await control(session, "GET", f"{acc_url}/delivery-reports"))["reports"]
        by_customer = Counter(r["customerId"] for r in reports)
        assert len(by_customer) == total, "a report for every recipient"
        assert set(by_customer.values()) == {1}, "one report per recipient"
        failed = {r["customerId"] for r in reports if r["type"]["status"] == "Failed"}
        expected_failed = {f"agg-{int(n[-7:])}" for n in INVALID} | {b["customerId"] for b in bad}
        assert failed == expected_failed
        assert {r["type"]["status"] for r in reports} == {"Delivered", "Failed"}
        sample = next(r for r in reports if r["customerId"] == "agg-1")
        assert sample["campaignId"] == 42
        assert sample["batchId"] == "42-0"
        assert sample["senderId"] == "ACME"
        assert sample["mobileNumber"] == "+15550000001"
        assert sample["tenantId"] == "t1"
        assert (await control(session, "GET", acc_url))["refused"] == 0  # every report was signed right

        async with rt.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT status, customers, messages, ingest_notes FROM campaigns WHERE campaign_id = 42"
                )
            ).fetchone()
        assert row is not None
        assert row["status"] == "ingested"
        assert row["messages"] == total
        assert any("no usable mobileNumber" in n for n in row["ingest_notes"])
        assert any("control character" in n for n in row["ingest_notes"])
        # Its results went back as delivery reports: no UpdateCampaignMetrics schedule for it (the
        # built-in template's id means nothing to Optimove), though the campaign is finished.
        async with rt.pool.connection() as conn:
            now = datetime.now(UTC)
            await report_store.discover(conn, now, now + timedelta(days=7))
            schedules = await (
                await conn.execute("SELECT count(*) AS n FROM report_schedules WHERE campaign_id = 42")
            ).fetchone()
        assert schedules is not None
        assert schedules["n"] == 0
        assert not await svc.failed_jobs()

"""Delivery reports survive a failing Optimove: a 503 leaves the report pending with its attempt
and error recorded and a later retry time; once Optimove answers, each recipient is reported
exactly once, and running the reporter again sends nothing. A message still waiting for its
provider receipt is not reported early. The reporter is driven by hand (no worker) so that each
pass is observable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from optibridge.core.config import TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.feedback.aggregator_reports import run_reports
from optibridge.intake import aggregator_batch, aggregator_intake
from optibridge.intake.aggregator_tasks import KEEP_DAYS, prune_old
from optibridge.store import aggregator as agg_store
from optibridge.store import tenants

from inprocess import Service, running_service

TENANT, SMS = "acme", 505


async def setup(svc: Service, account: dict[str, Any], receipt_wait_s: int = 0) -> None:
    config = TenantConfig.model_validate(
        {
            "id": TENANT,
            "api_base_url": "http://127.0.0.1:9",
            "api_key": "k",
            "channels": [
                {
                    "name": "sms", "kind": "sms", "channel_id": SMS,
                    "provider": {"type": "twilio", "account_sid": "AC1", "auth_token": "t",
                                 "from_number": "+15550000000", "base_url": "http://127.0.0.1:9"},
                }
            ],
        }
    )  # fmt: skip
    rt = svc.runtime
    async with rt.pool.connection() as conn:
        await tenants.add(conn, rt.box, config, "cli")
        await agg_store.configure(
            conn, rt.box, TENANT, SMS, base_url=account["base_url"], app_api_key=account["app_api_key"],
            shared_secret=account["shared_secret"], receipt_wait_s=receipt_wait_s,
        )  # fmt: skip
        body = {
            "batchId": "b1",
            "requestId": "r1",
            "metadata": {"campaignId": 9, "tenantId": 3},
            "recipients": [
                {"customerId": f"c{i}", "mobileNumber": f"+1555000000{i}", "message": f"Hi {i}"}
                for i in range(6)
            ],
        }
        batch = aggregator_batch.parse(body, TENANT, SMS, datetime.now(UTC))
        await aggregator_intake.store_batch(conn, TENANT, SMS, batch)
        # As if the provider accepted every message a minute ago.
        await conn.execute("UPDATE messages SET state = 'sent', sent_at = now() - interval '1 minute'")


async def report_rows(svc: Service) -> list[dict[str, Any]]:
    async with svc.runtime.pool.connection() as conn:
        return list(
            await (
                await conn.execute(
                    "SELECT report_status, attempts, last_error, next_try_at, reported_at "
                    "FROM aggregator_messages ORDER BY message_id"
                )
            ).fetchall()
        )


async def test_reports_are_retried_after_503_and_sent_once(db_url: str, test_secret_key: str) -> None:
    async with (
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key, worker=False) as svc,
        aiohttp.ClientSession() as s,
    ):
        async with s.post(f"{emu.base_url}/emulator/aggregator/accounts", json={}) as resp:
            account = await resp.json()
        acc_url = f"{emu.base_url}/emulator/aggregator/accounts/{account['account_id']}"
        await setup(svc, account)
        async with s.post(f"{acc_url}/faults", json={"fail_reports": 4}) as resp:
            assert resp.status == 200

        first = await run_reports(svc.runtime, budget_s=10)
        assert (first.reported, first.failed) == (2, 4)
        rows = await report_rows(svc)
        pending = [r for r in rows if r["reported_at"] is None]
        assert len(pending) == 4
        now = datetime.now(UTC)
        for r in pending:
            assert r["attempts"] == 1
            assert "503" in r["last_error"]
            assert now + timedelta(seconds=5) < r["next_try_at"] <= now + timedelta(seconds=20)

        assert (await run_reports(svc.runtime, budget_s=10)).reported == 0  # not due yet
        async with svc.runtime.pool.connection() as conn:
            await conn.execute("UPDATE aggregator_messages SET next_try_at = now() WHERE reported_at IS NULL")
        assert (await run_reports(svc.runtime, budget_s=10)).reported == 4
        assert (await run_reports(svc.runtime, budget_s=10)).reported == 0

        async with s.get(f"{acc_url}/delivery-reports") as resp:
            reports = (await resp.json())["reports"]
        assert sorted(r["customerId"] for r in reports) == [f"c{i}" for i in range(6)]
        assert {r["type"]["status"] for r in reports} == {"Delivered"}
        assert {r["tenantId"] for r in reports} == {3}
        rows = await report_rows(svc)
        assert all(r["report_status"] == "Delivered" and r["last_error"] is None for r in rows)


async def test_a_report_waits_for_the_receipt_window(db_url: str, test_secret_key: str) -> None:
    async with (
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key, worker=False) as svc,
        aiohttp.ClientSession() as s,
    ):
        async with s.post(f"{emu.base_url}/emulator/aggregator/accounts", json={}) as resp:
            account = await resp.json()
        await setup(svc, account, receipt_wait_s=3600)
        run = await run_reports(svc.runtime, budget_s=10)
        assert (run.reported, run.waiting) == (0, 6)
        rows = await report_rows(svc)
        assert all(r["reported_at"] is None and r["attempts"] == 0 for r in rows)
        assert all(r["next_try_at"] > datetime.now(UTC) + timedelta(minutes=55) for r in rows)
        async with s.get(f"{emu.base_url}/emulator/aggregator/accounts/{account['account_id']}") as resp:
            assert (await resp.json())["reports"] == 0


async def test_old_batches_are_pruned_once_nothing_is_left_to_report(
    db_url: str, test_secret_key: str
) -> None:
    async with (
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key, worker=False) as svc,
        aiohttp.ClientSession() as s,
    ):
        async with s.post(f"{emu.base_url}/emulator/aggregator/accounts", json={}) as resp:
            account = await resp.json()
        await setup(svc, account)
        later = datetime.now(UTC) + timedelta(days=KEEP_DAYS + 1)
        assert await prune_old(svc.runtime, datetime.now(UTC)) == 0  # too young
        assert await prune_old(svc.runtime, later) == 0  # old enough, but six reports are still due
        assert (await run_reports(svc.runtime, budget_s=10)).reported == 6
        assert await prune_old(svc.runtime, later) == 1
        async with svc.runtime.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT (SELECT count(*) FROM aggregator_batches) AS b, "
                    "(SELECT count(*) FROM aggregator_messages) AS m, (SELECT count(*) FROM messages) AS msg"
                )
            ).fetchone()
        assert row is not None
        assert (row["b"], row["m"], row["msg"]) == (0, 0, 6)  # the messages are retention's to purge

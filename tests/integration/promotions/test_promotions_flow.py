"""Promotions for event-5 campaigns, end to end: the emulator fires event 5 at our listener, the
worker pulls GetProcessedCampaignCustomers, asks a loopback promotion system (or accepts all), and
every targeted customer's Status lands in the emulator's promotion-statuses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from optibridge.core.config import TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.intake import promotions
from optibridge.intake.promotions import RunOptions
from optibridge.store import promotions as store
from optibridge.store import tenants

from inprocess import Service, running_service

TENANT = "acme"
KEY = "key-acme-1"
EMAIL = 504
TOKEN = "promo-token-s3cret"
COUNT = 250
BATCH = 100


@dataclass
class PromoSystem:
    """A promotion system on loopback: refuses customers whose number is divisible by 3, leaves
    those divisible by 7 out of its answer, fails the first `fail_first` calls with 503."""

    fail_first: int = 0
    always_fail: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    failures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization"))
        if self.always_fail or self.failures < self.fail_first:
            self.failures += 1
            return web.Response(status=503, text="down")
        body = await request.json()
        self.calls.append(body)
        results = [
            {"CustomerID": c["CustomerID"], "Activated": int(c["CustomerID"][1:]) % 3 != 0}
            for c in body["Customers"]
            if int(c["CustomerID"][1:]) % 7 != 0
        ]
        return web.json_response({"Results": results})


def expected_status(customer_id: str) -> bool:
    n = int(customer_id[1:])
    return n % 3 != 0 and n % 7 != 0


@contextlib.asynccontextmanager
async def promo_server(system: PromoSystem) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/activate", system.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/activate"
    finally:
        await runner.cleanup()


def clearance(seconds: float) -> tuple[str, datetime]:
    moment = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
    return moment.strftime("%Y-%m-%d %H:%M:%S"), moment


async def setup_tenant(
    svc: Service,
    emu: RunningEmulator,
    *,
    enabled: bool = True,
    url: str | None = None,
    margin_s: int = 0,
    on_deadline: store.OnDeadline = "report_false",
    count: int = COUNT,
    batch_size: int = BATCH,
) -> int:
    """Our tenant and the emulator's, listeners registered, a campaign of COUNT customers."""
    from optibridge.intake import registration

    await emu.control.create_tenant(TENANT, api_key=KEY, channels={EMAIL: "Email"})
    config = TenantConfig.model_validate(
        {
            "id": TENANT,
            "api_base_url": emu.base_url,
            "api_key": KEY,
            "channels": [{"name": "email", "kind": "email", "channel_id": EMAIL}],
        }
    )
    rt = svc.runtime
    async with rt.pool.connection() as conn:
        await tenants.add(conn, rt.box, config, "cli")
        settings = store.PromotionSettings(
            enabled=enabled,
            webhook_url=url,
            batch_size=batch_size,
            deadline_margin_s=margin_s,
            on_deadline=on_deadline,
        )
        await store.put_settings(
            conn, rt.box, TENANT, settings, token=TOKEN if url else None, keep_token=False
        )
    await registration.sync_tenant(rt, TENANT)
    campaign = await emu.control.create_campaign(
        TENANT, customer_count=count, channel_ids=[EMAIL], promo_code="A7Bonus,A9Bonus"
    )
    return int(campaign["campaign_id"])


async def statuses(emu: RunningEmulator, campaign_id: int) -> dict[str, bool]:
    return {
        s["customer_id"]: s["status"]
        for s in await emu.control.promotion_statuses(TENANT)
        if s["campaign_id"] == campaign_id
    }


async def run_row(svc: Service, campaign_id: int) -> store.PromotionRun:
    async with svc.runtime.pool.connection() as conn:
        run = await store.get_run(conn, TENANT, campaign_id)
    assert run is not None
    return run


ALL = [f"C{i}" for i in range(1, COUNT + 1)]


async def test_every_targeted_customer_gets_the_status_the_promotion_system_answered(
    db_url: str, test_secret_key: str
) -> None:
    system = PromoSystem()
    async with (
        promo_server(system) as url,
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key) as svc,
    ):
        cid = await setup_tenant(svc, emu, url=url)
        text, _ = clearance(600)
        answer = await emu.control.notify(
            TENANT, event_type_ids=[5], campaign_id=cid, clearance_required_by=text
        )
        assert all(d["status"] == 200 for d in answer["deliveries"]), answer
        await svc.wait_idle()
        got = await statuses(emu, cid)
        assert got == {c: expected_status(c) for c in ALL}
        # three batches of at most BATCH, each customer once, with the campaign's promo codes
        assert [len(call["Customers"]) for call in system.calls] == [100, 100, 50]
        assert {c["CustomerID"] for call in system.calls for c in call["Customers"]} == set(ALL)
        assert system.calls[0]["Customers"][0]["PromoCodes"] == ["A7Bonus", "A9Bonus"]
        assert system.calls[0]["CampaignID"] == cid
        assert set(system.auth) == {f"Bearer {TOKEN}"}
        run = await run_row(svc, cid)
        yes = sum(expected_status(c) for c in ALL)
        assert (run.status, run.next_skip, run.batches) == ("done", COUNT, 3)
        assert (run.activated, run.refused, run.past_deadline) == (yes, COUNT - yes, 0)
        # the campaign itself stays held until ClearanceRequiredBy, as before
        async with svc.runtime.pool.connection() as conn:
            held = await (await conn.execute("SELECT hold_until FROM campaign_holds")).fetchall()
        assert len(held) == 1
        # a repeated event 5 starts nothing new
        await emu.control.notify(TENANT, event_type_ids=[5], campaign_id=cid, clearance_required_by=text)
        await svc.wait_idle()
        assert len(system.calls) == 3


async def test_accept_all_without_a_promotion_system(db_url: str, test_secret_key: str) -> None:
    async with running_emulator(EmulatorConfig()) as emu, running_service(db_url, test_secret_key) as svc:
        cid = await setup_tenant(svc, emu, url=None)
        text, _ = clearance(600)
        await emu.control.notify(TENANT, event_type_ids=[5], campaign_id=cid, clearance_required_by=text)
        await svc.wait_idle()
        assert await statuses(emu, cid) == dict.fromkeys(ALL, True)
        reports = await emu.control.requests(TENANT, "UpdateCustomerPromotionStatus")
        assert len(reports) == 3
        assert all(r["status"] == 200 for r in reports)


async def test_a_promotion_system_that_fails_twice_then_works(db_url: str, test_secret_key: str) -> None:
    system = PromoSystem(fail_first=2)
    async with (
        promo_server(system) as url,
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key) as svc,
    ):
        cid = await setup_tenant(svc, emu, url=url)
        text, _ = clearance(600)
        await emu.control.notify(TENANT, event_type_ids=[5], campaign_id=cid, clearance_required_by=text)
        await svc.wait_idle()
        assert await statuses(emu, cid) == {c: expected_status(c) for c in ALL}
        run = await run_row(svc, cid)
        assert (run.status, run.promo_failures) == ("done", 2)
        assert run.last_error == "promotion system answered HTTP 503"
        assert len(system.calls) == 3  # the failed calls were not counted as answers


async def test_a_disabled_tenant_makes_no_promotion_calls(db_url: str, test_secret_key: str) -> None:
    system = PromoSystem()
    async with (
        promo_server(system) as url,
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key) as svc,
    ):
        cid = await setup_tenant(svc, emu, url=url, enabled=False)
        text, _ = clearance(600)
        await emu.control.notify(TENANT, event_type_ids=[5], campaign_id=cid, clearance_required_by=text)
        await svc.wait_idle()
        assert await statuses(emu, cid) == {}
        assert system.calls == []
        assert system.auth == []
        for function in ("GetProcessedCampaignCustomers", "UpdateCustomerPromotionStatus"):
            assert await emu.control.requests(TENANT, function) == []
        async with svc.runtime.pool.connection() as conn:
            assert await store.get_run(conn, TENANT, cid) is None
            outcome = await (await conn.execute("SELECT outcome FROM notifications")).fetchone()
        assert outcome is not None
        assert outcome["outcome"].startswith("held until")


async def test_a_resumed_run_starts_at_the_first_unfinished_batch(db_url: str, test_secret_key: str) -> None:
    """As after a crash once the first batch was reported: only the rest is asked and reported."""
    system = PromoSystem()
    async with (
        promo_server(system) as url,
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key, worker=False) as svc,
    ):
        cid = await setup_tenant(svc, emu, url=url)
        _, moment = clearance(600)
        async with svc.runtime.pool.connection() as conn:
            assert await store.start_run(conn, TENANT, cid, moment)
            assert await store.batch_done(
                conn, TENANT, cid, from_skip=0, count=BATCH, activated=BATCH, refused=0
            )
        outcome = await asyncio.wait_for(
            promotions.run_promotions(svc.runtime, TENANT, cid, RunOptions()), timeout=60
        )
        assert outcome == "done"
        assert set(await statuses(emu, cid)) == set(ALL[BATCH:])
        assert {c["CustomerID"] for call in system.calls for c in call["Customers"]} == set(ALL[BATCH:])
        run = await run_row(svc, cid)
        assert (run.next_skip, run.batches) == (COUNT, 3)
        # a second run of a finished campaign does nothing
        assert await promotions.run_promotions(svc.runtime, TENANT, cid) == "done"
        assert len(system.calls) == 2


async def test_the_token_is_stored_encrypted(db_url: str, test_secret_key: str) -> None:
    async with running_emulator(EmulatorConfig()) as emu, running_service(db_url, test_secret_key) as svc:
        await setup_tenant(svc, emu, url="http://127.0.0.1:9/activate")
        async with svc.runtime.pool.connection() as conn:
            row = await (await conn.execute("SELECT secrets FROM tenant_promotions")).fetchone()
            assert row is not None
            assert TOKEN.encode() not in bytes(row["secrets"])
            assert await store.bearer_token(conn, svc.runtime.box, TENANT) == TOKEN
            assert (await store.get_settings(conn, TENANT)).has_token
            kept = store.PromotionSettings(enabled=True, webhook_url="http://127.0.0.1:9/other")
            await store.put_settings(conn, svc.runtime.box, TENANT, kept, token=None, keep_token=True)
            assert await store.bearer_token(conn, svc.runtime.box, TENANT) == TOKEN
            await store.put_settings(conn, svc.runtime.box, TENANT, kept, token=None, keep_token=False)
            assert await store.bearer_token(conn, svc.runtime.box, TENANT) is None
        assert json.dumps(TOKEN) not in json.dumps(await emu.control.requests(TENANT))


async def test_full_batches_of_10000_customers(db_url: str, test_secret_key: str) -> None:
    """The largest batch: a promotion-system answer of ~0.5 MB arrives in many chunks."""
    system = PromoSystem()
    count = 12_345
    async with (
        promo_server(system) as url,
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key) as svc,
    ):
        cid = await setup_tenant(svc, emu, url=url, count=count, batch_size=10_000)
        text, _ = clearance(600)
        await emu.control.notify(TENANT, event_type_ids=[5], campaign_id=cid, clearance_required_by=text)
        await svc.wait_idle(timeout=120)
        got = await statuses(emu, cid)
        assert got == {f"C{i}": expected_status(f"C{i}") for i in range(1, count + 1)}
        assert [len(call["Customers"]) for call in system.calls] == [10_000, 2_345]
        run = await run_row(svc, cid)
        assert (run.status, run.promo_failures, run.batches) == ("done", 0, 2)


async def test_a_long_outage_queues_the_job_again_instead_of_waiting_in_it(
    db_url: str, test_secret_key: str
) -> None:
    system = PromoSystem(always_fail=True)
    async with (
        promo_server(system) as url,
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key, worker=False) as svc,
    ):
        cid = await setup_tenant(svc, emu, url=url)
        _, moment = clearance(600)
        async with svc.runtime.pool.connection() as conn:
            assert await store.start_run(conn, TENANT, cid, moment)
        options = RunOptions(retry_base_s=30, in_job_wait_s=10)
        outcome = await asyncio.wait_for(promotions.run_promotions(svc.runtime, TENANT, cid, options), 60)
        assert outcome == "waiting"
        assert len(system.auth) == 1  # asked once, then handed over: no 30 s wait in the job
        async with svc.runtime.pool.connection() as conn:
            queued = await (
                await conn.execute(
                    "SELECT args, scheduled_at - now() AS due_in FROM procrastinate_jobs "
                    "WHERE task_name = %s AND status = 'todo'",
                    (promotions.PROMOTIONS_TASK,),
                )
            ).fetchall()
        assert len(queued) == 1
        assert queued[0]["args"] == {"tenant_id": TENANT, "campaign_id": cid}
        assert timedelta(seconds=20) < queued[0]["due_in"] <= timedelta(seconds=30)
        run = await run_row(svc, cid)
        assert (run.status, run.next_skip, run.promo_failures) == ("running", 0, 1)
        assert await statuses(emu, cid) == {}

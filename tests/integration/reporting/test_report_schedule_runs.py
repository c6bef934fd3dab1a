"""The schedule's guarantees: a failed push is retried later without reporting anything twice, and
concurrent ticks (several workers) push a campaign once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from reporting_helpers import API_KEY, EMAIL, T0, TENANT

from optibridge.core.config import Settings
from optibridge.emulator.testing import RunningEmulator
from optibridge.feedback.events import Event, EventKind, Source, record_events
from optibridge.reporting.tasks import run_tick
from optibridge.testing.feedback import MutableClock, add_channel, add_tenant, feedback_stack, seed_campaign


async def _setup(stack: object, emu: RunningEmulator, customers: int = 20) -> list[object]:
    async with stack.runtime.pool.connection() as conn:  # type: ignore[attr-defined]
        await add_tenant(conn, stack.runtime.box, TENANT, emu.base_url, API_KEY)  # type: ignore[attr-defined]
        await add_channel(conn, TENANT, "email", "email", EMAIL)
        seeded = await seed_campaign(
            conn,
            tenant_id=TENANT,
            channel_name="email",
            channel_kind="email",
            channel_id=EMAIL,
            campaign_id=7,
            customers=customers,
            sent_at=T0,
        )
        await record_events(
            conn,
            [
                Event(m.id, EventKind.OPENED, Source.TRACKING, f"open:{m.id}", T0 + timedelta(hours=1))
                for m in seeded[:5]
            ],
        )
    return list(seeded)


async def test_a_failed_push_is_retried_later_and_nothing_is_reported_twice(
    settings: Settings, emulator: RunningEmulator, clock: MutableClock
) -> None:
    async with feedback_stack(settings, clock) as stack:
        await _setup(stack, emulator)
        # Metrics go through; the first interactions call is refused (a 400 is not retried by the client).
        await emulator.control.add_fault(function="UpdateCampaignInteractions", status_codes=[400], times=1)
        now = T0 + timedelta(hours=2)
        failed = await run_tick(stack.runtime, now)
        assert failed.failed == [(TENANT, EMAIL, 7)]
        assert failed.pushed == []
        async with stack.runtime.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT failures, next_push_at, last_error, state FROM report_schedules")
            ).fetchone()
        assert row is not None
        assert row["failures"] == 1
        assert row["state"] == "active"
        assert row["next_push_at"] == now + timedelta(minutes=5)
        assert "400" in row["last_error"]

        assert (await run_tick(stack.runtime, now + timedelta(minutes=4))).pushed == []  # backoff holds
        retried = await run_tick(stack.runtime, now + timedelta(minutes=5))
        assert retried.pushed == [(TENANT, EMAIL, 7)]
        interactions = await emulator.control.interactions(TENANT)
        opened = [i for i in interactions if i["event_id"] == 2]
        assert [sorted(i["customer_ids"]) for i in opened] == [["C1", "C2", "C3", "C4", "C5"]]
        assert all(i["calls"] == 1 for i in interactions)  # each list accepted exactly once
        # The next scheduled push finds nothing new to list.
        calls_before = len(await emulator.control.requests(TENANT, "UpdateCampaignInteractions"))
        later = await run_tick(stack.runtime, now + timedelta(hours=4))
        assert later.pushed == [(TENANT, EMAIL, 7)]
        assert len(await emulator.control.requests(TENANT, "UpdateCampaignInteractions")) == calls_before


async def test_concurrent_ticks_push_a_due_campaign_once(
    settings: Settings, emulator: RunningEmulator, clock: MutableClock
) -> None:
    async with feedback_stack(settings, clock) as stack:
        await _setup(stack, emulator)
        now = T0 + timedelta(hours=2)
        results = await asyncio.gather(*(run_tick(stack.runtime, now) for _ in range(4)))
        assert sum(len(r.pushed) for r in results) == 1
        assert len(await emulator.control.requests(TENANT, "UpdateCampaignMetrics")) == 1


async def test_a_campaign_with_messages_still_pending_is_not_reported(
    settings: Settings, emulator: RunningEmulator, clock: MutableClock
) -> None:
    async with feedback_stack(settings, clock) as stack:
        await _setup(stack, emulator, customers=3)
        async with stack.runtime.pool.connection() as conn:
            await conn.execute("UPDATE messages SET state = 'claimed' WHERE customer_id = 'C1'")
        assert (await run_tick(stack.runtime, T0 + timedelta(hours=2))).discovered == 0
        async with stack.runtime.pool.connection() as conn:
            await conn.execute("UPDATE messages SET state = 'sent' WHERE customer_id = 'C1'")
        tick = await run_tick(stack.runtime, T0 + timedelta(hours=3))
        assert tick.discovered == 1
        assert tick.pushed == [(TENANT, EMAIL, 7)]

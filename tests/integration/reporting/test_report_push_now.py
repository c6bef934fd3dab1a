"""On-demand report pushes (`reports push`, the admin API's report-push): they send what is counted
now, beside the periodic tick, and the two never send a customer twice or an older total last."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reporting_helpers import API_KEY, EMAIL, T0, TENANT
from typer.testing import CliRunner

from optibridge.cli.reports import reports_app
from optibridge.core.config import Settings
from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.core.reporting_settings import ReportingSettings
from optibridge.emulator import EmulatorConfig
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.feedback.events import Event, EventKind, Source, record_events
from optibridge.reporting.ondemand import push_now
from optibridge.reporting.tasks import run_tick
from optibridge.testing.feedback import (
    MutableClock,
    SeededMessage,
    add_channel,
    add_tenant,
    feedback_stack,
    seed_campaign,
)

CAMPAIGN = 7


async def _seed(conn: Any, box: Any, base_url: str, *, state: str = "sent") -> list[SeededMessage]:
    await add_tenant(conn, box, TENANT, base_url, API_KEY)
    await add_channel(conn, TENANT, "email", "email", EMAIL)
    return await seed_campaign(
        conn,
        tenant_id=TENANT,
        channel_name="email",
        channel_kind="email",
        channel_id=EMAIL,
        campaign_id=CAMPAIGN,
        customers=40,
        sent_at=T0,
        state=state,
    )


async def _opens(conn: Any, messages: list[SeededMessage], kind: EventKind = EventKind.OPENED) -> None:
    await record_events(
        conn, [Event(m.id, kind, Source.TRACKING, f"{kind.value}:{m.id}", T0) for m in messages]
    )


def _sent_per_customer(interactions: list[dict[str, Any]], event_id: int) -> Counter[str]:
    return Counter(c for i in interactions if i["event_id"] == event_id for c in i["customer_ids"])


def _calls(interactions: list[dict[str, Any]], event_id: int) -> int:
    """UpdateCampaignInteractions calls that carried this event (the emulator merges their
    customers into one set, so a customer sent twice shows only in the number of calls)."""
    return sum(int(i["calls"]) for i in interactions if i["event_id"] == event_id)


def _metric(metrics: list[dict[str, Any]], metric_id: int) -> int:
    return sum(int(m["value"]) for m in metrics if m["metric_id"] == metric_id)


async def test_a_push_now_racing_the_tick_sends_every_customer_once_and_the_latest_totals(
    settings: Settings, emulator: RunningEmulator
) -> None:
    # Each metrics call takes half a second: without the shared lock, both pushes would read the
    # same unreported opens and both would send them.
    await emulator.control.add_fault(function="UpdateCampaignMetrics", latency_ms=500)
    async with feedback_stack(settings, MutableClock(T0)) as stack:
        async with stack.runtime.pool.connection() as conn:
            messages = await _seed(conn, stack.runtime.box, emulator.base_url)
            await _opens(conn, messages[:10])
        finished = T0 + timedelta(hours=1)
        tick, pushed = await asyncio.gather(
            run_tick(stack.runtime, finished),
            push_now(stack.runtime, CAMPAIGN, tenant_id=TENANT, now=finished),
        )
        assert len(tick.pushed) + len(tick.deferred) == 1
        assert [(p.channel_id, p.complete) for p in pushed] == [(EMAIL, True)]

        async with stack.runtime.pool.connection() as conn:
            await _opens(conn, messages[10:25])
        # The next scheduled push is hours away; an on-demand push sends the new opens now.
        later = finished + timedelta(minutes=5)
        assert (await run_tick(stack.runtime, later)).pushed == []
        [again] = await push_now(stack.runtime, CAMPAIGN, tenant_id=None, now=later)
        assert again.interactions_sent == 15

        async with stack.runtime.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT pushes, next_push_at FROM report_schedules WHERE campaign_id = %s", (CAMPAIGN,)
                )
            ).fetchone()
    interactions = await emulator.control.interactions(TENANT)
    assert len(_sent_per_customer(interactions, 2)) == 25
    assert len(_sent_per_customer(interactions, 1)) == 40
    # One call per list per push that had someone new: the race sent nothing twice.
    assert _calls(interactions, 1) == 1, "the delivered list was sent by both pushes"
    assert _calls(interactions, 2) == 2
    metrics = await emulator.control.metrics(TENANT)
    assert _metric(metrics, 2) == 25  # the latest total, not the 10 of the first push
    assert _metric(metrics, 0) == 40
    assert row is not None
    assert row["pushes"] >= 2
    assert row["next_push_at"] == finished + timedelta(hours=4)  # the schedule was not moved


async def test_a_campaign_still_sending_can_be_pushed_and_an_unknown_one_is_not_found(
    settings: Settings, emulator: RunningEmulator
) -> None:
    async with feedback_stack(settings, MutableClock(T0)) as stack:
        async with stack.runtime.pool.connection() as conn:
            await _seed(conn, stack.runtime.box, emulator.base_url, state="pending")
            await seed_campaign(
                conn,
                tenant_id=TENANT,
                channel_name="email",
                channel_kind="email",
                channel_id=EMAIL,
                campaign_id=CAMPAIGN,
                customers=5,
                first=41,
                sent_at=T0,
            )
        now = datetime.now(UTC)
        [push] = await push_now(stack.runtime, CAMPAIGN, tenant_id=TENANT, now=now)
        assert push.metrics_sent > 0
        assert push.interactions_sent == 5  # delivered
        with pytest.raises(NotFoundError):
            await push_now(stack.runtime, 999, tenant_id=TENANT, now=now)
        with pytest.raises(NotFoundError):
            await push_now(stack.runtime, CAMPAIGN, tenant_id="other", now=now)
    metrics = await emulator.control.metrics(TENANT)
    assert _metric(metrics, 0) == 5  # the 5 sent so far; 40 are still pending


async def test_a_push_now_waits_for_a_running_push_and_gives_up_with_a_clear_error(
    settings: Settings, emulator: RunningEmulator
) -> None:
    await emulator.control.add_fault(function="UpdateCampaignMetrics", latency_ms=2000, times=1)
    async with feedback_stack(settings, MutableClock(T0)) as stack:
        async with stack.runtime.pool.connection() as conn:
            await _seed(conn, stack.runtime.box, emulator.base_url)
        now = T0 + timedelta(hours=1)
        slow = asyncio.create_task(push_now(stack.runtime, CAMPAIGN, tenant_id=TENANT, now=now))
        await asyncio.sleep(0.5)
        with pytest.raises(ConflictError, match="still running"):
            await push_now(stack.runtime, CAMPAIGN, tenant_id=TENANT, now=now, lock_wait_s=0.2)
        # A tick meanwhile leaves the campaign to the next tick instead of pushing beside it.
        tick = await run_tick(stack.runtime, now, ReportingSettings(push_lock_wait_s=0.2))
        assert tick.deferred == [(TENANT, EMAIL, CAMPAIGN)]
        assert tick.pushed == []
        await slow
        assert len((await run_tick(stack.runtime, now + timedelta(seconds=1))).pushed) == 1


def test_reports_push_cli_pushes_and_says_what_it_sent(
    settings: Settings, test_secret_key: str, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "OPTIBRIDGE_DATABASE_URL": db_url,
        "OPTIBRIDGE_SECRET_KEY": test_secret_key,
        "OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS": '["127.0.0.0/8"]',  # the emulator is on loopback
    }

    async def go() -> tuple[str, list[dict[str, Any]]]:
        async with running_emulator(EmulatorConfig(rate_limit_enabled=False)) as emu:
            await emu.control.create_tenant(TENANT, api_key=API_KEY)
            async with (
                feedback_stack(settings, MutableClock(T0)) as stack,
                stack.runtime.pool.connection() as conn,
            ):
                messages = await _seed(conn, stack.runtime.box, emu.base_url)
                await _opens(conn, messages[:3])
            result = await asyncio.to_thread(
                CliRunner().invoke, reports_app, ["push", str(CAMPAIGN), "-t", TENANT, "--json"], env=env
            )
            assert result.exit_code == 0, result.output
            return result.output, await emu.control.interactions(TENANT)

    monkeypatch.chdir(tmp_path)
    output, interactions = asyncio.run(go())
    [push] = json.loads(output)
    assert (push["tenant_id"], push["channel_id"], push["campaign_id"]) == (TENANT, EMAIL, CAMPAIGN)
    assert push["interactions_sent"] == 40 + 3  # delivered (all sent) + opened
    assert len(_sent_per_customer(interactions, 2)) == 3
    missing = CliRunner().invoke(reports_app, ["push", "999"], env=env)
    assert missing.exit_code != 0
    assert "no campaign 999" in str(missing.exception)

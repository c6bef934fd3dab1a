"""`reports show`: what we counted and what Optimove last accepted, per template."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from reporting_helpers import API_KEY, EMAIL, T0, TENANT
from typer.testing import CliRunner

from optibridge.cli.reports import reports_app
from optibridge.core.config import Settings
from optibridge.emulator import EmulatorConfig
from optibridge.emulator.testing import running_emulator
from optibridge.feedback.events import Event, EventKind, Source, record_events
from optibridge.reporting.tasks import run_tick
from optibridge.testing.feedback import MutableClock, add_channel, add_tenant, feedback_stack, seed_campaign


async def _prepare(settings: Settings) -> None:
    async with running_emulator(EmulatorConfig(rate_limit_enabled=False)) as emu:
        await emu.control.create_tenant(TENANT, api_key=API_KEY)
        async with feedback_stack(settings, MutableClock(T0)) as stack:
            async with stack.runtime.pool.connection() as conn:
                await add_tenant(conn, stack.runtime.box, TENANT, emu.base_url, API_KEY)
                await add_channel(conn, TENANT, "email", "email", EMAIL)
                seeded = await seed_campaign(
                    conn,
                    tenant_id=TENANT,
                    channel_name="email",
                    channel_kind="email",
                    channel_id=EMAIL,
                    campaign_id=7,
                    customers=4,
                    sent_at=T0,
                )
                await record_events(
                    conn, [Event(seeded[0].id, EventKind.OPENED, Source.TRACKING, "open:1", T0)]
                )
            await run_tick(stack.runtime, T0 + timedelta(hours=1))
            async with stack.runtime.pool.connection() as conn:  # counted after the push: differs
                await record_events(
                    conn, [Event(seeded[1].id, EventKind.CLICKED, Source.TRACKING, "c:2", T0)]
                )


def test_reports_show_prints_counted_and_last_reported_values(
    settings: Settings, test_secret_key: str, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_prepare(settings))
    monkeypatch.chdir(tmp_path)
    env = {"OPTIBRIDGE_DATABASE_URL": db_url, "OPTIBRIDGE_SECRET_KEY": test_secret_key}
    runner = CliRunner()
    result = runner.invoke(reports_app, ["show", "7", "--tenant", TENANT, "--json"], env=env)
    assert result.exit_code == 0, result.output
    [block] = json.loads(result.output)
    [template] = block["templates"]
    assert template["counted"]["opened"] == 2
    assert template["counted"]["clicked"] == 1
    assert template["reported"]["opened"] == 1
    assert template["reported"]["clicked"] == 0
    assert template["counted"]["sent"] == template["reported"]["sent"] == 4
    assert block["schedule"]["pushes"] == 1
    text = runner.invoke(reports_app, ["show", "7"], env=env)
    assert text.exit_code == 0
    assert "counted" in text.output
    assert "reported" in text.output
    missing = runner.invoke(reports_app, ["show", "999"], env=env)
    assert missing.exit_code != 0

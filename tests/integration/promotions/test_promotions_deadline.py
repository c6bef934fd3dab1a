"""Promotions at the deadline: a promotion system that never answers, and ClearanceRequiredBy a few
seconds away. Timing-dependent (the cutoff is wall-clock time), hence the slow tier."""

from __future__ import annotations

import pytest
from test_promotions_flow import (
    ALL,
    COUNT,
    TENANT,
    PromoSystem,
    clearance,
    promo_server,
    run_row,
    setup_tenant,
    statuses,
)

from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import running_emulator

from inprocess import running_service

pytestmark = pytest.mark.slow


async def test_at_the_deadline_the_unanswered_customers_get_status_false(
    db_url: str, test_secret_key: str
) -> None:
    system = PromoSystem(always_fail=True)
    async with (
        promo_server(system) as url,
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key) as svc,
    ):
        cid = await setup_tenant(svc, emu, url=url, margin_s=0)
        text, _ = clearance(6)
        await emu.control.notify(TENANT, event_type_ids=[5], campaign_id=cid, clearance_required_by=text)
        await svc.wait_idle(timeout=60)
        assert await statuses(emu, cid) == dict.fromkeys(ALL, False)
        run = await run_row(svc, cid)
        assert (run.status, run.past_deadline, run.activated, run.refused) == ("deadline", COUNT, 0, 0)
        assert run.promo_failures >= 1
        assert len(system.auth) == run.promo_failures  # asked once per failure, then stopped


async def test_leave_at_the_deadline_reports_nothing(db_url: str, test_secret_key: str) -> None:
    system = PromoSystem(always_fail=True)
    async with (
        promo_server(system) as url,
        running_emulator(EmulatorConfig()) as emu,
        running_service(db_url, test_secret_key) as svc,
    ):
        cid = await setup_tenant(svc, emu, url=url, margin_s=0, on_deadline="leave")
        text, _ = clearance(6)
        await emu.control.notify(TENANT, event_type_ids=[5], campaign_id=cid, clearance_required_by=text)
        await svc.wait_idle(timeout=60)
        assert await statuses(emu, cid) == {}
        run = await run_row(svc, cid)
        assert run.status == "deadline"
        assert run.last_error is not None
        assert "offset 0 left unreported" in run.last_error

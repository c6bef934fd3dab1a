"""Each Optimove response shape on record, produced by the emulator, end to end: notification ->
ingested message rows -> sent once each to the SMTP sink, with nothing failed.

Templates are registered first and the emulator is strict about them (strict_templates), as
Optimove is: a campaign can only use its channel's registered templates.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec
from optibridge.core.config import TenantConfig
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.intake import registration
from optibridge.sinks.smtp_sink import SmtpSink
from optibridge.store import tenants

from inprocess import Service, running_service

TENANT = "acme"
EMAIL = 504
CUSTOMERS = 30
SEND_DETAILS = "GetCustomerSendDetailsByChannel"


async def setup(svc: Service, emu: RunningEmulator, smtp: SmtpSink) -> None:
    await emu.control.create_tenant(TENANT, api_key="k", channels={EMAIL: "Email"})
    config = TenantConfig.model_validate(
        {
            "id": TENANT,
            "api_base_url": emu.base_url,
            "api_key": "k",
            "channels": [
                {
                    "name": "email",
                    "kind": "email",
                    "channel_id": EMAIL,
                    "provider": {
                        "type": "smtp", "host": "127.0.0.1", "port": smtp.port, "tls": "none",
                        "from_address": "news@acme.test", "pool_size": 2,
                    },
                }
            ],
        }
    )  # fmt: skip
    rt = svc.runtime
    async with rt.pool.connection() as conn:
        await tenants.add(conn, rt.box, config, "cli")
        for tid in (1, 2):
            spec = TemplateSpec(
                template_id=tid, name=f"E{tid}", subject=f"Offer {tid} for {{{{ FirstName }}}}",
                body=f"<p>Hi {{{{ FirstName }}}}, offer {tid}</p>",
            )  # fmt: skip
            await catalog.upsert(conn, rt.job_app, TENANT, "email", spec, create=True)
    await registration.sync_tenant(rt, TENANT)
    await svc.wait_idle()  # the template sync (AddChannelTemplates) has reached the emulator


async def states(svc: Service, campaign_id: int) -> dict[str, int]:
    async with svc.runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT state, count(*) AS n FROM messages WHERE campaign_id = %s GROUP BY state",
                (campaign_id,),
            )
        ).fetchall()
    return {r["state"]: r["n"] for r in rows}


async def wait_all_sent(svc: Service, campaign_id: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    while time.monotonic() < deadline:
        last = await states(svc, campaign_id)
        if last == {"sent": CUSTOMERS}:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not every message sent: {last}; failed jobs: {await svc.failed_jobs()}")


# Each quirk: the settings patch, extra setup (faults), and the events to notify.
QUIRKS: dict[str, tuple[dict[str, Any], dict[str, Any] | None, list[int]]] = {
    "ChannelId-key": ({"notification_id_key": "Id"}, None, [13]),
    "string-ids": ({"notification_ids_as_strings": True}, None, [1, 13]),
    "timestamp-without-seconds": ({"notification_time_format": "minutes"}, None, [13]),
    "scheduled-time-without-seconds": ({"scheduled_time_format": "minutes"}, None, [1]),
    "scheduled-time-iso": ({"scheduled_time_format": "iso"}, None, [1]),
    "null-empty-list": ({"empty_list_body": "null"}, None, [1]),
    "empty-body-empty-list": ({"empty_list_body": "empty"}, None, [1]),
    "retry-after-http-date": (
        {"retry_after_format": "http-date"},
        {"storm": {"function": SEND_DETAILS, "requests": 2, "retry_after_s": 1}},
        [1],
    ),
    "200-with-error-string": (
        {},
        {"fault": {"function": SEND_DETAILS, "error_string": "Error: Timeout expired", "times": 2}},
        [1],
    ),
}


@pytest.mark.parametrize("quirk", list(QUIRKS))
async def test_quirk_end_to_end(db_url: str, test_secret_key: str, quirk: str) -> None:
    settings, faults, events = QUIRKS[quirk]
    async with (
        running_emulator(EmulatorConfig(strict_templates=True)) as emu,
        SmtpSink() as smtp,
        running_service(db_url, test_secret_key, dispatch_cron="* * * * * *", optimove_page_size=7) as svc,
    ):
        await setup(svc, emu, smtp)
        await emu.control.patch_settings(**settings)
        when = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M:00")
        campaign = await emu.control.create_campaign(
            TENANT, channel_ids=[EMAIL], customer_count=CUSTOMERS,
            scheduled_times=[{"scheduled_time": when}], attribute_values={"FirstName": ["Ann", "Bo"]},
        )  # fmt: skip
        assert campaign["channel_template_ids"] == {str(EMAIL): [1, 2]}  # drawn from the registered
        if faults and "storm" in faults:
            await emu.control.rate_limit_storm(**faults["storm"])
        if faults and "fault" in faults:
            await emu.control.add_fault(**faults["fault"])
        result = await emu.control.notify(TENANT, event_type_ids=events, campaign_id=campaign["campaign_id"])
        assert [d["status"] for d in result["deliveries"]] == [200] * len(events), result
        payload = result["deliveries"][-1]["payload"]
        assert {
            "ChannelId-key": lambda: "ChannelId" in payload and "ChannelID" not in payload,
            "string-ids": lambda: payload["CampaignID"] == str(campaign["campaign_id"]),
            "timestamp-without-seconds": lambda: len(payload["TimeStamp"]) == 16,
        }.get(quirk, lambda: True)(), payload
        await svc.wait_idle()
        await wait_all_sent(svc, campaign["campaign_id"])
        await asyncio.sleep(0.5)  # room for a duplicate to show up

        ids = Counter(smtp.message_ids)
        assert len(ids) == CUSTOMERS
        assert set(ids.values()) == {1}
        assert len({m.rcpt_tos for m in smtp.messages}) == CUSTOMERS
        assert await svc.failed_jobs() == []
        if faults:
            calls = await emu.control.requests(function=SEND_DETAILS)
            assert any(c["fault_ids"] for c in calls), "the quirk was never produced"

"""The control API: tenants, notifications to listeners, fault injection, OpenAPI, CLI."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import typer
from typer.testing import CliRunner

from optibridge.emulator.command import register
from optibridge.emulator.control_client import EmulatorControlError
from optibridge.emulator.testing import RunningEmulator

KEY = {"X-API-KEY": "key-1"}
PATH = "/current/general/GetLastDataUpdate"


async def status_of(http: aiohttp.ClientSession, emu: RunningEmulator, path: str = PATH) -> int:
    async with http.get(emu.base_url + path, headers=KEY) as r:
        await r.read()
        return r.status


async def register_listener(
    http: aiohttp.ClientSession, emu: RunningEmulator, event: int, url: str, channel: int | None
) -> None:
    body: dict[str, Any] = {"EventTypeID": event, "ListenerURL": url}
    if channel is not None:
        body["ChannelID"] = channel
    async with http.post(
        emu.base_url + "/current/general/RegisterEventListener", headers=KEY, json=body
    ) as r:
        assert r.status == 200


async def test_tenants_are_created_listed_and_conflicts_refused(emulator: RunningEmulator) -> None:
    created = await emulator.control.create_tenant("t2", api_key="key-2")
    assert created["api_keys"] == ["key-2"]
    assert [t["tenant_id"] for t in await emulator.control.request("GET", "/tenants")] == [
        "t1",
        "t2",
    ]
    with pytest.raises(EmulatorControlError) as conflict:
        await emulator.control.create_tenant("t3", api_key="key-2")
    assert conflict.value.status == 409
    with pytest.raises(EmulatorControlError) as missing:
        await emulator.control.metrics("nobody")
    assert missing.value.status == 404


async def test_tenants_are_isolated(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    await emulator.control.create_tenant("t2", api_key="key-2")
    await register_listener(http, emulator, 1, "http://127.0.0.1:9/x", None)
    assert len(await emulator.control.listeners("t1")) == 1
    assert await emulator.control.listeners("t2") == []


async def test_campaign_notification_reaches_channel_listener_and_is_logged(
    emulator: RunningEmulator, http: aiohttp.ClientSession, listener: Any
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=9, customer_count=5,
                                           channel_ids=[504, 505])  # fmt: skip
    await register_listener(http, emulator, 1, listener.url, 504)
    await register_listener(http, emulator, 13, listener.url, None)
    result = await emulator.control.notify("t1", event_type_ids=[1, 13], campaign_id=9,
                                           timestamp="2024-05-01 10:00:00")  # fmt: skip
    assert [d["status"] for d in result["deliveries"]] == [200, 200, 200]
    assert listener.received == [
        {"EventTypeID": 1, "TimeStamp": "2024-05-01 10:00:00", "CampaignID": 9},
        {"EventTypeID": 13, "TimeStamp": "2024-05-01 10:00:00", "CampaignID": 9, "ChannelID": 504},
        {"EventTypeID": 13, "TimeStamp": "2024-05-01 10:00:00", "CampaignID": 9, "ChannelID": 505},
    ]
    log = await emulator.control.deliveries("t1")
    assert [(d["event_type_id"], d["channel_id"], d["status"]) for d in log] == [
        (1, None, 200), (13, 504, 200), (13, 505, 200)
    ]  # fmt: skip


async def test_duplicates_and_out_of_order_delivery_for_idempotency_tests(
    emulator: RunningEmulator, http: aiohttp.ClientSession, listener: Any
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=9, channel_ids=[504, 505, 506])
    await register_listener(http, emulator, 13, listener.url, None)
    result = await emulator.control.notify(
        "t1", event_type_ids=[13], campaign_id=9, duplicates=2, shuffle=True, casing="camel"
    )
    assert result["planned"] == 6
    channels = [p["channelId"] for p in listener.received]
    assert sorted(channels) == [504, 504, 505, 505, 506, 506]
    assert channels != sorted(channels)  # seeded shuffle: this order is fixed for seed 0


async def test_delivery_log_records_listener_errors_and_unreachable_listeners(
    emulator: RunningEmulator, http: aiohttp.ClientSession, listener: Any
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=9)
    listener.status = 503
    await register_listener(http, emulator, 1, listener.url, None)
    await register_listener(http, emulator, 4, "http://127.0.0.1:9/closed", None)
    result = await emulator.control.notify("t1", event_type_ids=[1, 4], campaign_id=9)
    (first, second) = result["deliveries"]
    assert (first["status"], first["error"]) == (503, None)
    assert second["status"] is None
    assert "Connect" in second["error"]


async def test_cancel_fires_event_4_and_daily_events_need_no_campaign(
    emulator: RunningEmulator, http: aiohttp.ClientSession, listener: Any
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=9, customer_count=10)
    await register_listener(http, emulator, 4, listener.url, None)
    await register_listener(http, emulator, 3, listener.url, None)
    await register_listener(http, emulator, 5, listener.url, None)
    cancel = await emulator.control.cancel("t1", 9, fraction=0.5)
    assert cancel["canceled_customers"] == 5
    await emulator.control.notify("t1", event_type_ids=[3])
    await emulator.control.notify("t1", event_type_ids=[5], campaign_id=9,
                                  clearance_required_by="2024-05-02 08:00:00")  # fmt: skip
    assert [p["EventTypeID"] for p in listener.received] == [4, 3, 5]
    assert "CampaignID" not in listener.received[1]
    assert listener.received[2]["ClearanceRequiredBy"] == "2024-05-02 08:00:00"
    with pytest.raises(EmulatorControlError) as error:
        await emulator.control.notify("t1", event_type_ids=[1])
    assert error.value.status == 422


async def test_notifications_can_be_fired_without_waiting(
    emulator: RunningEmulator, http: aiohttp.ClientSession, listener: Any
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=9)
    await register_listener(http, emulator, 1, listener.url, None)
    result = await emulator.control.notify("t1", event_type_ids=[1], campaign_id=9, wait=False)
    assert result == {"planned": 1, "deliveries": []}
    for _ in range(100):
        if listener.received:
            break
        await asyncio.sleep(0.01)
    assert listener.received[0]["CampaignID"] == 9


async def test_injected_errors_hit_the_chosen_function_the_chosen_number_of_times(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    fault = await emulator.control.add_fault(function="getlastdataupdate", status_codes=[500], times=2)
    statuses = [await status_of(http, emulator) for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert await status_of(http, emulator, "/current/actions/GetExecutionChannels") == 200
    log = await emulator.control.requests(function="GetLastDataUpdate")
    assert [r["fault_ids"] for r in log] == [[fault["fault_id"]], [fault["fault_id"]], []]


async def test_error_rate_is_a_seeded_fraction_of_requests(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await emulator.control.add_fault(status_codes=[502, 503], error_rate=0.5)
    statuses = [await status_of(http, emulator) for _ in range(60)]
    failures = [s for s in statuses if s != 200]
    assert 15 <= len(failures) <= 45
    assert set(failures) <= {502, 503}


async def test_latency_and_hang_delay_the_answer(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await emulator.control.add_fault(latency_ms=150, times=1)
    started = time.perf_counter()
    assert await status_of(http, emulator) == 200
    assert time.perf_counter() - started >= 0.15
    await emulator.control.add_fault(hang_s=5, times=1)
    with pytest.raises(TimeoutError):
        async with http.get(emulator.base_url + PATH, headers=KEY,
                            timeout=aiohttp.ClientTimeout(total=0.2)) as r:  # fmt: skip
            await r.read()
    assert await status_of(http, emulator) == 200  # the server is not stuck behind the hang


async def test_rate_limit_storm_by_requests_and_by_seconds(clocked: Any, http: aiohttp.ClientSession) -> None:
    emu, clock = clocked.emu, clocked.clock
    await emu.control.patch_settings(rate_limit_enabled=False)
    await emu.control.rate_limit_storm(requests=2, retry_after_s=3)
    async with http.get(emu.base_url + PATH, headers=KEY) as r:
        assert (r.status, r.headers["Retry-After"]) == (429, "3")
        assert (await r.json())["error"] == "Too Many Requests"
    assert [await status_of(http, emu) for _ in range(2)] == [429, 200]
    await emu.control.rate_limit_storm(seconds=30)
    assert await status_of(http, emu) == 429
    clock.advance(31)
    assert await status_of(http, emu) == 200


async def test_faults_can_be_listed_and_cleared(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await emulator.control.add_fault(status_codes=[500])
    assert len(await emulator.control.request("GET", "/faults")) == 1
    await emulator.control.clear_faults()
    assert await status_of(http, emulator) == 200


async def test_openapi_documents_the_control_api_but_not_the_catch_all(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(emulator.base_url + "/openapi.json") as r:
        paths = (await r.json())["paths"]
    for path in (
        "/emulator/tenants",
        "/emulator/tenants/{tenant_id}/campaigns",
        "/emulator/tenants/{tenant_id}/notifications",
        "/emulator/faults",
        "/emulator/faults/rate-limit-storm",
        "/emulator/tenants/{tenant_id}/metrics",
    ):
        assert path in paths  # fmt: skip
    assert "/{path}" not in paths


def test_cli_command_is_registered_with_its_options() -> None:
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:
        """Force sub-command mode, as the main CLI has."""

    result = CliRunner().invoke(app, ["emulator", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--host", "--port", "--no-rate-limit", "--token-ttl", "--seed", "--tenant"):
        assert option in result.output
    bad = CliRunner().invoke(app, ["emulator", "--tenant", "just-one-part"])
    assert bad.exit_code != 0

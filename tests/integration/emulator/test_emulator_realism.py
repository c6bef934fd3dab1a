"""The emulator is no kinder than Optimove: registered templates only, stable attribute values,
the response shapes on record behind switches, and the calls that used to be 404."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest

from optibridge.emulator.control_client import EmulatorControlError
from optibridge.emulator.testing import RunningEmulator
from optibridge.optimove import (
    ApiKeyAuth,
    ChannelTemplate,
    OptimoveClient,
    OptimoveClientConfig,
    OptimoveResponseError,
    RateLimiterRegistry,
    RetryPolicy,
)

TENANT = "t1"
KEY = {"X-API-KEY": "key-1"}


async def raw(
    http: aiohttp.ClientSession, emu: RunningEmulator, path: str, **params: Any
) -> tuple[int, bytes, dict[str, str]]:
    query = {k.replace("_dollar_", "$"): str(v) for k, v in params.items()}
    async with http.get(emu.base_url + "/current/" + path, headers=KEY, params=query) as r:
        return r.status, await r.read(), dict(r.headers)


async def get(http: aiohttp.ClientSession, emu: RunningEmulator, path: str, **params: Any) -> Any:
    status, body, _ = await raw(http, emu, path, **params)
    assert status == 200, body
    return json.loads(body)


async def register(http: aiohttp.ClientSession, emu: RunningEmulator, channel: int, *ids: int) -> None:
    items = [{"TemplateID": i, "TemplateName": f"T{i}"} for i in ids]
    url = f"{emu.base_url}/current/integrations/AddChannelTemplates?ChannelID={channel}"
    async with http.post(url, headers=KEY, json=items) as r:
        assert r.status == 200


# -- 1. templates ------------------------------------------------------------------------------


async def test_campaign_without_templates_draws_from_each_channels_registered_ones(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await register(http, emulator, 504, 11, 12)
    await register(http, emulator, 505, 70)
    info = await emulator.control.create_campaign(
        TENANT, campaign_id=5, customer_count=200, channel_ids=[504, 505]
    )
    assert info["channel_template_ids"] == {"504": [11, 12], "505": [70]}
    assert info["unregistered_template_ids"] == {}
    email = await get(
        http, emulator, "customers/GetCustomerSendDetailsByChannel", CampaignID=5, ChannelID=504
    )
    sms = await get(http, emulator, "customers/GetCustomerSendDetailsByChannel", CampaignID=5, ChannelID=505)
    assert {r["TemplateID"] for r in email} == {11, 12}
    assert {r["TemplateID"] for r in sms} == {70}
    assert [r["CustomerID"] for r in email] == [r["CustomerID"] for r in sms]


async def test_unregistered_templates_are_flagged_by_default_and_refused_when_strict(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await register(http, emulator, 504, 1)
    flagged = await emulator.control.create_campaign(
        TENANT, campaign_id=1, channel_ids=[504], templates=[{"template_id": 1}, {"template_id": 9}]
    )
    assert flagged["unregistered_template_ids"] == {"504": [9]}
    no_templates = await emulator.control.create_campaign(TENANT, campaign_id=2, channel_ids=[505])
    assert no_templates["channel_template_ids"] == {"505": [1]}  # the lenient fallback
    assert no_templates["unregistered_template_ids"] == {"505": [1]}

    await emulator.control.patch_settings(strict_templates=True)
    with pytest.raises(EmulatorControlError, match=r"channel 504: \[9\]") as refused:
        await emulator.control.create_campaign(
            TENANT, campaign_id=3, channel_ids=[504], templates=[{"template_id": 9}]
        )
    assert refused.value.status == 409
    with pytest.raises(EmulatorControlError, match=r"channel 505: \[1\]"):
        await emulator.control.create_campaign(TENANT, campaign_id=4, channel_ids=[505])
    ok = await emulator.control.create_campaign(TENANT, campaign_id=6, channel_ids=[504])
    assert ok["template_ids"] == [1]


# -- 2. stable attribute values ------------------------------------------------------------------


async def test_attribute_values_do_not_depend_on_which_attributes_are_requested(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await emulator.control.create_campaign(
        TENANT, campaign_id=7, customer_count=50, attribute_values={"Tier": ["gold", "silver", "bronze"]}
    )

    async def values(names: str) -> list[dict[str, str]]:
        rows = await get(
            http, emulator, "customers/GetCustomerSendDetailsByChannel",
            CampaignID=7, ChannelID=504, CustomerAttributes=names,
        )  # fmt: skip
        return [dict(zip(names.split(";"), r["CustomerAttributes"], strict=True)) for r in rows]

    alone = await values("Country")
    mixed = await values("Tier;FirstName;Country")
    reordered = await values("Country;Language;FirstName;Tier")
    assert [r["Country"] for r in alone] == [r["Country"] for r in mixed] == [r["Country"] for r in reordered]
    assert [r["FirstName"] for r in mixed] == [r["FirstName"] for r in reordered]
    assert [r["Tier"] for r in mixed] == [r["Tier"] for r in reordered]
    assert len({r["Country"] for r in alone}) > 3  # still spread out


# -- 3. response shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "body"), [("array", b"[]"), ("null", b"null"), ("empty", b"")]
)  # fmt: skip
async def test_empty_lists_answer_as_the_switch_says(
    emulator: RunningEmulator, http: aiohttp.ClientSession, shape: str, body: bytes
) -> None:
    await emulator.control.create_campaign(TENANT, campaign_id=8, customer_count=3)
    await emulator.control.patch_settings(empty_list_body=shape)
    for path, params in [
        ("customers/GetCustomerSendDetailsByChannel", {"CampaignID": 8, "ChannelID": 504, "_dollar_skip": 3}),
        ("integrations/GetChannelTemplates", {"ChannelID": 504}),
        ("actions/GetExecutedCampaignsByChannel", {"ChannelID": 504, "Date": "1999-01-01"}),
    ]:
        status, answer, _ = await raw(http, emulator, path, **params)
        assert (status, answer) == (200, body), path
    full = await get(http, emulator, "customers/GetCustomerSendDetailsByChannel", CampaignID=8, ChannelID=504)
    assert len(full) == 3


@pytest.mark.parametrize(
    ("style", "expected"),
    [("seconds", "2026-12-01 10:00:00"), ("minutes", "2026-12-01 10:00"), ("iso", "2026-12-01T10:00:00Z")],
)
async def test_scheduled_time_shapes(
    emulator: RunningEmulator, http: aiohttp.ClientSession, style: str, expected: str
) -> None:
    await emulator.control.create_campaign(
        TENANT, campaign_id=9, customer_count=4, scheduled_times=[{"scheduled_time": "2026-12-01 10:00:00"}]
    )
    await emulator.control.patch_settings(scheduled_time_format=style)
    rows = await get(http, emulator, "customers/GetCustomerSendDetailsByChannel", CampaignID=9, ChannelID=504)
    assert {r["ScheduledTime"] for r in rows} == {expected}
    details = await get(
        http, emulator, "actions/GetExecutedCampaignChannelDetails", CampaignID=9, ChannelID=504
    )
    assert [d["ScheduledTime"] for d in details] == [expected]


async def test_retry_after_as_an_http_date(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    await emulator.control.patch_settings(retry_after_format="http-date")
    await emulator.control.rate_limit_storm(requests=1, retry_after_s=3)
    before = datetime.now(UTC)
    status, _, headers = await raw(http, emulator, "general/GetLastDataUpdate")
    assert status == 429
    when = parsedate_to_datetime(headers["Retry-After"])  # type: ignore[index]
    assert 2 <= (when - before).total_seconds() <= 5


async def test_200_with_an_error_string(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    await emulator.control.add_fault(function="GetChannelTemplates", error_string="Error: try later", times=1)
    status, body, _ = await raw(http, emulator, "integrations/GetChannelTemplates", ChannelID=504)
    assert (status, body) == (200, b'"Error: try later"')
    status, body, _ = await raw(http, emulator, "integrations/GetChannelTemplates", ChannelID=504)
    assert (status, body) == (200, b"[]")  # the rule fired once


async def test_notification_id_key_and_string_ids(emulator: RunningEmulator, listener: Any) -> None:
    await emulator.control.create_campaign(TENANT, campaign_id=10, channel_ids=[504])
    async with aiohttp.ClientSession() as http:
        url = f"{emulator.base_url}/current/general/RegisterEventListener"
        async with http.post(url, headers=KEY, json={"EventTypeID": 13, "ListenerURL": listener.url}) as r:
            assert r.status == 200
    await emulator.control.patch_settings(
        notification_id_key="Id", notification_ids_as_strings=True, notification_time_format="minutes"
    )
    await emulator.control.notify(TENANT, event_type_ids=[13], campaign_id=10, timestamp=None)
    payload = listener.received[-1]
    assert set(payload) == {"EventTypeId", "TimeStamp", "CampaignId", "ChannelId"}
    assert (payload["EventTypeId"], payload["CampaignId"], payload["ChannelId"]) == ("13", "10", "504")
    assert len(payload["TimeStamp"]) == 16


# -- 4. the calls that used to be 404 -----------------------------------------------------------


async def test_send_details_by_campaign_and_executed_campaigns(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await emulator.control.create_campaign(
        TENANT, campaign_id=20, customer_count=3, channel_ids=[504, 505],
        scheduled_times=[{"scheduled_time": "2026-12-01 10:00:00"}], templates=[{"template_id": 4}],
    )  # fmt: skip
    rows = await get(http, emulator, "customers/GetCustomerSendDetailsByCampaign", CampaignID=20)
    assert [(r["CustomerID"], r["ChannelID"]) for r in rows] == [
        ("C1", 504), ("C2", 504), ("C3", 504), ("C1", 505), ("C2", 505), ("C3", 505)
    ]  # fmt: skip
    assert set(rows[0]) == {"CustomerID", "ChannelID", "ScheduledTime", "SendID"}
    paged = await get(
        http, emulator, "customers/GetCustomerSendDetailsByCampaign",
        CampaignID=20, IncludeTemplateIDs="true", _dollar_skip=2, _dollar_top=2,
    )  # fmt: skip
    assert [(r["CustomerID"], r["ChannelID"], r["TemplateID"]) for r in paged] == [
        ("C3", 504, 4),
        ("C1", 505, 4),
    ]
    executed = await get(
        http, emulator, "actions/GetExecutedCampaignsByChannel", ChannelID=505, Date="2026-12-01"
    )
    assert executed == [{"CampaignID": 20}]
    details = await get(
        http, emulator, "actions/GetExecutedCampaignChannelDetails", CampaignID=20, ChannelID=504
    )
    assert details == [{"SendID": rows[0]["SendID"], "TemplateID": 4, "ScheduledTime": "2026-12-01 10:00:00"}]


async def test_execution_details_attribute_list_and_promotion_status(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await register(http, emulator, 504, 3)
    await emulator.control.create_campaign(
        TENANT,
        campaign_id=30,
        customer_count=2,
        promo_code="A7Bonus,A9Bonus",
        attribute_values={"Tier": ["gold"]},
    )
    rows = await get(
        http, emulator, "customers/GetCustomerExecutionDetailsByCampaign",
        CampaignID=30, ChannelID=504, CustomerAttributes="Tier;Email",
    )  # fmt: skip
    assert rows[0] == {
        "CustomerID": "C1", "ActionID": 1, "ChannelID": 504, "TemplateID": 3, "TemplateName": "T3",
        "ScheduleTime": rows[0]["ScheduleTime"], "PromoCode": "A7Bonus,A9Bonus",
        "CustomerAttributes": ["gold", "c1@example.com"],
    }  # fmt: skip
    names = [a["RealFieldName"] for a in await get(http, emulator, "model/GetCustomerAttributeList")]
    assert {"Email", "FirstName", "Tier"} <= set(names)
    body = {"TimeStamp": None, "CampaignID": 30, "PromosUpdated": [{"CustomerId": "C1", "Status": True}]}
    url = f"{emulator.base_url}/current/integrations/UpdateCustomerPromotionStatus"
    async with http.post(url, headers=KEY, json=body) as r:
        assert (r.status, await r.read()) == (200, b"")
    assert await emulator.control.promotion_statuses(TENANT) == [
        {"campaign_id": 30, "customer_id": "C1", "status": True}
    ]
    async with http.post(url, headers=KEY, json={**body, "CampaignID": 31}) as r:
        assert r.status == 400


# -- our client against each shape ---------------------------------------------------------------


def client_for(emu: RunningEmulator, attempts: int = 4) -> OptimoveClient:
    config = OptimoveClientConfig(
        emu.base_url,
        ApiKeyAuth("key-1"),
        retry=RetryPolicy(max_attempts=attempts, initial_delay_s=0.01, max_delay_s=0.05),
        rate_limit=None,
        page_size=3,
    )
    return OptimoveClient(config, limiters=RateLimiterRegistry())


@pytest.mark.parametrize("shape", ["array", "null", "empty"])
async def test_client_reads_null_and_empty_bodies_as_empty_lists(
    emulator: RunningEmulator, shape: str
) -> None:
    await emulator.control.create_campaign(TENANT, campaign_id=40, customer_count=7)
    await emulator.control.patch_settings(empty_list_body=shape)
    async with client_for(emulator) as client:
        assert await client.get_channel_templates(505) == []
        pages = [p async for p in client.iter_send_details(40, 504)]
        assert [len(p.rows) for p in pages] == [3, 3, 1]
        assert await client.get_canceled_campaign_customers(40) == []


async def test_client_retries_a_200_error_string_and_then_gives_a_clear_error(
    emulator: RunningEmulator,
) -> None:
    await emulator.control.add_fault(function="GetChannelTemplates", error_string="Error: busy", times=2)
    async with client_for(emulator) as client:
        assert await client.get_channel_templates(504) == []
        assert client.retries == 2
    await emulator.control.add_fault(function="AddChannelTemplates", error_string="Error: nope")
    async with client_for(emulator, attempts=2) as client:
        with pytest.raises(OptimoveResponseError, match=r"error message instead of data") as err:
            await client.add_channel_templates(504, [ChannelTemplate(1, "T1")])
    assert (err.value.retryable, err.value.status, err.value.attempts) == (True, 200, 2)
    # Our words only in the message (an upstream body never reaches an API caller); the text is
    # kept on the exception for debugging.
    assert "nope" not in str(err.value)
    assert "Error: nope" in err.value.body_excerpt


async def test_client_honours_an_http_date_retry_after(emulator: RunningEmulator) -> None:
    await emulator.control.patch_settings(retry_after_format="http-date")
    await emulator.control.rate_limit_storm(requests=1, retry_after_s=1)
    async with client_for(emulator) as client:
        started = time.monotonic()
        assert await client.get_channel_templates(504) == []
        assert time.monotonic() - started >= 0.5
        assert client.retries == 1

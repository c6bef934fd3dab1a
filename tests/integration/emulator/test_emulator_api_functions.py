"""What each emulated function does with the tenant's state (raw HTTP, no client)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from optibridge.emulator.testing import RunningEmulator

KEY = {"X-API-KEY": "key-1"}


async def get(http: aiohttp.ClientSession, emu: RunningEmulator, path: str, **params: Any) -> Any:
    query = {k.replace("_dollar_", "$"): str(v) for k, v in params.items()}
    async with http.get(emu.base_url + "/current/" + path, headers=KEY, params=query) as r:
        assert r.status == 200, await r.text()
        return json.loads(await r.read())


async def post(
    http: aiohttp.ClientSession, emu: RunningEmulator, path: str, body: Any, status: int = 200
) -> bytes:
    async with http.post(emu.base_url + "/current/" + path, headers=KEY, json=body) as r:
        payload = await r.read()
        assert r.status == status, payload
        return payload


async def test_listeners_register_upsert_list_and_unregister(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await post(http, emulator, "general/RegisterEventListener",
               {"EventTypeID": 1, "ListenerURL": "http://a/1", "ChannelID": 504})  # fmt: skip
    await post(http, emulator, "general/RegisterEventListener",
               {"EventTypeID": 1, "ListenerURL": "http://a/2", "ChannelID": 504})  # fmt: skip
    await post(http, emulator, "general/RegisterEventListener",
               {"EventTypeID": 13, "ListenerURL": "http%3A%2F%2Fa%2F13"})  # fmt: skip
    listed = await get(http, emulator, "general/GetRegisteredEventListeners")
    assert listed == [
        {"EventTypeID": 1, "ListenerURL": "http://a/2", "ChannelID": 504},
        {"EventTypeID": 13, "ListenerURL": "http://a/13", "ChannelID": None},
    ]
    await post(
        http, emulator, "general/UnRegisterEventListener", {"EventTypeID": 1, "ChannelID": 505}
    )  # another channel: nothing to remove
    await post(http, emulator, "general/UnregisterEventListener", {"EventTypeID": 13})
    listed = await get(http, emulator, "general/GetRegisteredEventListeners")
    assert [x["EventTypeID"] for x in listed] == [1]


@pytest.mark.parametrize(
    "body",
    [{"EventTypeID": 99, "ListenerURL": "http://a"}, {"EventTypeID": 1},
     {"EventTypeID": 1, "ListenerURL": "ftp://a"},
     {"EventTypeID": 5, "ListenerURL": "http://a", "ChannelID": 504}, [1]],
)  # fmt: skip
async def test_invalid_listener_registrations_are_400(
    emulator: RunningEmulator, http: aiohttp.ClientSession, body: Any
) -> None:
    await post(http, emulator, "general/RegisterEventListener", body, status=400)
    assert emulator.state.tenants["t1"].listeners == {}


async def test_templates_upsert_by_id_and_delete(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    path = "integrations/AddChannelTemplates?ChannelID=504"
    await post(http, emulator, path, [{"TemplateID": 1, "TemplateName": "Welcome"},
                                      {"TemplateID": 2, "TemplateName": "Promo"}])  # fmt: skip
    await post(http, emulator, path, [{"TemplateID": 1, "TemplateName": "Welcome v2"}])
    assert await get(http, emulator, "integrations/GetChannelTemplates", ChannelID=504) == [
        {"TemplateID": 1, "TemplateName": "Welcome v2"},
        {"TemplateID": 2, "TemplateName": "Promo"},
    ]
    assert await get(http, emulator, "integrations/GetChannelTemplates", ChannelID=505) == []
    await post(
        http,
        emulator,
        "integrations/DeleteChannelTemplates",
        [{"ChannelID": 504, "TemplateID": 2}, {"ChannelID": 504, "TemplateID": 77}],
    )
    assert [
        t["TemplateID"] for t in await get(http, emulator, "integrations/GetChannelTemplates", ChannelID=504)
    ] == [1]


@pytest.mark.parametrize(
    "item", [{"TemplateID": "1", "TemplateName": "x"}, {"TemplateID": 1, "TemplateName": ""},
             {"TemplateID": 1}, {"TemplateID": True, "TemplateName": "x"}],
)  # fmt: skip
async def test_templates_need_an_integer_id_and_a_name(
    emulator: RunningEmulator, http: aiohttp.ClientSession, item: dict[str, Any]
) -> None:
    await post(http, emulator, "integrations/AddChannelTemplates?ChannelID=504", [item], 400)


async def test_templates_need_the_channel_in_the_query(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    body = [{"TemplateID": 1, "TemplateName": "x"}]
    answer = await post(http, emulator, "integrations/AddChannelTemplates", body, 400)
    assert "ChannelID" in json.loads(answer)["message"]


async def test_apps_add_and_delete(emulator: RunningEmulator, http: aiohttp.ClientSession) -> None:
    await post(
        http,
        emulator,
        "integrations/AddChannelApps?ChannelID=506",
        [{"AppID": "ios", "AppName": "iOS"}, {"AppID": 7, "AppName": "Android"}],
    )
    await post(http, emulator, "integrations/DeleteChannelApps", [{"ChannelID": 506, "AppID": "ios"}])
    assert await emulator.control.apps("t1") == [{"channel_id": 506, "app_id": "7", "app_name": "Android"}]


async def test_metric_value_replaces_the_previous_value_per_key(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    def metric(metric_id: int, value: float, template: int = 1) -> dict[str, Any]:
        return {"CampaignID": 9, "ChannelID": 504, "TemplateID": template, "MetricID": metric_id,
                "MetricValue": value}  # fmt: skip

    await post(
        http,
        emulator,
        "integrations/UpdateCampaignMetrics",
        [metric(0, 100), metric(1, 90), metric(0, 5, template=2)],
    )
    await post(http, emulator, "integrations/UpdateCampaignMetrics", [metric(0, 120)])
    values = {(m["template_id"], m["metric_id"]): m["value"]
              for m in await emulator.control.metrics("t1")}  # fmt: skip
    assert values == {(1, 0): 120.0, (1, 1): 90.0, (2, 0): 5.0}
    await post(
        http, emulator, "integrations/UpdateCampaignMetrics", [{**metric(0, 1), "MetricValue": "many"}], 400
    )


async def test_interactions_accumulate_per_day_and_deduplicate_customers(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    base = {"CampaignID": 9, "ChannelID": 504, "TemplateID": 1, "EventID": 2}
    path = "integrations/UpdateCampaignInteractions"
    await post(http, emulator, path, {**base, "InteractionDate": "2024-05-01",
                                      "CustomerIDs": ["a", "b"]})  # fmt: skip
    await post(http, emulator, path, {**base, "InteractionDate": "2024-05-01",
                                      "CustomerIDs": ["b", "c"], "AppID": "app1"})  # fmt: skip
    await post(http, emulator, path, {**base, "InteractionDate": "2024-05-02",
                                      "CustomerIDs": ["a"]})  # fmt: skip
    got = await emulator.control.interactions("t1")
    assert [(i["date"], i["customer_ids"], i["calls"]) for i in got] == [
        ("2024-05-01", ["a", "b", "c"], 2),
        ("2024-05-02", ["a"], 1),
    ]
    assert got[0]["recipient_group_ids"] == [1]
    assert got[0]["app_ids"] == ["app1"]
    await post(http, emulator, path, {**base, "CustomerIDs": ["a"]}, 400)  # no InteractionDate


async def test_channel_preferences_are_stored_per_customer(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    path = "integrations/SetCustomerChannelPreference"
    await post(http, emulator, path, {"ChannelID": 504, "CommunicationMode": 2,
                                      "CustomerIDs": ["a", "b"]})  # fmt: skip
    await post(http, emulator, path, {"ChannelID": 504, "CommunicationMode": 1,
                                      "CustomerIDs": ["b"]})  # fmt: skip
    modes = {p["customer_id"]: p["communication_mode"]
             for p in await emulator.control.preferences("t1")}  # fmt: skip
    assert modes == {"a": 2, "b": 1}


async def test_send_details_page_with_top_and_skip_and_clamp_top(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await emulator.control.patch_settings(max_page_size=50)
    await emulator.control.create_campaign("t1", campaign_id=9, customer_count=120,
                                           channel_ids=[504, 505])  # fmt: skip
    path = "customers/GetCustomerSendDetailsByChannel"
    page = await get(http, emulator, path, CampaignID=9, ChannelID=505, _dollar_top=30,
                     _dollar_skip=100, CustomerAttributes="Email;Country")  # fmt: skip
    assert [r["CustomerID"] for r in page] == [f"C{i}" for i in range(101, 121)]
    assert set(page[0]) == {"CustomerID", "TemplateID", "ScheduledTime", "CustomerAttributes"}
    assert page[0]["CustomerAttributes"][0] == "c101@example.com"
    assert len(await get(http, emulator, path, CampaignID=9, ChannelID=504, _dollar_top=1000)) == 50
    assert len(await get(http, emulator, path, CampaignID=9, ChannelID=504)) == 50
    assert await get(http, emulator, path, CampaignID=9, ChannelID=504, _dollar_skip=120) == []
    assert await get(http, emulator, path, CampaignID=9, ChannelID=506) == []
    assert await get(http, emulator, path, CampaignID=404, ChannelID=504) == []
    async with http.get(emulator.base_url + "/current/" + path, headers=KEY,
                        params={"CampaignID": "9"}) as r:  # fmt: skip
        assert r.status == 400  # ChannelID is required


async def test_send_details_legacy_attribute_string(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await emulator.control.create_campaign("t1", campaign_id=9, customer_count=2,
                                           attribute_format="string")  # fmt: skip
    page = await get(http, emulator, "customers/GetCustomerSendDetailsByChannel", CampaignID=9,
                     ChannelID=504, CustomerAttributes="Email;Alias",
                     CustomerAttributesDelimiter=";")  # fmt: skip
    assert page[1]["CustomerAttribute"] == "c2@example.com;c2"


async def test_campaign_details_execution_channels_and_last_data_update(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    await emulator.control.create_campaign(
        "t1", campaign_id=9, customer_count=10, channel_ids=[504, 777], details={"Tags": ["vip"]}
    )
    details = await get(http, emulator, "actions/GetCampaignDetails", CampaignID=9)
    assert details["Channels"] == [{"Id": 504}, {"Id": 777}]
    assert details["IsMultiChannel"] is True
    assert details["Tags"] == ["vip"]
    async with http.get(emulator.base_url + "/current/actions/GetCampaignDetails",
                        headers=KEY, params={"CampaignID": "10"}) as r:  # fmt: skip
        assert r.status == 400
    channels = await get(http, emulator, "actions/GetExecutionChannels")
    assert {"ChannelID": 777, "ChannelName": "Channel 777"} in channels
    last = await get(http, emulator, "general/GetLastDataUpdate")
    assert len(last["Date"]) == 10


async def test_canceled_customers_appear_after_cancel_and_expire_later(
    clocked: Any, http: aiohttp.ClientSession
) -> None:
    emu = clocked.emu
    await emu.control.patch_settings(rate_limit_enabled=False)
    await emu.control.create_campaign("t1", campaign_id=9, customer_count=40, promo_code="P1")
    path = "customers/GetCanceledCampaignCustomers"
    assert await get(http, emu, path, CampaignID=9) == []
    result = await emu.control.cancel("t1", 9, fraction=0.25, notify=False)
    assert result["canceled_customers"] == 10
    canceled = await get(http, emu, path, CampaignID=9)
    assert len(canceled) == 10
    assert canceled[0]["ActionID"] == "4"
    assert canceled[0]["PromoCode"] == "P1"
    assert await get(http, emu, path, CampaignID=9, _dollar_top=3, _dollar_skip=8) == canceled[8:]
    details = await get(http, emu, "actions/GetCampaignDetails", CampaignID=9)
    assert details["Status"] == "Canceled"
    clocked.clock.advance(7201)  # "available for 2 hours"
    assert await get(http, emu, path, CampaignID=9) == []

"""Every client call against the emulator over a real loopback socket."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from optibridge.emulator.testing import RunningEmulator
from optibridge.optimove import (
    CampaignMetric,
    ChannelApp,
    ChannelTemplate,
    EventListener,
    LoginAuth,
    MetricID,
    OptimoveClient,
)

MakeClient = Callable[..., OptimoveClient]  # the conftest fixture's type


async def test_login_returns_a_token_the_emulator_issued(
    emulator: RunningEmulator, make_client: MakeClient, login_auth: LoginAuth
) -> None:
    client = make_client(login_auth)
    token = await client.login()
    assert token in emulator.state.tokens


async def test_listeners_register_list_and_unregister(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    await client.register_event_listener(1, "http://127.0.0.1:8080/hook?t=1", channel_id=504)
    await client.register_event_listener(13, "http://127.0.0.1:8080/hook13")
    assert await client.get_registered_event_listeners() == [
        EventListener(1, "http://127.0.0.1:8080/hook?t=1", 504),
        EventListener(13, "http://127.0.0.1:8080/hook13", None),
    ]
    await client.unregister_event_listener(1, channel_id=504)
    assert [x.event_type_id for x in await client.get_registered_event_listeners()] == [13]


async def test_templates_are_added_in_batches_of_100_then_deleted(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    await client.add_channel_templates(504, [ChannelTemplate(i, f"T{i}") for i in range(1, 251)])
    calls = await emulator.control.requests(function="AddChannelTemplates")
    assert [c["status"] for c in calls] == [200, 200, 200]
    templates = await client.get_channel_templates(504)
    assert len(templates) == 250
    assert templates[0] == ChannelTemplate(1, "T1")
    await client.delete_channel_templates(504, range(1, 201))
    assert [t.template_id for t in await client.get_channel_templates(504)] == list(range(201, 251))
    assert len(await emulator.control.requests(function="DeleteChannelTemplates")) == 2


async def test_apps_are_added_and_deleted(emulator: RunningEmulator, make_client: MakeClient) -> None:
    client = make_client()
    await client.add_channel_apps(506, [ChannelApp("ios", "iOS"), ChannelApp("web", "Web")])
    await client.delete_channel_apps(506, ["ios"])
    assert await emulator.control.apps("t1") == [{"channel_id": 506, "app_id": "web", "app_name": "Web"}]


async def test_metrics_are_sent_in_batches_and_the_latest_total_wins(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    metrics = [CampaignMetric(9, 504, t, MetricID.SENT, 10.0) for t in range(150)]
    await client.update_campaign_metrics(metrics)
    await client.update_campaign_metrics([CampaignMetric(9, 504, 0, MetricID.SENT, 12.5)])
    stored = await emulator.control.metrics("t1")
    assert len(stored) == 150
    assert stored[0] == {"campaign_id": 9, "channel_id": 504, "template_id": 0, "metric_id": 0,
                         "value": 12.5}  # fmt: skip
    assert len(await emulator.control.requests(function="UpdateCampaignMetrics")) == 3


async def test_interactions_are_split_at_10000_customers(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    await client.update_campaign_interactions(
        campaign_id=9, channel_id=504, template_id=1, event_id=2,
        interaction_date=date(2024, 5, 1), customer_ids=(f"c{i}" for i in range(25_000)),
        app_id="app1",
    )  # fmt: skip
    (stored,) = await emulator.control.interactions("t1")
    assert (stored["date"], len(stored["customer_ids"]), stored["calls"]) == ("2024-05-01", 25_000, 3)
    assert stored["app_ids"] == ["app1"]
    assert stored["recipient_group_ids"] == [1]


async def test_channel_preferences_are_split_at_50000_customers(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    await client.set_customer_channel_preference(
        channel_id=504, customer_ids=[f"c{i}" for i in range(60_000)], communication_mode=2
    )
    assert len(await emulator.control.requests(function="SetCustomerChannelPreference")) == 2
    assert len(emulator.state.tenants["t1"].preferences[(504, None)]) == 60_000


async def test_campaign_details_channels_canceled_customers_and_last_update(
    emulator: RunningEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    await emulator.control.create_campaign("t1", campaign_id=9, customer_count=20,
                                           channel_ids=[504, 505], duration_days=3)  # fmt: skip
    details = await client.get_campaign_details(9)
    assert (details.channel_ids, details.duration_days, details.status) == ((504, 505), 3, "Successful")
    channels = {c.channel_id: c.channel_name for c in await client.get_execution_channels()}
    assert channels[505] == "SMS"
    assert await client.get_canceled_campaign_customers(9) == []
    await emulator.control.cancel("t1", 9, fraction=0.5, notify=False)
    canceled = await client.get_canceled_campaign_customers(9)
    assert len({c.customer_id for c in canceled}) == 10
    assert abs((await client.get_last_data_update() - datetime.now(UTC).date()).days) <= 1

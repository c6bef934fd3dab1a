import random

from optibridge.emulator.notifier import plan_notifications

LISTENERS: dict[tuple[int, int | None], str] = {
    (1, None): "http://l/all",
    (1, 504): "http://l/email",
    (1, 505): "http://l/sms",
    (13, 504): "http://l/executed-email",
    (13, None): "http://l/executed-all",
    (2, None): "http://l/daily",
    (5, None): "http://l/promo",
}


def plan(events: list[int], **kw: object) -> list[tuple[str, dict[str, object]]]:
    notes = plan_notifications(LISTENERS, events, timestamp="2024-05-01 10:00:00", **kw)  # type: ignore[arg-type]
    return [(n.url, n.payload) for n in notes]


def test_event_1_goes_to_general_and_matching_channel_listeners_without_channel_id() -> None:
    sent = plan([1], campaign_id=9, channel_ids=[504])
    assert [url for url, _ in sent] == ["http://l/all", "http://l/email"]
    assert sent[0][1] == {"EventTypeID": 1, "TimeStamp": "2024-05-01 10:00:00", "CampaignID": 9}


def test_event_13_goes_out_once_per_channel_with_its_channel_id() -> None:
    sent = plan([13], campaign_id=9, channel_ids=[504, 505])
    assert sent == [
        ("http://l/executed-all", {"EventTypeID": 13, "TimeStamp": "2024-05-01 10:00:00",
                                   "CampaignID": 9, "ChannelID": 504}),
        ("http://l/executed-all", {"EventTypeID": 13, "TimeStamp": "2024-05-01 10:00:00",
                                   "CampaignID": 9, "ChannelID": 505}),
        ("http://l/executed-email", {"EventTypeID": 13, "TimeStamp": "2024-05-01 10:00:00",
                                     "CampaignID": 9, "ChannelID": 504}),
    ]  # fmt: skip


def test_daily_events_carry_no_campaign_and_event_5_carries_clearance() -> None:
    assert plan([2], campaign_id=9) == [
        ("http://l/daily", {"EventTypeID": 2, "TimeStamp": "2024-05-01 10:00:00"})
    ]
    ((_, payload),) = plan([5], campaign_id=9, clearance_required_by="2024-05-02 08:00:00")
    assert payload["ClearanceRequiredBy"] == "2024-05-02 08:00:00"


def test_unregistered_events_send_nothing() -> None:
    assert plan([4], campaign_id=9, channel_ids=[504]) == []


def test_duplicates_repeat_each_notification_and_shuffle_is_seeded() -> None:
    doubled = plan([1], campaign_id=9, channel_ids=[504, 505], duplicates=2)
    assert len(doubled) == 6
    one = plan([1], campaign_id=9, channel_ids=[504, 505], duplicates=2, shuffle=random.Random(3))
    two = plan([1], campaign_id=9, channel_ids=[504, 505], duplicates=2, shuffle=random.Random(3))
    assert one == two
    assert sorted(map(str, one)) == sorted(map(str, doubled))


def test_camel_casing_renames_the_known_keys() -> None:
    (_, payload), _ = plan([1], campaign_id=9, channel_ids=[504], casing="camel")
    assert payload == {"eventTypeId": 1, "timeStamp": "2024-05-01 10:00:00", "campaignId": 9}

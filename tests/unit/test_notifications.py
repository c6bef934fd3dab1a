"""Listener payloads: what is accepted, how it is read, and why the rest is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from optibridge.intake.notifications import EventType, InvalidNotification, parse, parse_optimove_time


def test_event_1_in_optimove_casing() -> None:
    n = parse({"EventTypeID": 1, "TimeStamp": "2026-06-01 05:04:54", "CampaignID": 324})
    assert (n.event_type, n.campaign_id, n.channel_id) == (EventType.CAMPAIGN_PROCESSED, 324, None)
    assert n.timestamp == datetime(2026, 6, 1, 5, 4, 54, tzinfo=UTC)


def test_camel_case_keys_and_numbers_as_strings_are_read() -> None:
    n = parse({"eventTypeId": "13", "campaignId": "77", "channelId": 504, "timeStamp": "2022-07-19 08:54"})
    assert (n.event_type, n.campaign_id, n.channel_id) == (EventType.CHANNEL_EXECUTED, 77, 504)
    assert n.timestamp == datetime(2022, 7, 19, 8, 54, tzinfo=UTC)


def test_event_5_needs_its_clearance_time() -> None:
    n = parse({"EventTypeID": 5, "CampaignID": 9, "ClearanceRequiredBy": "2026-06-02T10:00:00Z"})
    assert n.clearance_required_by == datetime(2026, 6, 2, 10, tzinfo=UTC)
    with pytest.raises(InvalidNotification, match="ClearanceRequiredBy is missing"):
        parse({"EventTypeID": 5, "CampaignID": 9})


def test_daily_events_need_no_campaign() -> None:
    assert parse({"EventTypeID": 2}).campaign_id is None
    assert parse({"EventTypeID": 3, "TimeStamp": ""}).timestamp is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "must be a JSON object"),
        ("x", "must be a JSON object"),
        ({}, "EventTypeID is missing"),
        ({"EventTypeID": 99}, "not one we handle"),
        ({"EventTypeID": True}, "whole number"),
        ({"EventTypeID": 1.5}, "whole number"),
        ({"EventTypeID": 1}, "CampaignID is missing"),
        ({"EventTypeID": 4, "CampaignID": -3}, "out of range"),
        ({"EventTypeID": 4, "CampaignID": 0}, "out of range"),
        ({"EventTypeID": 1, "CampaignID": 2**70}, "out of range"),
        ({"EventTypeID": 13, "CampaignID": 1, "ChannelID": "abc"}, "ChannelID"),
        ({"EventTypeID": 5, "CampaignID": 1, "ClearanceRequiredBy": "soon"}, "unreadable date-time"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(body: Any, reason: str) -> None:
    with pytest.raises(InvalidNotification, match=reason):
        parse(body)


@pytest.mark.parametrize("stamp", ["19/07/2022 08:54", "yesterday", 1658220840, {"t": 1}])
def test_an_unreadable_timestamp_is_stored_as_null_not_a_lost_campaign(stamp: Any) -> None:
    n = parse({"EventTypeID": 1, "CampaignID": 7, "TimeStamp": stamp})
    assert (n.event_type, n.campaign_id, n.timestamp) == (EventType.CAMPAIGN_PROCESSED, 7, None)
    assert len(n.problems) == 1
    assert n.problems[0].startswith("TimeStamp")


def test_an_unreadable_channel_is_needed_only_where_nothing_else_names_it() -> None:
    body = {"EventTypeID": 13, "CampaignID": 1, "ChannelID": "email"}
    n = parse(body, channel_known=True)  # the listener URL names the channel
    assert (n.channel_id, n.campaign_id) == (None, 1)
    assert "ChannelID" in n.problems[0]
    assert parse({**body, "EventTypeID": 1}).channel_id is None  # event 1 needs none
    with pytest.raises(InvalidNotification, match="ChannelID"):
        parse(body)


def test_time_formats_all_mean_utc() -> None:
    want = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_optimove_time("2026-01-02 03:04:05") == want
    assert parse_optimove_time("2026-01-02T03:04:05Z") == want
    assert parse_optimove_time("2026-01-02T05:04:05+02:00") == want

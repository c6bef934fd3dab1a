from datetime import UTC, date, datetime

import pytest

from optibridge.optimove import responses
from optibridge.optimove.models import SendDetail

AT = datetime(2016, 8, 30, 10, 0, tzinfo=UTC)


def test_send_details_in_the_documented_array_form() -> None:
    rows = responses.parse_send_details(
        [{"CustomerID": "96134", "TemplateID": 14, "ScheduledTime": "2016-08-30 10:00:00",
          "CustomerAttributes": ["jdavis@aol.com", "US"]}]
    )  # fmt: skip
    assert rows == [SendDetail("96134", 14, AT, ("jdavis@aol.com", "US"))]


def test_send_details_in_the_legacy_delimited_string_form() -> None:
    rows = responses.parse_send_details(
        [{"CustomerID": "1", "TemplateID": 2, "ScheduledTime": "2016-08-30 10:00",
          "CustomerAttribute": "a@b.c|US"}],
        delimiter="|",
    )  # fmt: skip
    assert rows[0].attributes == ("a@b.c", "US")
    assert rows[0].scheduled_time == AT


def test_send_details_tolerate_other_key_casing_and_number_types() -> None:
    rows = responses.parse_send_details(
        [{"customerId": 42, "templateId": "7", "scheduledTime": "2016-08-30 10:00:00",
          "customerAttributes": [None, 3, "x"]}]
    )  # fmt: skip
    assert rows == [SendDetail("42", 7, AT, ("", "3", "x"))]


def test_send_details_without_attributes_have_an_empty_tuple() -> None:
    rows = responses.parse_send_details(
        [{"CustomerID": "1", "TemplateID": 1, "ScheduledTime": "2016-08-30 10:00:00"}]
    )
    assert rows[0].attributes == ()


@pytest.mark.parametrize(
    "bad",
    [{"rows": []}, [{"CustomerID": "1", "TemplateID": 1}], ["not an object"],
     [{"CustomerID": None, "TemplateID": 1, "ScheduledTime": "2016-08-30 10:00:00"}]],
)  # fmt: skip
def test_malformed_send_details_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match=r"array|lacks|object|null"):
        responses.parse_send_details(bad)


def test_empty_body_means_no_rows() -> None:
    assert responses.parse_send_details(None) == []


def test_execution_channels_read_channelid_in_any_casing() -> None:
    channels = responses.parse_execution_channels(
        [{"ChannelId": 3, "ChannelName": "SMS"}, {"ChannelID": 4, "ChannelName": "Email"}]
    )
    assert [(c.channel_id, c.channel_name) for c in channels] == [(3, "SMS"), (4, "Email")]


def test_listeners_templates_and_canceled_customers() -> None:
    listeners = responses.parse_listeners(
        [{"EventTypeID": 1, "ListenerURL": "http://x/", "ChannelID": None},
         {"eventTypeId": 13, "listenerUrl": "http://y/", "channelId": 504}]
    )  # fmt: skip
    assert [(x.event_type_id, x.channel_id) for x in listeners] == [(1, None), (13, 504)]
    templates = responses.parse_templates([{"TemplateID": 1, "TemplateName": "Welcome"}])
    assert templates[0].template_name == "Welcome"
    canceled = responses.parse_canceled_customers(
        [{"CustomerID": "231342", "ActionID": "4", "PromoCode": "A7Bonus"},
         {"CustomerID": 9, "ActionID": 4}]
    )  # fmt: skip
    assert [(c.customer_id, c.action_id, c.promo_code) for c in canceled] == [
        ("231342", "4", "A7Bonus"),
        ("9", "4", None),
    ]


def test_campaign_details_type_known_fields_and_keep_the_rest() -> None:
    details = responses.parse_campaign_details(
        5,
        {"Duration": 7, "LeadTime": 1, "Status": "Successful", "Channels": [{"Id": 504}, 505],
         "Tags": ["a"], "IsMultiChannel": "false", "Extra": 1},
    )  # fmt: skip
    assert details.channel_ids == (504, 505)
    assert (details.duration_days, details.lead_time_days, details.tags) == (7, 1, ("a",))
    assert details.raw["Extra"] == 1
    with pytest.raises(ValueError, match="JSON object"):
        responses.parse_campaign_details(5, "nope")


def test_last_data_update_reads_the_date_object() -> None:
    assert responses.parse_last_data_update({"Date": "2015-08-13"}) == date(2015, 8, 13)


def test_a_legacy_string_with_the_delimiter_in_a_value_fails_that_row_instead_of_shifting() -> None:
    rows = [
        {"CustomerID": "C1", "TemplateID": 1, "ScheduledTime": "2026-06-01 05:00:00",
         "CustomerAttribute": "ann@x.io,Ann,Paris"},
        {"CustomerID": "C2", "TemplateID": 1, "ScheduledTime": "2026-06-01 05:00:00",
         "CustomerAttribute": "bo@x.io,Bo,Washington, D.C."},
        {"CustomerID": "C3", "TemplateID": 1, "ScheduledTime": "2026-06-01 05:00:00",
         "CustomerAttributes": ["cy@x.io", "Cy"]},
    ]  # fmt: skip
    ok, shifted, short = responses.parse_send_details(rows, ",", expected=3)
    assert (ok.attributes, ok.problem) == (("ann@x.io", "Ann", "Paris"), None)
    assert shifted.attributes == ()
    assert shifted.problem is not None
    assert "4 values for 3 requested attributes" in shifted.problem
    assert short.attributes == ()
    assert short.problem is not None
    assert "2 values for 3" in short.problem
    # Nothing requested: nothing to check against.
    assert responses.parse_send_details(rows[1:2], ",")[0].attributes == (
        "bo@x.io",
        "Bo",
        "Washington",
        " D.C.",
    )

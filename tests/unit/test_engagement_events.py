"""Signed engagement events: the signature, the event mapping, the 7-day rule, the settings, and the
emulator's checks, as pure functions."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from optibridge.core.engagement_settings import (
    EngagementConfig,
    check_engagement_url,
    metric_base_url,
    missing_for_mode,
)
from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy
from optibridge.emulator.engagement_events import check_event, parse_timestamp, tenant_from_host
from optibridge.optimove.engagement_events import (
    DEFAULT_EVENT_NAMES,
    EngagementClientConfig,
    EngagementEvent,
    encode_events,
    format_timestamp,
    sign,
    signature_matches,
    too_old,
)
from optibridge.optimove.models import MetricID
from optibridge.reporting.engagement_events import PendingEvents, row_events, split_by_age
from optibridge.reporting.metrics import ALL_METRICS
from optibridge.store.report_data import MessageFactRow

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def event(metric: int = 2, occurred: datetime = NOW, customer: str = "C1") -> EngagementEvent:
    return EngagementEvent(
        metric_id=metric,
        customer_id=customer,
        occurred_at=occurred,
        campaign_id=7,
        channel_id=504,
        template_id=3,
        message_id="00000000-0000-0000-0000-000000000001",
    )


# -- signing ------------------------------------------------------------------------------------


def test_sign_is_hex_hmac_sha256_of_the_body_keyed_with_the_token() -> None:
    # RFC 4231 test case 2.
    assert sign(b"what do ya want for nothing?", "Jefe") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_signature_check_accepts_either_case_and_refuses_another_token_or_body() -> None:
    body = encode_events([event()])
    good = sign(body, "tok")
    assert signature_matches(body, "tok", good.upper())
    assert not signature_matches(body, "other", good)
    assert not signature_matches(body + b" ", "tok", good)


def test_the_signed_bytes_are_the_body_sent() -> None:
    body = encode_events([event(), event(3)])
    assert sign(body, "tok") == hmac.new(b"tok", body, hashlib.sha256).hexdigest()
    # Re-serialising changes the bytes (spaces) and so the signature: the client signs once.
    assert sign(json.dumps(json.loads(body)).encode(), "tok") != sign(body, "tok")


# -- mapping ------------------------------------------------------------------------------------


def test_an_event_carries_name_category_utc_timestamp_customer_and_context() -> None:
    at = datetime(2026, 11, 29, 13, 4, 5, 678_901, tzinfo=UTC)
    (data,) = json.loads(encode_events([event(MetricID.CLICKED, at)]))
    assert data == {
        "event": "clicked",
        "category": "metric",
        "timestamp": "2026-11-29T13:04:05.678Z",
        "customer": "C1",
        "context": {
            "campaign_id": 7,
            "channel_id": 504,
            "template_id": 3,
            "metric_id": 3,
            "event_time": "2026-11-29T13:04:05.678Z",
            "message_id": "00000000-0000-0000-0000-000000000001",
        },
    }


def test_every_metric_has_a_distinct_event_name_and_names_can_be_overridden() -> None:
    assert set(DEFAULT_EVENT_NAMES) == {int(m) for m in ALL_METRICS}  # every metric we count
    assert len(set(DEFAULT_EVENT_NAMES.values())) == len(DEFAULT_EVENT_NAMES)
    (data,) = json.loads(encode_events([event(2)], {**DEFAULT_EVENT_NAMES, 2: "email_opened"}))
    assert data["event"] == "email_opened"


def test_timestamps_are_converted_to_utc() -> None:
    from zoneinfo import ZoneInfo

    local = datetime(2026, 11, 29, 14, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert format_timestamp(local) == "2026-11-29T13:00:00.000Z"


def fact_row(**kw: object) -> MessageFactRow:
    base: dict[str, object] = {
        "id": uuid.UUID(int=5),
        "template_id": 3,
        "customer_id": "C5",
        "state": "sent",
        "sent_at": NOW - timedelta(hours=5),
        "updated_at": NOW - timedelta(hours=5),
        "delivered_at": None,
        "opened_at": None,
        "clicked_at": None,
        "unsubscribed_at": None,
        "bounced_at": None,
        "complained_at": None,
        "failed_at": None,
        "reported": None,
    }
    return MessageFactRow(**{**base, **kw})  # type: ignore[arg-type]


ALL = frozenset({0, 1, 2, 3, 4, 5, 6, 9})


def test_a_clicked_message_owes_sent_delivered_opened_clicked_each_timed_when_it_happened() -> None:
    opened, clicked = NOW - timedelta(hours=3), NOW - timedelta(hours=2)
    row = fact_row(opened_at=opened, clicked_at=clicked)
    got = row_events(row, delivered_from="sent", wanted=ALL, channel_id=504, campaign_id=7, now=NOW)
    assert [(e.metric_id, e.occurred_at) for e in got] == [
        (0, NOW - timedelta(hours=5)),
        (1, NOW - timedelta(hours=5)),
        (2, opened),
        (3, clicked),
    ]
    assert {(e.customer_id, e.template_id, e.channel_id, e.campaign_id) for e in got} == {("C5", 3, 504, 7)}
    assert {e.message_id for e in got} == {str(uuid.UUID(int=5))}


def test_events_already_handled_or_not_wanted_are_not_owed_again() -> None:
    row = fact_row(opened_at=NOW, reported=[0, 1])
    got = row_events(row, delivered_from="sent", wanted=ALL, channel_id=504, campaign_id=7, now=NOW)
    assert [e.metric_id for e in got] == [2]
    got = row_events(
        row, delivered_from="sent", wanted=frozenset({3}), channel_id=504, campaign_id=7, now=NOW
    )
    assert got == []


def test_a_bounce_is_a_bounced_event_and_a_failed_message_a_dropped_one() -> None:
    bounced = fact_row(bounced_at=NOW - timedelta(hours=1))
    got = row_events(bounced, delivered_from="sent", wanted=ALL, channel_id=504, campaign_id=7, now=NOW)
    assert [e.metric_id for e in got] == [0, 9]
    failed = fact_row(state="failed", sent_at=None)
    got = row_events(failed, delivered_from="sent", wanted=ALL, channel_id=504, campaign_id=7, now=NOW)
    assert [e.metric_id for e in got] == [5]


# -- the 7-day rule -----------------------------------------------------------------------------


def test_events_older_than_seven_days_less_a_margin_are_too_old() -> None:
    assert not too_old(NOW - timedelta(days=6, hours=23), NOW)
    assert too_old(NOW - timedelta(days=7) + timedelta(minutes=5), NOW)  # inside the safety margin
    assert too_old(NOW - timedelta(days=8), NOW)
    assert not too_old(NOW, NOW)


def test_split_by_age_keeps_too_old_events_apart_and_bounds_what_is_sent() -> None:
    pending = PendingEvents()
    old = event(2, NOW - timedelta(days=8))
    fresh = [event(m, NOW - timedelta(hours=1)) for m in (0, 1, 2)]
    split_by_age([old, *fresh], NOW, pending, max_new=2)
    assert pending.too_old == [(uuid.UUID(old.message_id), 2, old.occurred_at)]
    assert pending.to_send == fresh[:2]
    assert pending.truncated


# -- settings -----------------------------------------------------------------------------------


def test_the_base_url_defaults_to_the_metric_host_and_an_override_may_name_the_tenant() -> None:
    assert EngagementConfig(metric_tenant_id="123").resolved_base_url() == "https://metric-123.optimove.net"
    override = EngagementConfig(metric_tenant_id="t1", base_url="http://127.0.0.1:9/metric-{tenant_id}/")
    assert override.resolved_base_url() == "http://127.0.0.1:9/metric-t1"
    assert metric_base_url(None, None) is None


def test_settings_refuse_an_empty_token_and_a_tenant_id_that_would_change_the_host() -> None:
    with pytest.raises(ValidationError):
        EngagementConfig(mode="events", metric_tenant_id="1", token="")  # type: ignore[arg-type]
    for bad in ("evil.com/x", "a.b", "x/y", ""):
        with pytest.raises(ValidationError):
            EngagementConfig(metric_tenant_id=bad)


def test_events_and_both_modes_need_a_tenant_id_and_a_token() -> None:
    assert missing_for_mode("classic", None, False) is None
    assert missing_for_mode("events", None, True) is not None
    assert missing_for_mode("both", "1", False) is not None
    assert missing_for_mode("both", "1", True) is None


def test_a_base_url_override_passes_the_outbound_policy() -> None:
    strict = OutboundPolicy()
    inside = EngagementConfig(mode="events", metric_tenant_id="1", base_url="http://127.0.0.1:8080")
    with pytest.raises(ConfigError, match="base_url refused"):
        check_engagement_url(inside, strict)
    check_engagement_url(inside, OutboundPolicy.from_strings(["127.0.0.0/8"]))
    check_engagement_url(EngagementConfig(mode="events", metric_tenant_id="1"), strict)  # default host


def test_the_token_is_never_shown_by_the_config_model() -> None:
    config = EngagementConfig(mode="events", metric_tenant_id="1", token="s3cret")  # type: ignore[arg-type]
    assert "s3cret" not in repr(config)
    assert "s3cret" not in config.model_dump_json()
    client_config = EngagementClientConfig(base_url="https://metric-1.optimove.net", token="s3cret")
    assert "s3cret" not in repr(client_config)


def test_client_config_bounds_the_batch_size() -> None:
    with pytest.raises(ValueError, match="events_per_request"):
        EngagementClientConfig(base_url="https://x.test", token="t", events_per_request=1001)
    with pytest.raises(ValueError, match="token"):
        EngagementClientConfig(base_url="https://x.test", token="")


# -- the emulator's checks ----------------------------------------------------------------------


def test_the_emulator_finds_the_metric_tenant_in_the_host() -> None:
    assert tenant_from_host("metric-123.optimove.net") == "123"
    assert tenant_from_host("metric-abc.optimove.net:443") == "abc"
    assert tenant_from_host("api5.optimove.net") is None
    assert tenant_from_host("127.0.0.1:8080") is None
    assert tenant_from_host(None) is None


def good_event(**kw: object) -> dict[str, object]:
    return {
        "event": "opened",
        "category": "metric",
        "timestamp": format_timestamp(NOW),
        "customer": "C1",
        **kw,
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event": None}, "event is required"),
        ({"category": ""}, "category is required"),
        ({"customer": None}, "customer or visitor"),
        ({"timestamp": "yesterday"}, "timestamp is required"),
        ({"timestamp": format_timestamp(NOW - timedelta(days=7, seconds=1))}, "more than 7 days"),
        ({"timestamp": format_timestamp(NOW + timedelta(minutes=6))}, "in the future"),
        ({"context": [1]}, "context must be an object"),
    ],
)
def test_the_emulator_refuses_bad_events(change: dict[str, object], reason: str) -> None:
    got = check_event(good_event(**change), NOW)
    assert got is not None
    assert reason in got


def test_the_emulator_accepts_a_visitor_instead_of_a_customer_and_ignores_unknown_fields() -> None:
    assert check_event(good_event(customer=None, visitor="v1", extra=1), NOW) is None
    assert check_event(good_event(timestamp=format_timestamp(NOW - timedelta(days=6, hours=23))), NOW) is None
    assert parse_timestamp("2026-11-29T12:00:00") == NOW  # no zone: UTC

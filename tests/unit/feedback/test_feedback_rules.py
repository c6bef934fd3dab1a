"""Pure feedback rules: machine hits, one-click bodies, address normalization, receipt mapping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from optibridge.channels.base import SENT, Outcome, SendResult
from optibridge.feedback.bots import is_suspect
from optibridge.feedback.events import EventKind
from optibridge.feedback.receipt_parsing import InvalidReceipt, generic_events, twilio_event
from optibridge.feedback.send_results import send_result_events
from optibridge.feedback.suppression import normalize_address
from optibridge.web.tracking import is_one_click_body

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
MID = uuid.uuid4()


@pytest.mark.parametrize(
    ("ua", "age_s", "suspect"),
    [
        (BROWSER, 3600, False),
        (BROWSER, 1, True),  # seconds after sending: a gateway's prefetch
        ("Mimecast Safe Links", 3600, True),
        ("Mozilla/5.0 (compatible; Barracuda)", 3600, True),
        ("python-requests/2.31", 3600, True),
        ("", 3600, True),
        (None, 3600, True),
        ("Mozilla/5.0 (Windows NT 10.0) GoogleImageProxy", 3600, False),  # Gmail opening the mail
    ],
)
def test_machine_hits_are_flagged(ua: str | None, age_s: int, suspect: bool) -> None:
    assert is_suspect(ua, NOW - timedelta(seconds=age_s), NOW, 5.0) is suspect


def test_one_click_bodies_in_both_encodings_and_nothing_else() -> None:
    assert is_one_click_body("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click")
    multipart = (
        b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b--\r\n'
    )
    assert is_one_click_body("multipart/form-data; boundary=b", multipart)
    assert not is_one_click_body("application/x-www-form-urlencoded", b"List-Unsubscribe=Two-Click")
    assert not is_one_click_body("application/x-www-form-urlencoded", b"")
    assert not is_one_click_body("multipart/form-data; boundary=b", b"One-Click")


def test_addresses_are_normalized_for_comparison() -> None:
    assert normalize_address("  Ann@Example.COM ") == "ann@example.com"
    assert normalize_address("+1 (555) 010-2030") == "+15550102030"
    assert normalize_address("fcm-token:ABC") == "fcm-token:ABC"


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        ("delivered", "", EventKind.DELIVERED),
        ("undelivered", "30006", EventKind.BOUNCED),
        ("failed", "21211", EventKind.BOUNCED),
        ("failed", "21610", EventKind.UNSUBSCRIBED),
        ("undelivered", "30008", EventKind.FAILED),
        ("read", "", EventKind.OPENED),
    ],
)
def test_twilio_statuses_map_to_events(status: str, code: str, kind: EventKind) -> None:
    event = twilio_event({"MessageSid": "SM1", "MessageStatus": status, "ErrorCode": code}, MID, NOW)
    assert event is not None
    assert event.kind is kind
    assert event.dedupe_key == f"twilio:SM1:{status}"


def test_twilio_progress_statuses_mean_nothing_and_garbage_is_refused() -> None:
    assert twilio_event({"MessageSid": "SM1", "MessageStatus": "sent"}, MID, NOW) is None
    with pytest.raises(InvalidReceipt):
        twilio_event({"MessageSid": "SM1"}, MID, NOW)
    with pytest.raises(InvalidReceipt):
        twilio_event({"MessageSid": "SM/../1", "MessageStatus": "delivered"}, MID, NOW)


def test_generic_reports_parse_all_or_nothing_and_clamp_future_times() -> None:
    events = generic_events(
        [
            {"message_id": str(MID), "status": "bounced", "event_id": "e1", "reason": "550"},
            {
                "message_id": str(MID),
                "status": "opened",
                "event_id": "e2",
                "occurred_at": "2099-01-01T00:00:00",
            },
        ],
        "t1",
        NOW,
        max_events=10,
    )
    assert [(e.kind, e.dedupe_key, e.tenant_id) for e in events] == [
        (EventKind.BOUNCED, "generic:e1", "t1"),
        (EventKind.OPENED, "generic:e2", "t1"),
    ]
    assert events[1].occurred_at == NOW + timedelta(minutes=5)
    for bad in ([], [{"message_id": str(MID), "status": "nope", "event_id": "x"}], [{}] * 11, "x"):
        with pytest.raises(InvalidReceipt):
            generic_events(bad, "t1", NOW, max_events=10)


def test_only_bad_recipients_at_send_time_become_bounces() -> None:
    results = [
        (MID, SENT),
        (MID, SendResult(Outcome.PERMANENT, reason="552 too big")),
        (MID, SendResult(Outcome.THROTTLED)),
        (MID, SendResult(Outcome.PERMANENT, unregistered=True)),
    ]
    [event] = send_result_events(results, NOW)
    assert event.kind is EventKind.BOUNCED
    assert event.reason == "push token unregistered"

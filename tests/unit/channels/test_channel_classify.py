"""Classification rules, as pure functions: the table in docs/channels.md, executable."""

from __future__ import annotations

import json

import pytest

from optibridge.channels.base import Outcome
from optibridge.channels.classify import (
    DEFAULT_HTTP_RETRY_AFTER,
    DEFAULT_SMTP_RETRY_AFTER,
    classify_fcm,
    classify_http,
    classify_network_error,
    classify_smtp_reply,
    classify_twilio,
    parse_retry_after,
    retry_hint_seconds,
)


@pytest.mark.parametrize(
    ("code", "text", "recipient", "outcome", "bounce"),
    [
        (421, "4.7.0 Too many connections", False, Outcome.THROTTLED, False),
        (451, "4.7.1 Greylisted", True, Outcome.THROTTLED, False),
        (452, "4.5.3 Too many recipients", True, Outcome.THROTTLED, False),
        (454, "4.7.0 Throttling failure: Maximum sending rate exceeded", False, Outcome.THROTTLED, False),
        (450, "4.2.1 Mailbox busy", True, Outcome.TRANSIENT, False),
        (550, "5.1.1 <x@y>: Recipient address rejected: User unknown", True, Outcome.PERMANENT, True),
        (550, "5.1.1 user unknown", False, Outcome.PERMANENT, True),  # enhanced code says recipient
        (552, "5.2.2 Mailbox full", True, Outcome.PERMANENT, True),
        (550, "User unknown", True, Outcome.PERMANENT, True),  # no enhanced code, at RCPT
        (550, "Rejected", False, Outcome.PERMANENT, False),  # no enhanced code, not at RCPT
        (554, "5.7.1 Message rejected as spam", False, Outcome.PERMANENT, False),
        (550, "5.7.1 Relaying denied", True, Outcome.PERMANENT, False),  # policy, not the mailbox
        (250, "odd", False, Outcome.TRANSIENT, False),
    ],
)
def test_smtp_replies(code: int, text: str, recipient: bool, outcome: Outcome, bounce: bool) -> None:
    result = classify_smtp_reply(code, text, recipient=recipient)
    assert (result.outcome, result.bounce) == (outcome, bounce)
    assert result.reason is not None
    assert result.reason.startswith(str(code))


def test_smtp_throttling_takes_the_servers_hint_or_the_default() -> None:
    assert classify_smtp_reply(421, "4.7.0 Try again in 5 minutes").retry_after == 300.0
    assert classify_smtp_reply(454, "4.7.0 Throttled, retry after 20s").retry_after == 20.0
    assert classify_smtp_reply(454, "4.7.0 Throttled").retry_after == DEFAULT_SMTP_RETRY_AFTER
    assert classify_smtp_reply(451, "4.7.1 later", default_retry_after=9).retry_after == 9


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("try again in 30 seconds", 30.0), ("Retry in 2 min", 120.0), ("wait 1 hour", 3600.0), ("later", None)],
)
def test_retry_hints(text: str, seconds: float | None) -> None:
    assert retry_hint_seconds(text) == seconds


def test_multiline_smtp_reason_is_one_line_and_bounded() -> None:
    result = classify_smtp_reply(550, "5.1.1 first\nsecond " + "x" * 1000, recipient=True)
    assert result.reason is not None
    assert "\n" not in result.reason
    assert len(result.reason) <= 300


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (202, Outcome.SENT),
        (429, Outcome.THROTTLED),
        (500, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (401, Outcome.TRANSIENT),  # credentials: the same for every message
        (403, Outcome.TRANSIENT),
        (408, Outcome.TRANSIENT),
        (301, Outcome.TRANSIENT),  # redirects are not followed: a configuration problem
        (400, Outcome.PERMANENT),
        (404, Outcome.PERMANENT),
        (410, Outcome.PERMANENT),
        (422, Outcome.PERMANENT),
    ],
)
def test_http_statuses(status: int, outcome: Outcome) -> None:
    assert classify_http(status, {}, b"{}").outcome is outcome


def test_http_429_uses_retry_after_seconds_or_date_or_default() -> None:
    assert classify_http(429, {"Retry-After": "7"}, b"").retry_after == 7.0
    now = 1_700_000_000.0  # 2023-11-14 22:13:20 GMT
    dated = classify_http(429, {"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"}, b"", now=now)
    assert dated.retry_after == 30.0
    assert classify_http(429, {}, b"").retry_after == DEFAULT_HTTP_RETRY_AFTER
    assert classify_http(503, {"Retry-After": "12"}, b"").retry_after == 12.0


def test_retry_after_parsing_edges() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(" 1.5 ") == 1.5


def _twilio(code: int, status: int) -> bytes:
    return json.dumps({"code": code, "message": "m", "status": status}).encode()


@pytest.mark.parametrize(
    ("status", "code", "outcome", "bounce"),
    [
        (429, 20429, Outcome.THROTTLED, False),
        (400, 21211, Outcome.PERMANENT, True),  # invalid 'To'
        (400, 21614, Outcome.PERMANENT, True),  # not a mobile number
        (400, 21610, Outcome.PERMANENT, True),  # recipient replied STOP
        (401, 20003, Outcome.TRANSIENT, False),  # authentication
        (500, 20500, Outcome.TRANSIENT, False),
        (400, 21602, Outcome.PERMANENT, False),  # message body required
    ],
)
def test_twilio_error_codes(status: int, code: int, outcome: Outcome, bounce: bool) -> None:
    result = classify_twilio(status, {}, _twilio(code, status))
    assert (result.outcome, result.bounce) == (outcome, bounce)
    assert result.reason is not None
    assert str(code) in result.reason


def test_twilio_without_an_error_body_falls_back_to_http() -> None:
    assert classify_twilio(502, {}, b"<html>bad gateway</html>").outcome is Outcome.TRANSIENT
    assert classify_twilio(201, {}, b'{"sid": "SM1"}').outcome is Outcome.SENT


def _fcm(status: int, canonical: str, error_code: str | None, message: str = "m", **extra: object) -> bytes:
    error: dict[str, object] = {"code": status, "status": canonical, "message": message}
    details: list[object] = []
    if error_code:
        details.append(
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
        )
    if extra.get("field"):
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": extra["field"]}],
            }
        )
    if details:
        error["details"] = details
    return json.dumps({"error": error}).encode()


def test_fcm_unregistered_and_token_errors_mean_unregistered() -> None:
    for body in (
        _fcm(404, "NOT_FOUND", "UNREGISTERED"),
        _fcm(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
        _fcm(
            400,
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
        ),
        _fcm(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid value", field="message.token"),
    ):
        result = classify_fcm(400, {}, body)
        assert (result.outcome, result.unregistered, result.bounce) == (Outcome.PERMANENT, True, True)


def test_fcm_invalid_payload_is_permanent_but_not_the_token() -> None:
    body = _fcm(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid JSON payload", field="message.data")
    result = classify_fcm(400, {}, body)
    assert (result.outcome, result.unregistered) == (Outcome.PERMANENT, False)


def test_fcm_quota_and_availability() -> None:
    quota = classify_fcm(429, {"Retry-After": "3"}, _fcm(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"))
    assert (quota.outcome, quota.retry_after) == (Outcome.THROTTLED, 3.0)
    assert classify_fcm(503, {}, _fcm(503, "UNAVAILABLE", "UNAVAILABLE")).outcome is Outcome.TRANSIENT
    assert classify_fcm(500, {}, _fcm(500, "INTERNAL", "INTERNAL")).outcome is Outcome.TRANSIENT
    assert classify_fcm(401, {}, _fcm(401, "UNAUTHENTICATED", None)).outcome is Outcome.TRANSIENT
    assert (
        classify_fcm(401, {}, _fcm(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")).outcome
        is Outcome.TRANSIENT
    )
    assert classify_fcm(502, {}, b"not json").outcome is Outcome.TRANSIENT


def test_network_errors_are_transient() -> None:
    assert classify_network_error(TimeoutError()).reason == "timeout"
    refused = classify_network_error(ConnectionRefusedError(111, "Connection refused"))
    assert refused.outcome is Outcome.TRANSIENT
    assert refused.reason is not None
    assert "Connection refused" in refused.reason

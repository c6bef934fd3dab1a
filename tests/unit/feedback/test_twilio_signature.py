"""X-Twilio-Signature against Twilio's own published vectors (twilio-python's RequestValidator tests),
and the expiry of status-callback tokens."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from optibridge.feedback.receipt_parsing import twilio_auth_tokens, twilio_signature, twilio_signature_valid
from optibridge.feedback.tokens import Token, TokenKind, callback_max_age, expired

# twilio-python tests/unit/test_request_validator.py
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
]
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_published_vector() -> None:
    assert twilio_signature(TOKEN, URL, PARAMS) == EXPECTED
    assert twilio_signature_valid([TOKEN], URL, PARAMS, EXPECTED)


def test_repeated_parameters_are_sorted_by_value_and_counted_once_as_twilio_does() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio_signature(TOKEN, URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_default_ports_written_out_or_not_verify_like_twilios_validator() -> None:
    assert twilio_signature_valid([TOKEN], URL, PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=")  # :443 signed
    http = URL.replace("https", "http")
    assert twilio_signature_valid([TOKEN], http, PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4=")  # :80 signed
    assert twilio_signature_valid([TOKEN], URL.replace(".com", ".com:1234"), PARAMS, EXPECTED)


def test_wrong_token_url_params_or_no_signature_fail() -> None:
    assert not twilio_signature_valid(["1234"], URL, PARAMS, EXPECTED)
    assert not twilio_signature_valid([TOKEN], URL + "&x=1", PARAMS, EXPECTED)
    assert not twilio_signature_valid([TOKEN], URL, [*PARAMS, ("MessageStatus", "failed")], EXPECTED)
    assert not twilio_signature_valid([TOKEN], URL, PARAMS, None)
    assert not twilio_signature_valid([TOKEN], URL, PARAMS, "")
    assert not twilio_signature_valid([], URL, PARAMS, EXPECTED)
    assert twilio_signature_valid(["other", TOKEN], URL, PARAMS, EXPECTED)  # any account of the channel


def test_auth_tokens_of_a_channel_single_or_failover() -> None:
    one = {"type": "twilio", "account_sid": "AC1", "auth_token": "a"}
    assert twilio_auth_tokens(one) == ["a"]
    assert twilio_auth_tokens(
        {"providers": [one, {"type": "json", "auth_token": "j"}, {"type": "twilio"}]}
    ) == ["a"]
    assert twilio_auth_tokens({"type": "smtp"}) == []


def test_callback_tokens_expire_after_the_reporting_window_plus_a_day() -> None:
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    token = Token(TokenKind.SMS_STATUS, uuid.uuid4(), issued)
    max_age = callback_max_age(timedelta(days=7))
    assert max_age == timedelta(days=8)
    assert not expired(token, issued + timedelta(days=8), max_age)
    assert expired(token, issued + timedelta(days=8, seconds=1), max_age)


def test_the_http_sink_signs_callbacks_as_we_verify_them() -> None:
    """The demo's and tests' Twilio stand-in must keep producing callbacks that pass the check."""
    from optibridge.sinks.http_sink import twilio_signature as sink_signature

    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+15550001", "AccountSid": "AC1"}
    url = "http://127.0.0.1:8080/r/twilio/AAAA"
    assert twilio_signature_valid(["tok"], url, list(form.items()), sink_signature("tok", url, form))

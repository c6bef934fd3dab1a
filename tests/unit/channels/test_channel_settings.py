"""build_provider: the right adapter per type, and one clear line for every settings mistake."""

from __future__ import annotations

from typing import Any

import pytest

from optibridge.channels import Provider, build_provider, validate_settings
from optibridge.channels.fcm import FcmPushProvider
from optibridge.channels.generic_json import GenericJsonProvider
from optibridge.channels.settings import SmtpSettings
from optibridge.channels.smtp import SmtpProvider
from optibridge.channels.twilio import TwilioSmsProvider
from optibridge.channels.webhook import WebhookProvider
from optibridge.core.errors import ConfigError

SMTP = {"type": "smtp", "host": "smtp.example.com", "from_address": "news@shop.example"}
TWILIO = {"type": "twilio", "account_sid": "AC1", "auth_token": "s3cr3t-value", "from_number": "+15005550006"}
JSON = {"type": "json", "url": "https://api.example.com/send", "body_template": '{"to": "{{to}}"}'}
WEBHOOK = {"type": "webhook", "url": "https://hooks.example.com/x", "signing_secret": "0123456789abcdef"}


def test_each_type_builds_its_adapter() -> None:
    cases: list[tuple[str, dict[str, Any], type]] = [
        ("email", SMTP, SmtpProvider),
        ("sms", TWILIO, TwilioSmsProvider),
        ("sms", JSON, GenericJsonProvider),
        ("push", JSON, GenericJsonProvider),
        ("webhook", WEBHOOK, WebhookProvider),
    ]
    for kind, settings, adapter in cases:
        provider = build_provider(kind, settings, callback_base_url="https://ob.example")
        assert isinstance(provider, adapter)
        assert isinstance(provider, Provider)
        assert provider.kind == kind


def test_fcm_builds_from_a_service_account(service_account_json: str) -> None:
    provider = build_provider("push", {"type": "fcm", "credentials": service_account_json})
    assert isinstance(provider, FcmPushProvider)
    assert provider.url == "https://fcm.googleapis.com/v1/projects/demo-project/messages:send"


def test_smtp_defaults() -> None:
    settings = validate_settings("email", SMTP)
    assert isinstance(settings, SmtpSettings)
    assert (settings.tls, settings.effective_port, settings.pool_size) == ("starttls", 587, 512)
    assert settings.effective_message_id_domain == "shop.example"
    assert validate_settings("email", {**SMTP, "tls": "implicit"}).effective_port == 465
    assert validate_settings("email", {**SMTP, "tls": "none"}).effective_port == 25


@pytest.mark.parametrize(
    ("kind", "settings", "message"),
    [
        ("fax", SMTP, "unknown channel kind 'fax'"),
        ("email", {"host": "x"}, "one of smtp, ses, sendgrid, mailgun, postmark, got None"),
        ("email", TWILIO, "one of smtp, ses, sendgrid, mailgun, postmark, got 'twilio'"),
        ("webhook", JSON, "one of webhook"),
        ("email", {"type": "smtp", "host": "x"}, "from_address: Field required"),
        ("email", {**SMTP, "from_address": "not an address"}, "from_address: invalid email address"),
        ("email", {**SMTP, "username": "u"}, "username and password go together"),
        ("email", {**SMTP, "pool_size": 0}, "pool_size: Input should be greater than or equal to 1"),
        ("email", {**SMTP, "colour": "red"}, "colour: Extra inputs are not permitted"),
        (
            "sms",
            {**TWILIO, "messaging_service_sid": "MG1"},
            "exactly one of from_number and messaging_service_sid",
        ),
        ("sms", {**TWILIO, "base_url": "ftp://x"}, "base_url: must be an http:// or https:// URL"),
        ("sms", {**JSON, "body_template": "{nope"}, "body_template is not valid JSON"),
        ("sms", {**JSON, "body_template": '{"a": "{{nope}}"}'}, "unknown placeholder {{nope}}"),
        ("sms", {**JSON, "headers": {"X-A": "1\r\nX-B: 2"}}, "contains a line break"),
        ("push", {"type": "fcm", "credentials": "{}"}, "credentials lack client_email, private_key"),
        ("push", {"type": "fcm", "credentials": "not json"}, "service-account JSON"),
        ("webhook", {**WEBHOOK, "signing_secret": "short"}, "signing_secret: String should have at least 16"),
        ("webhook", {**WEBHOOK, "url": "http://10.0.0.1/x"}, "url refused: 10.0.0.1 is private"),
        # Header injection: every string that reaches a mail header or an HTTP request line.
        ("email", {**SMTP, "message_id_domain": "a.example>\r\nBcc: b@c.example"}, "message_id_domain"),
        ("email", {**SMTP, "message_id_domain": "shop example"}, "valid host name"),
        ("email", {**SMTP, "local_hostname": "mx\nRCPT TO:<x@y>"}, "local_hostname: must be a valid host"),
        ("email", {**SMTP, "from_name": "Shop\r\nBcc: spy@evil.example"}, "from_name contains a line break"),
        ("email", {**SMTP, "host": "smtp.example.com\r\nx"}, "host: must be a valid host name"),
        ("email", {**SMTP, "host": "smtp.example.com\x00x"}, "host: must be a valid host name"),
        ("sms", {**JSON, "auth_token": "t\r\nX-Evil: 1"}, "auth_token contains a line break"),
        ("sms", {**JSON, "auth_scheme": "Bearer\r\nX-Evil: 1"}, "auth_scheme contains a line break"),
        ("sms", {**TWILIO, "from_number": "+1\r\nX"}, "from_number contains a line break"),
        ("webhook", {**WEBHOOK, "headers": {"X-A": "1\x00"}}, "line break or NUL"),
        # Only http(s) with a host ever reaches a client.
        ("sms", {**JSON, "url": "ftp://files.example.com/x"}, "url: must be an http:// or https:// URL"),
        ("sms", {**JSON, "url": "file:///etc/passwd"}, "url: must be an http:// or https:// URL"),
        ("webhook", {**WEBHOOK, "url": "gopher://hooks.example.com/x"}, "must be an http:// or https://"),
        ("webhook", {**WEBHOOK, "url": "http:///x"}, "with a host"),
        ("push", {**JSON, "url": "http://api.example.com:99999/"}, "well-formed"),
        # SMTP settings that cannot work are refused before the send job retries them forever.
        ("email", {**SMTP, "tls": "implicit", "port": 587}, "tls 'implicit' cannot work on port 587"),
        ("email", {**SMTP, "tls": "starttls", "port": 465}, "cannot work on port 465"),
        ("email", {**SMTP, "port": 0}, "port: Input should be greater than or equal to 1"),
        ("email", {"type": "smtp", "host": "smtp.example.com"}, "from_address: Field required"),
        # A tenant cannot open loopback for itself any more.
        ("webhook", {**WEBHOOK, "allow_private": True}, "allow_private is an operator setting now"),
    ],
)
def test_mistakes_give_one_clear_line(kind: str, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_provider(kind, settings)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_errors_never_echo_secret_values() -> None:
    with pytest.raises(ConfigError) as caught:
        build_provider("sms", {**TWILIO, "auth_token": 12345, "from_number": None})
    assert "12345" not in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


def test_fcm_private_key_must_parse(service_account: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="invalid service-account credentials"):
        build_provider("push", {"type": "fcm", "credentials": {**service_account, "private_key": "garbage"}})


def test_header_injection_errors_never_echo_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        build_provider("email", {**SMTP, "message_id_domain": "x\r\nBcc: spy@evil.example"})
    assert "spy@evil" not in str(caught.value)


def test_callback_base_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="callback base URL"):
        build_provider("sms", TWILIO, callback_base_url="ftp://x")

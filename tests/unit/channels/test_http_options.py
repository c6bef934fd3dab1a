"""Every HTTP provider's settings share one definition of the client's bounds and proxy."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from optibridge.channels.http_options import HttpClientOptions
from optibridge.channels.settings import SETTINGS_BY_TYPE

HTTP_TYPES = sorted(t for t, model in SETTINGS_BY_TYPE.items() if issubclass(model, HttpClientOptions))
# The least each type needs to validate, besides the proxy under test (FCM and APNs need keys made
# for them; they share the same class, checked above).
REQUIRED: dict[str, dict[str, Any]] = {
    "twilio": {"account_sid": "AC1", "auth_token": "t", "from_number": "+15550000"},
    "json": {"url": "https://push.example/send", "body_template": '{"to": "{{ to }}"}'},
    "webhook": {"url": "https://hooks.example/in", "signing_secret": "s" * 32},
    "ses": {
        "region": "eu-west-1",
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "aws_secret": "x",
        "from_address": "a@b.test",
    },
    "sendgrid": {"api_key": "SG.x", "from_address": "a@b.test"},
    "mailgun": {"api_key": "k", "domain": "mg.example.test", "from_address": "a@b.test"},
    "postmark": {"server_token": "t", "from_address": "a@b.test"},
    "vonage": {"api_key": "k", "api_secret": "s", "from_number": "+15550000"},
    "plivo": {"auth_id": "MAXXXXXXXXXXXXXXXXXX", "auth_token": "t", "from_number": "+15550000"},
}


def test_every_http_provider_type_has_the_shared_options() -> None:
    assert {
        "twilio",
        "json",
        "webhook",
        "fcm",
        "ses",
        "sendgrid",
        "mailgun",
        "postmark",
        "vonage",
        "plivo",
        "apns",
    } <= set(HTTP_TYPES)


@pytest.mark.parametrize("kind", [t for t in HTTP_TYPES if t in REQUIRED])
def test_proxy_url_is_checked_the_same_for_every_http_provider(kind: str) -> None:
    model = SETTINGS_BY_TYPE[kind]
    ok = model.model_validate({"type": kind, "proxy_url": "http://proxy.example:3128", **REQUIRED[kind]})
    assert isinstance(ok, HttpClientOptions)
    assert ok.proxy_url == "http://proxy.example:3128"
    assert ok.max_connections == 512
    for bad in (
        "socks5://proxy.example:1080",
        "http://user:secret@proxy.example:3128",
        "http://p.example/?a=1",
    ):
        with pytest.raises(ValidationError):
            model.model_validate({"type": kind, "proxy_url": bad, **REQUIRED[kind]})

"""Every HTTP provider's settings share one definition of the client's bounds and proxy."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from optibridge.channels.http_options import HttpClientOptions
from optibridge.channels.settings import SETTINGS_BY_TYPE
from optibridge.core.config import split_provider_settings

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


@pytest.mark.parametrize("kind", [t for t in HTTP_TYPES if t in REQUIRED])
def test_an_authenticating_proxy_takes_a_username_and_a_password(kind: str) -> None:
    model = SETTINGS_BY_TYPE[kind]
    base = {"type": kind, "proxy_url": "http://proxy.example:3128", **REQUIRED[kind]}
    ok = model.model_validate({**base, "proxy_username": "egress", "proxy_password": "pa:ss w@rd"})
    assert isinstance(ok, HttpClientOptions)
    assert ok.proxy_login() == ("egress", "pa:ss w@rd")
    assert ok.proxy_url == "http://proxy.example:3128"  # the login never rides in the URL
    assert model.model_validate(base).proxy_login() is None  # an open proxy


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"proxy_username": "egress"}, "go together"),
        ({"proxy_password": "x"}, "go together"),
        ({"proxy_username": "a:b", "proxy_password": "x"}, "':'"),
        ({"proxy_username": "egress", "proxy_password": "x\r\nX-Injected: 1"}, "line break"),
        ({"proxy_username": "eg\nress", "proxy_password": "x"}, "line break"),
        ({"proxy_username": "", "proxy_password": "x"}, "at least 1"),
    ],
)
def test_a_malformed_proxy_login_is_refused_with_the_reason(fields: dict[str, str], says: str) -> None:
    # Through a provider's settings, as every login arrives (the line-break check is theirs).
    base = {"type": "json", "proxy_url": "http://proxy.example:3128", **REQUIRED["json"]}
    with pytest.raises(ValidationError, match=says):
        SETTINGS_BY_TYPE["json"].model_validate({**base, **fields})


def test_a_login_in_the_proxy_url_points_to_the_login_fields() -> None:
    with pytest.raises(ValidationError, match="set proxy_username and proxy_password instead"):
        HttpClientOptions.model_validate({"proxy_url": "http://egress:secret@proxy.example:3128"})


def test_a_proxy_login_without_a_proxy_is_refused() -> None:
    with pytest.raises(ValidationError, match="need a proxy_url"):
        HttpClientOptions.model_validate({"proxy_username": "egress", "proxy_password": "x"})


def test_the_proxy_password_is_stored_as_a_secret_and_the_rest_in_plain() -> None:
    plain, secret = split_provider_settings(
        {"type": "json", "proxy_url": "http://proxy.example:3128", "proxy_username": "egress",
         "proxy_password": "hunter2"}
    )  # fmt: skip
    assert secret == {"proxy_password": "hunter2"}
    assert plain == {"type": "json", "proxy_url": "http://proxy.example:3128", "proxy_username": "egress"}

"""The FCM v1 adapter against the HTTP sink's fake FCM and OAuth token endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.channels.fcm import FcmPushProvider
from optibridge.core.outbound import OutboundPolicy
from optibridge.sinks import HttpSink

MakeMessage = Callable[..., OutboundMessage]  # the `make_message` fixture (conftest.py)

# The sinks run on loopback: the operator setting opens it (the default policy refuses it).
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])


def fcm(sink: HttpSink, service_account: dict[str, str], **settings: Any) -> FcmPushProvider:
    config = {
        "type": "fcm",
        "credentials": service_account,
        "base_url": sink.base_url,
        "token_uri": f"{sink.base_url}/token",
        "max_connections": 4,
        **settings,
    }
    provider = build_provider("push", config, callback_base_url=None, policy=LOOPBACK)
    assert isinstance(provider, FcmPushProvider)
    return provider


async def test_push_arrives_with_one_oauth_token_for_many_sends(
    http_sink: HttpSink, service_account: dict[str, str], make_message: MakeMessage
) -> None:
    messages = [
        make_message(
            to=f"device-{n}", subject=f"Hi Zoë {n}", body="50% off ☃", data={"deeplink": f"app://o/{n}"}
        )
        for n in range(20)
    ]
    async with fcm(http_sink, service_account) as provider:
        results = await provider.send_many(messages)
    assert [r.outcome for r in results] == [Outcome.SENT] * 20
    [grant] = http_sink.of_kind("token")  # fetched once, shared by concurrent sends
    assert grant.form is not None
    assert grant.form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert grant.json["iss"] == service_account["client_email"]
    assert "firebase.messaging" in grant.json["scope"]
    sent = {r.provider_id: r for r in http_sink.of_kind("fcm")}
    for message, result in zip(messages, results, strict=True):
        request = sent[result.provider_message_id]
        assert request.path == "/v1/projects/demo-project/messages:send"
        assert request.json == {
            "message": {
                "token": message.to,
                "notification": {"title": message.subject, "body": message.body},
                "data": {"deeplink": message.data["deeplink"], "message_id": message.message_id},
            }
        }


async def test_unregistered_token_is_reported_for_suppression(
    http_sink: HttpSink, service_account: dict[str, str], make_message: MakeMessage
) -> None:
    http_sink.unregistered_tokens({"dead"})
    async with fcm(http_sink, service_account) as provider:
        result = await provider.send(make_message(to="dead"))
        invalid = await provider.send(make_message(to=""))
    assert (result.outcome, result.unregistered, result.bounce) == (Outcome.PERMANENT, True, True)
    assert result.reason is not None
    assert "UNREGISTERED" in result.reason
    assert invalid.unregistered


async def test_quota_exceeded_throttles_and_unavailable_is_transient(
    http_sink: HttpSink, service_account: dict[str, str], make_message: MakeMessage
) -> None:
    async with fcm(http_sink, service_account) as provider:
        http_sink.throttle(count=1, retry_after=5)
        throttled = await provider.send(make_message(to="d1"))
        http_sink.fail(status=503, count=1)
        unavailable = await provider.send(make_message(to="d1"))
        http_sink.fail(status=500, count=1)
        internal = await provider.send(make_message(to="d1"))
    assert (throttled.outcome, throttled.retry_after) == (Outcome.THROTTLED, 5.0)
    assert throttled.reason is not None
    assert "QUOTA_EXCEEDED" in throttled.reason
    assert unavailable.outcome is Outcome.TRANSIENT
    assert "UNAVAILABLE" in (unavailable.reason or "")
    assert internal.outcome is Outcome.TRANSIENT
    assert "INTERNAL" in (internal.reason or "")


async def test_a_revoked_access_token_is_replaced(
    http_sink: HttpSink, service_account: dict[str, str], make_message: MakeMessage
) -> None:
    async with fcm(http_sink, service_account) as provider:
        assert (await provider.send(make_message(to="d1"))).outcome is Outcome.SENT
        http_sink.issued_tokens.clear()  # the server forgets the token: next send gets a 401
        refused = await provider.send(make_message(to="d1"))
        again = await provider.send(make_message(to="d1"))
    assert refused.outcome is Outcome.TRANSIENT
    assert again.outcome is Outcome.SENT
    assert len(http_sink.of_kind("token")) == 2


async def test_token_endpoint_failure_is_transient(
    http_sink: HttpSink, service_account: dict[str, str], make_message: MakeMessage
) -> None:
    async with fcm(
        http_sink, service_account, token_uri=f"{http_sink.base_url}/no-such-token-endpoint"
    ) as provider:
        results = await provider.send_many([make_message(to=f"d{n}") for n in range(5)])
    assert {r.outcome for r in results} == {Outcome.TRANSIENT}
    assert all("OAuth token refresh failed" in (r.reason or "") for r in results)
    assert http_sink.of_kind("fcm") == []

"""The generic JSON adapter (SMS and push) against the HTTP sink's JSON endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.channels.generic_json import GenericJsonProvider
from optibridge.core.outbound import OutboundPolicy
from optibridge.sinks import HttpSink

MakeMessage = Callable[..., OutboundMessage]  # the `make_message` fixture (conftest.py)

TEMPLATE = json.dumps(
    {
        "to": "{{to}}",
        "text": "{{body}}",
        "ref": "{{message_id}}",
        "meta": {"campaign": "{{campaign_id}}", "cohort": "{{data.cohort}}", "hook": "{{callback_url}}"},
    }
)

# The sinks run on loopback: the operator setting opens it (the default policy refuses it).
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])


def json_provider(sink: HttpSink, kind: str, **settings: Any) -> GenericJsonProvider:
    config = {
        "type": "json",
        "url": f"{sink.base_url}/json/{kind}",
        "body_template": TEMPLATE,
        "auth_token": "k-123",
        "headers": {"X-Tenant": "t1"},
        "provider_id_path": "data.id",
        "max_connections": 4,
        **settings,
    }
    provider = build_provider(kind, config, callback_base_url="https://hooks.example", policy=LOOPBACK)
    assert isinstance(provider, GenericJsonProvider)
    return provider


async def test_body_with_hostile_characters_arrives_as_valid_json(
    http_sink: HttpSink, make_message: MakeMessage
) -> None:
    body = 'He said "hi"\\n\n\t{{to}} </script> ☃ \u2028 \x00'
    message = make_message(to="+15551230001", body=body, data={"cohort": 'a"b'})
    async with json_provider(http_sink, "sms") as provider:
        result = await provider.send(message)
    [request] = http_sink.requests
    assert result.outcome is Outcome.SENT
    assert result.provider_message_id == request.provider_id
    assert request.json == {
        "to": "+15551230001",
        "text": body,
        "ref": message.message_id,
        "meta": {
            "campaign": "7",
            "cohort": 'a"b',
            "hook": f"https://hooks.example/receipts/json?message_id={message.message_id}",
        },
    }
    assert request.headers["Authorization"] == "Bearer k-123"
    assert request.headers["X-Tenant"] == "t1"


async def test_push_batch_is_sent_once_each(http_sink: HttpSink, make_message: MakeMessage) -> None:
    messages = [make_message(to=f"token-{n}", body=f"push {n}") for n in range(50)]
    async with json_provider(http_sink, "push") as provider:
        results = await provider.send_many(messages)
    assert [r.outcome for r in results] == [Outcome.SENT] * 50
    assert sorted(r.json["to"] for r in http_sink.requests) == sorted(m.to for m in messages)


async def test_recipient_errors_map_to_bounce_and_unregistered(
    http_sink: HttpSink, make_message: MakeMessage
) -> None:
    http_sink.invalid_numbers({"+15550000000"})
    http_sink.unregistered_tokens({"dead-token"})
    async with (
        json_provider(http_sink, "sms", recipient_error_statuses=[400]) as sms,
        json_provider(http_sink, "push", recipient_error_statuses=[410]) as push,
    ):
        bad_number = await sms.send(make_message(to="+15550000000"))
        dead_token = await push.send(make_message(to="dead-token"))
    assert (bad_number.outcome, bad_number.bounce, bad_number.unregistered) == (
        Outcome.PERMANENT,
        True,
        False,
    )
    assert (dead_token.outcome, dead_token.bounce, dead_token.unregistered) == (Outcome.PERMANENT, True, True)


async def test_429_throttles_and_5xx_is_transient(http_sink: HttpSink, make_message: MakeMessage) -> None:
    async with json_provider(http_sink, "sms") as provider:
        http_sink.throttle(count=1, retry_after=3)
        throttled = await provider.send(make_message(to="+15551230001"))
        http_sink.fail(status=500, count=1)
        failed = await provider.send(make_message(to="+15551230001"))
        fine = await provider.send(make_message(to="+15551230001"))
    assert (throttled.outcome, throttled.retry_after) == (Outcome.THROTTLED, 3.0)
    assert failed.outcome is Outcome.TRANSIENT
    assert fine.outcome is Outcome.SENT


async def test_status_outside_the_success_set_is_not_sent(
    http_sink: HttpSink, make_message: MakeMessage
) -> None:
    async with json_provider(http_sink, "sms", success_statuses=[202]) as provider:
        result = await provider.send(make_message(to="+15551230001"))
    assert result.outcome is Outcome.PERMANENT

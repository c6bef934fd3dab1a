"""The Twilio adapter against the HTTP sink's fake Messages API."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.channels.twilio import TwilioSmsProvider
from optibridge.core.outbound import OutboundPolicy
from optibridge.sinks import HttpSink
from optibridge.sinks.http_sink import twilio_signature

MakeMessage = Callable[..., OutboundMessage]  # the `make_message` fixture (conftest.py)

SID = "AC0123456789abcdef"

# The sinks run on loopback: the operator setting opens it (the default policy refuses it).
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])


def twilio(sink: HttpSink, *, callback_base_url: str | None = None, **settings: Any) -> TwilioSmsProvider:
    config = {
        "type": "twilio",
        "account_sid": SID,
        "auth_token": "secret-token",
        "from_number": "+15005550006",
        "base_url": sink.base_url,
        "max_connections": 4,
        **settings,
    }
    provider = build_provider("sms", config, callback_base_url=callback_base_url, policy=LOOPBACK)
    assert isinstance(provider, TwilioSmsProvider)
    return provider


async def test_sms_arrives_intact_with_sid_and_status_callback(
    http_sink: HttpSink, make_message: MakeMessage
) -> None:
    body = "Hi Zoë & co: 50% off = today? Reply STOP +tags ☃"
    message = make_message(to="+15551230001", body=body)
    async with twilio(http_sink, callback_base_url="https://hooks.example/base/") as provider:
        result = await provider.send(message)
    [request] = http_sink.requests
    assert result.outcome is Outcome.SENT
    assert result.provider_message_id == request.provider_id
    assert request.provider_id is not None
    assert request.provider_id.startswith("SM")
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.form is not None
    assert request.form["To"] == "+15551230001"
    assert request.form["From"] == "+15005550006"
    assert request.form["Body"] == body
    callback = urlsplit(request.form["StatusCallback"])
    assert callback.netloc == "hooks.example"
    assert callback.path == "/base/receipts/twilio"
    assert parse_qs(callback.query) == {"message_id": [message.message_id]}
    assert http_sink.twilio_auth_tokens == {SID: "secret-token"}  # Basic auth carried the credentials


async def test_many_messages_each_delivered_once_in_order(
    http_sink: HttpSink, make_message: MakeMessage
) -> None:
    messages = [make_message(to=f"+1555000{n:04d}", body=f"code {n}") for n in range(200)]
    async with twilio(http_sink, messaging_service_sid="MG123", from_number=None) as provider:
        results = await provider.send_many(messages)
    assert all(r.outcome is Outcome.SENT for r in results)
    by_sid = {r.provider_id: r.form for r in http_sink.requests}
    for message, result in zip(messages, results, strict=True):
        form = by_sid[result.provider_message_id]
        assert form is not None
        assert (form["To"], form["Body"]) == (message.to, message.body)
        assert form["MessagingServiceSid"] == "MG123"
        assert "From" not in form
        assert "StatusCallback" not in form  # no callback base URL given
    assert Counter(r.form["To"] for r in http_sink.requests if r.form).most_common(1)[0][1] == 1


async def test_throttling_is_back_pressure_with_retry_after(
    http_sink: HttpSink, make_message: MakeMessage
) -> None:
    http_sink.throttle(count=1, retry_after=2)
    async with twilio(http_sink) as provider:
        throttled = await provider.send(make_message(to="+15551230001"))
        fine = await provider.send(make_message(to="+15551230001"))
    assert (throttled.outcome, throttled.retry_after) == (Outcome.THROTTLED, 2.0)
    assert throttled.reason is not None
    assert "20429" in throttled.reason
    assert fine.outcome is Outcome.SENT


async def test_server_errors_and_timeouts_are_transient(
    http_sink: HttpSink, make_message: MakeMessage
) -> None:
    http_sink.fail(status=503, count=1)
    async with twilio(http_sink, timeout_s=0.2) as provider:
        failed = await provider.send(make_message(to="+15551230001"))
        http_sink.latency(0.5)
        slow = await provider.send(make_message(to="+15551230001"))
    assert (failed.outcome, failed.uncertain) == (Outcome.TRANSIENT, False)  # a 503 is an answer
    assert (slow.outcome, slow.reason, slow.uncertain) == (
        Outcome.TRANSIENT, "no answer after sending (timeout)", True,
    )  # fmt: skip


async def test_invalid_number_is_a_permanent_bounce(http_sink: HttpSink, make_message: MakeMessage) -> None:
    http_sink.invalid_numbers({"+15550000000"})
    async with twilio(http_sink) as provider:
        result = await provider.send(make_message(to="+15550000000"))
        empty = await provider.send(make_message(to=""))
    assert (result.outcome, result.bounce) == (Outcome.PERMANENT, True)
    assert result.reason is not None
    assert "21211" in result.reason
    assert (empty.outcome, empty.bounce) == (Outcome.PERMANENT, True)


async def test_unreachable_api_is_transient(make_message: MakeMessage) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sink = HttpSink(port=sock.getsockname()[1])  # never started: nothing listens
        async with twilio(sink) as provider:
            result = await provider.send(make_message(to="+15551230001"))
    assert result.outcome is Outcome.TRANSIENT
    assert result.reason is not None
    assert result.reason.startswith("connection error")


async def test_sink_posts_signed_status_callbacks(http_sink: HttpSink, make_message: MakeMessage) -> None:
    """The sink plays Twilio's receipts back to the StatusCallback URL (here: its own webhook)."""
    messages = [make_message(to=f"+1555123000{n}") for n in range(3)]
    async with twilio(http_sink, callback_base_url=f"{http_sink.base_url}/webhook") as provider:
        results = await provider.send_many(messages)
    assert await http_sink.send_status_callbacks("delivered") == 3
    callbacks = http_sink.of_kind("webhook")
    assert len(callbacks) == 3
    sids = {r.provider_message_id for r in results}
    for callback in callbacks:
        assert callback.path == "/webhook/receipts/twilio"
        fields = {k: v[0] for k, v in parse_qs(callback.body.decode()).items()}
        assert fields["MessageStatus"] == "delivered"
        assert fields["MessageSid"] in sids
        url = f"{http_sink.base_url}{callback.path}?message_id={callback.query['message_id']}"
        assert callback.headers["X-Twilio-Signature"] == twilio_signature("secret-token", url, fields)
    assert {c.query["message_id"] for c in callbacks} == {m.message_id for m in messages}

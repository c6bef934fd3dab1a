"""Each new provider's adapter against its loopback server: the request as the provider documents
it, the answer understood, refusals classified. Real servers on 127.0.0.1, no mocks."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.channels.apns import ApnsPushProvider
from optibridge.channels.base import Provider
from optibridge.channels.provider_settings import ApnsSettings
from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy
from optibridge.sinks.providers import ApnsSink, ProviderSink

MakeMessage = Callable[..., OutboundMessage]
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])


@pytest.fixture
async def sink() -> AsyncIterator[ProviderSink]:
    async with ProviderSink() as server:
        yield server


async def _send(kind: str, settings: dict[str, Any], message: OutboundMessage) -> Any:
    provider: Provider = build_provider(kind, settings, policy=LOOPBACK)
    await provider.open()
    try:
        return await provider.send(message)
    finally:
        await provider.close()


EMAIL = {"from_address": "news@example.test", "from_name": "News"}


async def test_ses_send_email_v2_is_sigv4_signed_and_tagged(
    sink: ProviderSink, make_message: MakeMessage
) -> None:
    settings = {
        "type": "ses",
        "region": "eu-west-1",
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "configuration_set_name": "optibridge",
        "base_url": sink.base_url,
        **EMAIL,
    }
    message = make_message(
        subject="Hi", text_body="Hello", headers={"List-Unsubscribe": "<https://u.test/x>"}
    )
    result = await _send("email", settings, message)
    assert result.outcome is Outcome.SENT
    assert result.provider_message_id
    [request] = sink.of("ses")
    assert request.path == "/v2/email/outbound-emails"
    auth = request.headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
    assert "/eu-west-1/ses/aws4_request" in auth
    body = request.json()
    assert body["FromEmailAddress"] == '"News" <news@example.test>'
    assert body["Destination"] == {"ToAddresses": [message.to]}
    assert body["Content"]["Simple"]["Subject"]["Data"] == "Hi"
    assert body["Content"]["Simple"]["Body"]["Html"]["Data"] == message.body
    assert body["Content"]["Simple"]["Body"]["Text"]["Data"] == "Hello"
    assert {"Name": "List-Unsubscribe", "Value": "<https://u.test/x>"} in body["Content"]["Simple"]["Headers"]
    assert body["EmailTags"] == [{"Name": "optibridge_message_id", "Value": message.message_id}]
    assert body["ConfigurationSetName"] == "optibridge"

    sink.refuse(
        429,
        {"message": "Maximum sending rate exceeded."},
        headers={"x-amzn-ErrorType": "TooManyRequestsException"},
    )
    assert (await _send("email", settings, make_message())).outcome is Outcome.THROTTLED
    sink.refuse(
        400, {"message": "Email address is not verified."}, headers={"x-amzn-ErrorType": "MessageRejected"}
    )
    assert (await _send("email", settings, make_message())).outcome is Outcome.PERMANENT


async def test_sendgrid_mail_send_v3_carries_the_custom_arg(
    sink: ProviderSink, make_message: MakeMessage
) -> None:
    settings = {"type": "sendgrid", "api_key": "SG.key", "base_url": sink.base_url, **EMAIL}
    message = make_message(subject="Hi", text_body="Hello")
    result = await _send("email", settings, message)
    assert result.outcome is Outcome.SENT
    assert result.provider_message_id
    [request] = sink.of("sendgrid")
    assert request.headers["Authorization"] == "Bearer SG.key"
    body = request.json()
    assert body["personalizations"] == [{"to": [{"email": message.to}]}]
    assert body["from"] == {"email": "news@example.test", "name": "News"}
    assert body["content"] == [
        {"type": "text/plain", "value": "Hello"},
        {"type": "text/html", "value": message.body},
    ]
    assert body["custom_args"] == {"optibridge_message_id": message.message_id}
    sink.refuse(429, {"errors": [{"message": "too many"}]})
    assert (await _send("email", settings, make_message())).outcome is Outcome.THROTTLED


async def test_mailgun_messages_form_carries_the_user_variable(
    sink: ProviderSink, make_message: MakeMessage
) -> None:
    settings = {
        "type": "mailgun",
        "api_key": "key-1",
        "domain": "mg.example.test",
        "base_url": sink.base_url,
        **EMAIL,
    }
    message = make_message(subject="Hi")
    result = await _send("email", settings, message)
    assert result.outcome is Outcome.SENT
    assert result.provider_message_id.endswith("@mg.example.test>")
    [request] = sink.of("mailgun")
    assert request.path == "/v3/mg.example.test/messages"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"api:key-1").decode()
    form = request.form()
    assert form["to"] == message.to
    assert form["subject"] == "Hi"
    assert form["html"] == message.body
    assert form["v:optibridge_message_id"] == message.message_id


async def test_postmark_email_carries_metadata_and_inactive_recipient_is_a_bounce(
    sink: ProviderSink, make_message: MakeMessage
) -> None:
    settings = {"type": "postmark", "server_token": "pm-token", "base_url": sink.base_url, **EMAIL}
    message = make_message(subject="Hi")
    result = await _send("email", settings, message)
    assert result.outcome is Outcome.SENT
    assert result.provider_message_id
    [request] = sink.of("postmark")
    assert request.headers["X-Postmark-Server-Token"] == "pm-token"
    body = request.json()
    assert body["To"] == message.to
    assert body["HtmlBody"] == message.body
    assert body["MessageStream"] == "outbound"
    assert body["Metadata"] == {"optibridge_message_id": message.message_id}
    sink.refuse(
        422,
        {"ErrorCode": 406, "Message": "You tried to send to a recipient that has been marked as inactive."},
    )
    refused = await _send("email", settings, make_message())
    assert refused.outcome is Outcome.PERMANENT
    assert refused.bounce


async def test_vonage_sms_api_form_and_status_codes(sink: ProviderSink, make_message: MakeMessage) -> None:
    settings = {
        "type": "vonage",
        "api_key": "abc123",
        "api_secret": "vonage-secret",
        "from_number": "+15550001111",
        "base_url": sink.base_url,
        "status_callback_url": "https://hooks.example.test/r/vonage/t1/505",
    }
    message = make_message(to="+15550002222", body="Hello é")
    result = await _send("sms", settings, message)
    assert result.outcome is Outcome.SENT
    assert result.provider_message_id
    [request] = sink.of("vonage")
    form = request.form()
    assert form["to"] == "15550002222"
    assert form["from"] == "15550001111"
    assert form["text"] == "Hello é"
    assert form["api_key"] == "abc123"
    assert form["api_secret"] == "vonage-secret"
    assert form["client-ref"] == message.message_id
    assert form["type"] == "unicode"
    assert form["callback"] == "https://hooks.example.test/r/vonage/t1/505"
    assert form["status-report-req"] == "1"
    sink.refuse(
        200, {"message-count": "1", "messages": [{"status": "1", "error-text": "Throughput Rate Exceeded"}]}
    )
    assert (await _send("sms", settings, make_message(to="+15550003333"))).outcome is Outcome.THROTTLED
    sink.refuse(
        200, {"message-count": "1", "messages": [{"status": "33", "error-text": "Number De-activated"}]}
    )
    barred = await _send("sms", settings, make_message(to="+15550004444"))
    assert barred.outcome is Outcome.PERMANENT
    assert barred.bounce


async def test_plivo_message_api_with_the_callback_url(sink: ProviderSink, make_message: MakeMessage) -> None:
    settings = {
        "type": "plivo",
        "auth_id": "MAXXXXXXXXXXXXXXXXXX",
        "auth_token": "plivo-token",
        "from_number": "+15550001111",
        "base_url": sink.base_url,
        "status_callback_url": "https://hooks.example.test/r/plivo/t1/505",
    }
    message = make_message(to="+15550002222", body="Hello")
    result = await _send("sms", settings, message)
    assert result.outcome is Outcome.SENT
    assert result.provider_message_id
    [request] = sink.of("plivo")
    assert request.path == "/v1/Account/MAXXXXXXXXXXXXXXXXXX/Message/"
    assert (
        request.headers["Authorization"]
        == "Basic " + base64.b64encode(b"MAXXXXXXXXXXXXXXXXXX:plivo-token").decode()
    )
    assert request.json() == {
        "src": "+15550001111",
        "dst": "+15550002222",
        "text": "Hello",
        "url": f"https://hooks.example.test/r/plivo/t1/505?message_id={message.message_id}",
        "method": "POST",
    }


def _p8() -> tuple[str, ec.EllipticCurvePublicKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode(), key.public_key()


def _apns(settings: dict[str, Any], tls_files: tuple[str, str]) -> ApnsPushProvider:
    """As the factory builds it (settings validated, destinations checked), trusting the sink's CA."""
    assert isinstance(build_provider("push", settings, policy=LOOPBACK), ApnsPushProvider)
    model = ApnsSettings.model_validate(settings)
    return ApnsPushProvider(
        model, policy=LOOPBACK, ssl_context=ssl.create_default_context(cafile=tls_files[0])
    )


async def test_apns_over_http2_with_an_es256_token_and_dead_tokens_unregistered(
    make_message: MakeMessage, tls_files: tuple[str, str]
) -> None:
    pem, public = _p8()
    async with ApnsSink(public_key=public, tls=tls_files) as apns:
        settings = {
            "type": "apns",
            "key_id": "ABC123DEFG",
            "team_id": "TEAM123456",
            "signing_private_key": pem,
            "topic": "com.example.app",
            "base_url": apns.base_url,
        }
        provider = _apns(settings, tls_files)
        await provider.open()
        try:
            message = make_message(to="a1b2c3d4" * 8, subject="Title", body="Body", data={"k": "v"})
            results = await provider.send_many(
                [
                    message,
                    make_message(to="bad0" * 16),
                    make_message(to="gone" * 16),
                    make_message(to="abcd" * 16),
                ]
            )
        finally:
            await provider.close()
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT, Outcome.PERMANENT, Outcome.SENT]
    assert results[0].provider_message_id == message.message_id
    assert results[1].unregistered
    assert results[2].unregistered
    assert not results[3].unregistered
    first = next(r for r in apns.requests if r.path == f"/3/device/{message.to}")
    assert first.status == 200
    assert first.headers["apns-topic"] == "com.example.app"
    assert first.headers["apns-push-type"] == "alert"
    assert first.headers["apns-id"] == message.message_id
    assert first.json() == {
        "aps": {"alert": {"body": "Body", "title": "Title"}},
        "k": "v",
        "message_id": message.message_id,
    }


async def test_apns_with_a_token_the_sink_cannot_verify_is_refused(
    make_message: MakeMessage, tls_files: tuple[str, str]
) -> None:
    pem, _ = _p8()
    _, other_public = _p8()
    async with ApnsSink(public_key=other_public, tls=tls_files) as apns:
        settings = {
            "type": "apns",
            "key_id": "ABC123DEFG",
            "team_id": "TEAM123456",
            "signing_private_key": pem,
            "topic": "com.example.app",
            "base_url": apns.base_url,
        }
        provider = _apns(settings, tls_files)
        try:
            result = await provider.send(make_message(to="abcd" * 16))
        finally:
            await provider.close()
    assert result.outcome is Outcome.TRANSIENT
    assert "InvalidProviderToken" in (result.reason or "")


async def test_new_providers_refuse_inside_destinations_under_the_default_policy(sink: ProviderSink) -> None:
    for kind, settings in (
        ("email", {"type": "sendgrid", "api_key": "k", "base_url": sink.base_url, **EMAIL}),
        (
            "email",
            {
                "type": "ses",
                "region": "eu-west-1",
                "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                "aws_secret": "s",
                "sns_cert_base_url": "http://169.254.169.254",
                **EMAIL,
            },
        ),
        (
            "sms",
            {
                "type": "plivo",
                "auth_id": "MAXXXXXXXXXXXXXXXXXX",
                "auth_token": "t",
                "from_number": "+1",
                "base_url": "http://10.0.0.1",
            },
        ),
    ):
        with pytest.raises(ConfigError, match="refused"):
            build_provider(kind, settings)

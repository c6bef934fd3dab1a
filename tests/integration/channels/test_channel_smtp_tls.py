"""The SMTP adapter's TLS and AUTH options against the sink with a self-signed certificate."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.core.outbound import OutboundPolicy
from optibridge.sinks import SmtpSink

MakeMessage = Callable[..., OutboundMessage]  # the `make_message` fixture (conftest.py)

# The sinks run on loopback: the operator setting opens it (the default policy refuses it).
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])


def settings(sink: SmtpSink, cert: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "smtp",
        "host": "127.0.0.1",
        "port": sink.port,
        "from_address": "news@shop.example",
        "cert_bundle": cert,  # the certificate is its own CA: verification is real
        **overrides,
    }


async def test_starttls_with_auth(
    server_tls: ssl.SSLContext, tls_files: tuple[str, str], make_message: MakeMessage
) -> None:
    sink = SmtpSink(tls_context=server_tls, require_starttls=True, credentials={"mailer": "pa55"})
    async with sink:
        good = build_provider(
            "email", settings(sink, tls_files[0], username="mailer", password="pa55"), policy=LOOPBACK
        )
        bad = build_provider(
            "email", settings(sink, tls_files[0], username="mailer", password="wrong"), policy=LOOPBACK
        )
        for provider in (good, bad):
            await provider.open()
        try:
            sent = await good.send(make_message())
            refused = await bad.send(make_message())
        finally:
            for provider in (good, bad):
                await provider.close()
    assert sent.outcome is Outcome.SENT
    assert sink.authenticated_users == ["mailer"]
    assert sink.count == 1
    # Credentials are the same for every message: never a reason to fail this one.
    assert refused.outcome is Outcome.TRANSIENT
    assert refused.reason is not None
    assert refused.reason.startswith("connect: 535")


async def test_implicit_tls(
    server_tls: ssl.SSLContext, tls_files: tuple[str, str], make_message: MakeMessage
) -> None:
    async with SmtpSink(tls_context=server_tls, implicit_tls=True) as sink:
        provider = build_provider("email", settings(sink, tls_files[0], tls="implicit"), policy=LOOPBACK)
        await provider.open()
        try:
            result = await provider.send(make_message())
        finally:
            await provider.close()
    assert result.outcome is Outcome.SENT
    assert sink.count == 1


async def test_required_starttls_missing_is_transient(
    tls_files: tuple[str, str], make_message: MakeMessage
) -> None:
    async with SmtpSink() as sink:  # offers no STARTTLS
        provider = build_provider("email", settings(sink, tls_files[0], tls="starttls"), policy=LOOPBACK)
        await provider.open()
        try:
            result = await provider.send(make_message())
        finally:
            await provider.close()
    assert result.outcome is Outcome.TRANSIENT
    assert sink.count == 0

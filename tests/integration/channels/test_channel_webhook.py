"""The webhook adapter: signed, idempotent POSTs, and the SSRF guard."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.channels.settings import WebhookSettings
from optibridge.channels.signing import verify
from optibridge.channels.webhook import WebhookProvider
from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy
from optibridge.sinks import HttpSink

MakeMessage = Callable[..., OutboundMessage]  # the `make_message` fixture (conftest.py)

SECRET = "whsec-0123456789abcdef"


# The sink runs on loopback: the operator's setting opens it (a tenant's settings cannot).
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])


def webhook(url: str, policy: OutboundPolicy = LOOPBACK, **settings: Any) -> WebhookProvider:
    config = {"type": "webhook", "url": url, "signing_secret": SECRET, **settings}
    provider = build_provider("webhook", config, callback_base_url=None, policy=policy)
    assert isinstance(provider, WebhookProvider)
    return provider


async def test_payload_is_signed_and_carries_an_idempotency_key(
    http_sink: HttpSink, make_message: MakeMessage
) -> None:
    payload = json.dumps({"customer": "c1", "text": "Zoë ☃", "offer": {"pct": 50}}, ensure_ascii=False)
    message = make_message(to="", body=payload)
    async with webhook(f"{http_sink.base_url}/webhook/crm", headers={"X-Api-Key": "k"}) as provider:
        result = await provider.send(message)
    [request] = http_sink.requests
    assert result.outcome is Outcome.SENT
    assert request.body == payload.encode("utf-8")
    assert request.json == json.loads(payload)
    assert request.headers["Idempotency-Key"] == message.message_id
    assert request.headers["X-Api-Key"] == "k"
    assert request.headers["Content-Type"] == "application/json"
    timestamp = request.headers["X-Optibridge-Timestamp"]
    assert verify(
        SECRET.encode(), timestamp, request.body, request.headers["X-Optibridge-Signature"], now=time.time()
    )
    assert not verify(
        b"other-secret", timestamp, request.body, request.headers["X-Optibridge-Signature"], now=time.time()
    )


async def test_receiver_faults_are_classified(http_sink: HttpSink, make_message: MakeMessage) -> None:
    async with webhook(f"{http_sink.base_url}/webhook/crm") as provider:
        http_sink.throttle(count=1, retry_after=4)
        throttled = await provider.send(make_message(to="", body="{}"))
        http_sink.fail(status=502, count=1)
        failed = await provider.send(make_message(to="", body="{}"))
    async with webhook(f"{http_sink.base_url}/not-a-route") as provider:
        missing = await provider.send(make_message(to="", body="{}"))
    assert (throttled.outcome, throttled.retry_after) == (Outcome.THROTTLED, 4.0)
    assert failed.outcome is Outcome.TRANSIENT
    assert missing.outcome is Outcome.PERMANENT


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
        "http://127.1/hook",
        "http://localhost:8080/hook",
        "http://0x7f.1/hook",
        "http://0177.0.0.1/hook",
        "ftp://example.com/hook",
    ],
)
def test_private_destinations_are_refused_when_settings_are_built(url: str) -> None:
    with pytest.raises(ConfigError, match=r"refused|http"):
        webhook(url, OutboundPolicy())


def test_a_tenant_cannot_allow_private_destinations_itself() -> None:
    with pytest.raises(
        ConfigError, match="allow_private is an operator setting now: allow_private_destinations"
    ):
        webhook("http://127.0.0.1/hook", OutboundPolicy(), allow_private=True)


async def test_hostname_resolving_to_loopback_is_refused_at_connect(
    http_sink: HttpSink, make_message: MakeMessage
) -> None:
    """The machine's own hostname resolves to 127.0.0.1 on most hosts; the guard sees through it."""
    hostname = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(hostname, http_sink.port, socket.AF_INET)}
    except OSError:
        pytest.skip("this host's name does not resolve")
    if not any(a.startswith("127.") for a in addresses):
        pytest.skip("this host's name does not resolve to loopback")
    async with webhook(f"http://{hostname}:{http_sink.port}/webhook/x", OutboundPolicy()) as provider:
        result = await provider.send(make_message(to="", body="{}"))
    assert result.outcome is Outcome.PERMANENT
    assert result.reason is not None
    assert "loopback" in result.reason
    assert http_sink.requests == []


class _PointsAtLoopback(AbstractResolver):
    """DNS for a public-looking name that now answers 127.0.0.1 (rebinding after validation)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self.port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


async def test_dns_rebinding_cannot_reach_loopback(http_sink: HttpSink, make_message: MakeMessage) -> None:
    """The URL passes validation (a public name); the guard re-checks what it resolves to at connect."""
    settings = WebhookSettings(type="webhook", url="http://rebind.example/webhook/x", signing_secret=SECRET)
    async with WebhookProvider(settings, resolver=_PointsAtLoopback(http_sink.port)) as provider:
        results = await provider.send_many([make_message(to="", body="{}") for _ in range(3)])
    assert {r.outcome for r in results} == {Outcome.PERMANENT}
    assert all("127.0.0.1 is loopback" in (r.reason or "") for r in results)
    assert http_sink.requests == []

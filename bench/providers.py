"""Provider adapters alone: each of the newer adapters against its loopback server.

    python bench/providers.py [--size 2000] [--in-flight 256] [--latency-ms 50]

Every adapter (SES, SendGrid, Mailgun, Postmark, Vonage, Plivo over HTTP/1.1; APNs over HTTP/2 and
TLS) sends `--size` messages with `--in-flight` at once, through `send_many`, to the provider sinks
of `optibridge.sinks.providers` answering after `--latency-ms`; the sink runs in the same process
and event loop, so the figures are this machine's CPU per request more than the provider's. The
physical limit at that concurrency is in_flight / latency. Median of 3 batches after a warm-up of
50. The last line is one JSON object ("rate": the slowest adapter's messages/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from optibridge.channels import OutboundMessage, build_provider
from optibridge.channels.apns import ApnsPushProvider
from optibridge.channels.base import Provider
from optibridge.channels.http_transport import HttpChannel
from optibridge.channels.provider_settings import ApnsSettings
from optibridge.core.outbound import OutboundPolicy
from optibridge.sinks.providers import ApnsSink, ProviderSink
from optibridge.testing.tls import loopback_certificate

LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8"])
ADDRESS = {"email": "c{}@example.test", "sms": "+1555{:07d}", "push": "{:064x}"}


def messages(kind: str, count: int) -> list[OutboundMessage]:
    return [
        OutboundMessage(
            message_id=str(uuid.uuid4()),
            tenant_id="t",
            campaign_id=1,
            customer_id=str(i),
            template_id=1,
            to=ADDRESS[kind].format(i),
            body="<p>Hello there</p>",
            subject="Hi",
        )
        for i in range(count)
    ]


async def rate_of(provider: Provider, kind: str, size: int) -> float:
    rates = []
    await provider.open()
    try:
        await provider.send_many(messages(kind, 50))  # connections open, caches warm
        for _ in range(3):
            batch = messages(kind, size)
            started = time.perf_counter()
            results = await provider.send_many(batch)
            elapsed = time.perf_counter() - started
            failed = {r.reason for r in results if r.outcome.value != "sent"}
            if failed:
                raise SystemExit(f"{provider.name}: not every message sent: {failed}")
            rates.append(size / elapsed)
    finally:
        await provider.close()
    return statistics.median(rates)


async def main(size: int, in_flight: int, latency_s: float) -> dict[str, float]:
    common: dict[str, Any] = {"max_connections": in_flight}
    email = {"from_address": "n@example.test", **common}
    found: dict[str, float] = {}
    async with ProviderSink() as sink:
        sink.max_records = 0
        sink.latency(latency_s)
        base = sink.base_url
        cases: list[tuple[str, dict[str, Any]]] = [
            (
                "email",
                {
                    "type": "ses",
                    "region": "eu-west-1",
                    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                    "aws_secret": "s",
                    "base_url": base,
                    **email,
                },
            ),
            ("email", {"type": "sendgrid", "api_key": "k", "base_url": base, **email}),
            (
                "email",
                {"type": "mailgun", "api_key": "k", "domain": "mg.example.test", "base_url": base, **email},
            ),
            ("email", {"type": "postmark", "server_token": "k", "base_url": base, **email}),
            (
                "sms",
                {
                    "type": "vonage",
                    "api_key": "k1",
                    "api_secret": "s",
                    "from_number": "1555",
                    "base_url": base,
                    **common,
                },
            ),
            (
                "sms",
                {
                    "type": "plivo",
                    "auth_id": "MAXXXXXXXXXXXXXXXXXX",
                    "auth_token": "t",
                    "from_number": "+1",
                    "base_url": base,
                    **common,
                },
            ),
        ]
        for kind, settings in cases:
            provider = build_provider(kind, settings, policy=LOOPBACK)
            if isinstance(provider, HttpChannel):  # an operator's HTTPS_PROXY must not catch loopback
                provider.set_proxy_from_env(False)
            found[settings["type"]] = rate = await rate_of(provider, kind, size)
            print(f"{settings['type']:9s} {rate:8,.0f} messages/s", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        cert, key = loopback_certificate(Path(folder))
        signing = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        async with ApnsSink(tls=(cert, key)) as apns:
            apns.max_records = 0
            apns.delay = latency_s
            settings_apns = ApnsSettings(
                type="apns",
                key_id="ABC123DEFG",
                team_id="TEAM123456",
                signing_private_key=signing.decode(),
                topic="a.b",
                base_url=apns.base_url,
                max_connections=in_flight,
            )
            provider = ApnsPushProvider(
                settings_apns, policy=LOOPBACK, ssl_context=ssl.create_default_context(cafile=cert)
            )
            provider.set_proxy_from_env(False)
            found["apns"] = rate = await rate_of(provider, "push", size)
            print(f"{'apns':9s} {rate:8,.0f} messages/s (HTTP/2 over TLS)", flush=True)
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    rates = asyncio.run(main(args.size, args.in_flight, args.latency_ms / 1000))
    limit = args.in_flight / (args.latency_ms / 1000) if args.latency_ms else None
    slowest = min(rates.values())
    print(
        json.dumps(
            {
                "bench": "providers",
                "size": args.size,
                "rate": round(slowest),
                "unit": "messages/s",
                **({"limit_rate": round(limit), "ratio": round(slowest / limit, 3)} if limit else {}),
                "rates": {name: round(r) for name, r in rates.items()},
                "in_flight": args.in_flight,
                "latency_ms": args.latency_ms,
            }
        )
    )

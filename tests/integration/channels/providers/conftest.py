"""A database, the provider receipt routes on loopback, and a tenant with one channel per new
provider (settings and secrets stored as the product stores them), each with a campaign sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fastapi import FastAPI
from psycopg.types.json import Jsonb

from optibridge.bootstrap import open_runtime
from optibridge.core.config import Settings, split_provider_settings
from optibridge.emulator.testing import serving
from optibridge.runtime import Runtime
from optibridge.sinks.providers import ProviderSink, ReceiptSigner
from optibridge.testing.feedback import MutableClock, SeededMessage, add_channel, add_tenant, seed_campaign
from optibridge.web import provider_receipts

T0 = datetime.now(
    UTC
)  # signers stamp receipts with the real time; the SNS test certificate is valid around it
TOPIC = "arn:aws:sns:eu-west-1:123456789012:optibridge-ses-events"
MAILGUN_KEY = "mailgun-webhook-signing-key-of-t1"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark-hook", "postmark-webhook-password-of-t1"
VONAGE_SECRET = "vonage-signature-secret-of-t1"
PLIVO_TOKEN = "plivo-auth-token-of-t1"
CHANNELS = {"ses": 601, "sendgrid": 602, "mailgun": 603, "postmark": 604, "vonage": 605, "plivo": 606}
EMAIL = {"from_address": "news@example.test"}


@dataclass
class ReceiptStack:
    runtime: Runtime
    base_url: str
    session: aiohttp.ClientSession
    sink: ProviderSink
    signer: ReceiptSigner
    messages: dict[str, list[SeededMessage]]
    other_tenant: list[SeededMessage]
    clock: MutableClock

    def url(self, provider: str, tenant: str = "t1") -> str:
        return f"{self.base_url}/r/{provider}/{tenant}/{CHANNELS[provider]}"

    async def post(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.session.post(url, data=body, headers=headers or {}) as resp:
            text = await resp.read()
            return resp.status, text

    async def events(self) -> list[tuple[str, str, str]]:
        async with self.runtime.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT tenant_id, customer_id, kind, dedupe_key FROM message_events ORDER BY id"
                )
            ).fetchall()
        return [(r["tenant_id"], r["customer_id"], r["kind"]) for r in rows]

    async def suppressed_count(self) -> int:
        async with self.runtime.pool.connection() as conn:
            row = await (await conn.execute("SELECT count(*) AS n FROM suppressions")).fetchone()
        assert row is not None
        return int(row["n"])


def _provider_settings(sink: ProviderSink, signer: ReceiptSigner) -> dict[str, dict[str, Any]]:
    return {
        "ses": {
            "type": "ses",
            "region": "eu-west-1",
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "aws_secret": "aws-secret",
            "sns_topic_arns": [TOPIC],
            "sns_cert_base_url": sink.base_url,
            **EMAIL,
        },
        "sendgrid": {
            "type": "sendgrid",
            "api_key": "SG.x",
            "webhook_public_key": signer.sendgrid_public_key,
            **EMAIL,
        },
        "mailgun": {
            "type": "mailgun",
            "api_key": "key",
            "domain": "mg.example.test",
            "webhook_signing_secret": MAILGUN_KEY,
            **EMAIL,
        },
        "postmark": {
            "type": "postmark",
            "server_token": "pm",
            "webhook_username": POSTMARK_USER,
            "webhook_password": POSTMARK_PASSWORD,
            **EMAIL,
        },
        "vonage": {
            "type": "vonage",
            "api_key": "abc123",
            "api_secret": "s",
            "from_number": "15550001111",
            "signature_secret": VONAGE_SECRET,
        },
        "plivo": {
            "type": "plivo",
            "auth_id": "MAXXXXXXXXXXXXXXXXXX",
            "auth_token": PLIVO_TOKEN,
            "from_number": "+1",
        },
    }


@pytest.fixture
async def stack(db_url: str, test_secret_key: str, tmp_path: Path) -> AsyncIterator[ReceiptStack]:
    settings = Settings(
        database_url=db_url,
        secret_key=test_secret_key,
        data_dir=tmp_path,
        optimove_rate_limit=0,
        allow_private_destinations=["127.0.0.0/8", "::1/128"],  # the SNS certificate sink is on loopback
    )
    signer = ReceiptSigner()
    clock = MutableClock(T0)
    async with (
        ProviderSink(cert_pem=signer.sns_cert_pem) as sink,
        open_runtime(settings, upgrade=False) as runtime,
    ):
        messages: dict[str, list[SeededMessage]] = {}
        async with runtime.pool.connection() as conn:
            await add_tenant(conn, runtime.box, "t1", "http://127.0.0.1:9", "k")
            await add_tenant(conn, runtime.box, "t2", "http://127.0.0.1:9", "k")
            for provider, provider_settings in _provider_settings(sink, signer).items():
                kind = "sms" if provider in ("vonage", "plivo") else "email"
                channel_id = CHANNELS[provider]
                await add_channel(conn, "t1", provider, kind, channel_id)
                plain, secret = split_provider_settings(provider_settings)
                await conn.execute(
                    "UPDATE channels SET settings = %s, secrets = %s"
                    " WHERE tenant_id = %s AND optimove_channel_id = %s",
                    (Jsonb(plain), runtime.box.encrypt_json(secret) if secret else None, "t1", channel_id),
                )
                messages[provider] = await seed_campaign(
                    conn,
                    tenant_id="t1",
                    channel_name=provider,
                    channel_kind=kind,
                    channel_id=channel_id,
                    campaign_id=7,
                    customers=3,
                    sent_at=T0,
                )
            await add_channel(conn, "t2", "email", "email", 700)
            other = await seed_campaign(
                conn,
                tenant_id="t2",
                channel_name="email",
                channel_kind="email",
                channel_id=700,
                campaign_id=7,
                customers=2,
                sent_at=T0,
                first=100,
            )
        app = FastAPI()
        app.include_router(provider_receipts.router(runtime, clock=clock))
        async with serving(app) as base_url, aiohttp.ClientSession() as session:
            yield ReceiptStack(runtime, base_url, session, sink, signer, messages, other, clock)

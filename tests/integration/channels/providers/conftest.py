"""A database, the provider receipt routes on loopback, and a tenant with one channel per new
provider (settings and secrets stored as the product stores them), each with a campaign sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from fastapi import FastAPI
from provider_webhook_helpers import CHANNELS, ReceiptStack, provider_settings
from psycopg.types.json import Jsonb

from optibridge.bootstrap import open_runtime
from optibridge.core.config import Settings, split_provider_settings
from optibridge.emulator.testing import serving
from optibridge.sinks.providers import ProviderSink, ReceiptSigner
from optibridge.testing.feedback import MutableClock, SeededMessage, add_channel, add_tenant, seed_campaign
from optibridge.web import provider_receipts


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
    # Now, not at import: the signers stamp with the real time, and under xdist a test may run
    # minutes after its module was imported (a 1-hour freshness check then lost its margin).
    t0 = datetime.now(UTC)
    clock = MutableClock(t0)
    async with (
        ProviderSink(cert_pem=signer.sns_cert_pem) as sink,
        open_runtime(settings, upgrade=False) as runtime,
    ):
        messages: dict[str, list[SeededMessage]] = {}
        async with runtime.pool.connection() as conn:
            await add_tenant(conn, runtime.box, "t1", "http://127.0.0.1:9", "k")
            await add_tenant(conn, runtime.box, "t2", "http://127.0.0.1:9", "k")
            for provider, one in provider_settings(sink, signer).items():
                kind = "sms" if provider in ("vonage", "plivo") else "email"
                channel_id = CHANNELS[provider]
                await add_channel(conn, "t1", provider, kind, channel_id)
                plain, secret = split_provider_settings(one)
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
                    sent_at=t0,
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
                sent_at=t0,
                first=100,
            )
        app = FastAPI()
        app.include_router(provider_receipts.router(runtime, clock=clock))
        async with serving(app) as base_url, aiohttp.ClientSession() as session:
            yield ReceiptStack(runtime, base_url, session, sink, signer, messages, other, clock)

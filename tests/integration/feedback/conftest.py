"""Fixtures: a migrated database, a runtime, the tracking and receipt routes on a loopback server,
and a tenant with an e-mail and an SMS channel whose campaign 7 was sent at T0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from feedback_helpers import EMAIL, SMS, T0, TENANT, TWILIO_AUTH_TOKEN, TWILIO_SETTINGS, Seeded
from psycopg.types.json import Jsonb

from optibridge.core.config import Settings
from optibridge.core.feedback_settings import FeedbackSettings
from optibridge.testing.feedback import (
    MutableClock,
    add_channel,
    add_tenant,
    feedback_stack,
    seed_campaign,
)


@pytest.fixture
def settings(db_url: str, test_secret_key: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        secret_key=test_secret_key,
        data_dir=tmp_path,
        optimove_rate_limit=0,
        allow_private_destinations=["127.0.0.0/8", "::1/128"],  # the emulator is on loopback
    )


@pytest.fixture
async def seeded(settings: Settings) -> AsyncIterator[Seeded]:
    clock = MutableClock(T0)
    # Hits written before the answer (no 50 ms buffer), so each test can assert at once.
    async with feedback_stack(settings, clock, FeedbackSettings(flush_interval_ms=0)) as stack:
        async with stack.runtime.pool.connection() as conn:
            await add_tenant(conn, stack.runtime.box, TENANT, "http://127.0.0.1:9", "k")
            await add_tenant(conn, stack.runtime.box, "t2", "http://127.0.0.1:9", "k")
            await add_channel(conn, TENANT, "email", "email", EMAIL, feedback={"report_preferences": True})
            await add_channel(conn, TENANT, "sms", "sms", SMS)
            # Twilio signs its callbacks with the account's auth token: the SMS channel has one.
            await conn.execute(
                "UPDATE channels SET settings = %s, secrets = %s"
                " WHERE tenant_id = %s AND optimove_channel_id = %s",
                (
                    Jsonb(TWILIO_SETTINGS),
                    stack.runtime.box.encrypt_json({"auth_token": TWILIO_AUTH_TOKEN}),
                    TENANT,
                    SMS,
                ),
            )
            await add_channel(conn, "t2", "email", "email", EMAIL)
            common = {"tenant_id": TENANT, "campaign_id": 7, "customers": 10, "sent_at": T0}
            email = await seed_campaign(
                conn, channel_name="email", channel_kind="email", channel_id=EMAIL, **common
            )
            sms = await seed_campaign(conn, channel_name="sms", channel_kind="sms", channel_id=SMS, **common)
            await seed_campaign(
                conn,
                tenant_id="t2",
                channel_name="email",
                channel_kind="email",
                channel_id=EMAIL,
                campaign_id=7,
                customers=3,
                sent_at=T0,
                first=100,
            )
        clock.advance(hours=1)  # hits come an hour after sending: people, not scanners
        yield Seeded(stack, clock, email, sms)

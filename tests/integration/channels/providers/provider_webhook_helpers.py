"""Shared by the provider webhook tests: constants and the stack record (a module of its own: test
files import it by a name no other test directory uses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from optibridge.runtime import Runtime
from optibridge.sinks.providers import ProviderSink, ReceiptSigner
from optibridge.testing.feedback import MutableClock, SeededMessage

# Signers stamp receipts with the real time; the SNS test certificate is valid around it.
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


def provider_settings(sink: ProviderSink, signer: ReceiptSigner) -> dict[str, dict[str, Any]]:
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

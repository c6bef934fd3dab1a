"""Attacks on the Twilio status-callback endpoint (POST /r/twilio/{token}) of a running service.

A callback URL leaks (logs, a proxy, a support ticket): whoever has it must not be able to mark the
message undelivered or opted out (which suppresses the number) without Twilio's signature, made
with the auth token of the Twilio account configured on the message's channel; and after the
reporting window the URL stops working altogether.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from securitykit import Reply, Served

from optibridge.core.secretbox import SecretBox, parse_keys
from optibridge.feedback.keys import TrackingKeys
from optibridge.feedback.links import twilio_status_callback_url
from optibridge.feedback.receipt_parsing import twilio_signature
from optibridge.testing.feedback import seed_campaign

SMS = 505
AUTH = {"acme": "acme-twilio-auth-token", "globex": "globex-twilio-auth-token"}
# Number opted out (Twilio 21610): the worst a forger can do, it suppresses the number for good.
OPT_OUT = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "undelivered", "ErrorCode": "21610"}


async def _seed(db_url: str, secret_key: str) -> dict[str, uuid.UUID]:
    """An SMS channel on Twilio for each tenant and one sent message each."""
    box = SecretBox(parse_keys(secret_key))
    sent = datetime.now(UTC) - timedelta(hours=1)
    out = {}
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        for tenant in ("acme", "globex"):
            settings = {"type": "twilio", "account_sid": f"AC{tenant}", "from_number": "+15550001111"}
            await conn.execute(
                "INSERT INTO channels (tenant_id, name, kind, optimove_channel_id, options, settings,"
                " secrets) VALUES (%s, 'sms', 'sms', %s, '{}', %s, %s)",
                (tenant, SMS, Jsonb(settings), box.encrypt_json({"auth_token": AUTH[tenant]})),
            )
            seeded = await seed_campaign(
                conn,
                tenant_id=tenant,
                channel_name="sms",
                channel_kind="sms",
                channel_id=SMS,
                campaign_id=70,
                customers=1,
                sent_at=sent,
                first=1 if tenant == "acme" else 50,
            )
            out[tenant] = seeded[0].id
    return out


async def _stored(db_url: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        counts = {}
        for table in ("message_events", "suppressions"):
            row = await (await conn.execute(f"SELECT count(*) AS n FROM {table}")).fetchone()
            assert row is not None
            counts[table] = int(row["n"])
        return counts


class Twilio:
    def __init__(self, served: Served) -> None:
        self.served = served
        self.keys = TrackingKeys.from_secret_keys(parse_keys(served.env["OPTIBRIDGE_SECRET_KEY"]))
        self.messages = asyncio.run(_seed(served.db_url, served.env["OPTIBRIDGE_SECRET_KEY"]))

    def url(self, tenant: str, *, issued_at: datetime | None = None) -> str:
        issued = issued_at or datetime.now(UTC) - timedelta(hours=1)
        return twilio_status_callback_url(
            self.served.base_url, self.messages[tenant], self.keys, issued_at=issued
        )

    def post(self, url: str, form: dict[str, str], signature: str | None) -> Reply:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        path = url.removeprefix(self.served.base_url)
        return self.served.request("POST", path, body=urlencode(form).encode(), headers=headers)

    def stored(self) -> dict[str, int]:
        return asyncio.run(_stored(self.served.db_url))


@pytest.fixture
def twilio(served: Served) -> Twilio:
    return Twilio(served)


def _sign(token: str, url: str, form: dict[str, Any]) -> str:
    return twilio_signature(token, url, form.items())


def test_unsigned_callback_is_403_and_stores_nothing(twilio: Twilio) -> None:
    assert twilio.post(twilio.url("acme"), OPT_OUT, None).status == 403
    assert twilio.post(twilio.url("acme"), OPT_OUT, "").status == 403
    assert twilio.stored() == {"message_events": 0, "suppressions": 0}


def test_forged_signatures_are_403_and_store_nothing(twilio: Twilio) -> None:
    url = twilio.url("acme")
    forged = [
        _sign("guessed-token", url, OPT_OUT),
        _sign(AUTH["globex"], url, OPT_OUT),  # another tenant's Twilio account
        _sign(AUTH["acme"], url, {**OPT_OUT, "ErrorCode": "30003"}),  # signature of another body
        _sign(AUTH["acme"], url.replace("127.0.0.1", "localhost"), OPT_OUT),  # of another URL
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
    ]
    for signature in forged:
        assert twilio.post(url, OPT_OUT, signature).status == 403, signature
    assert twilio.stored() == {"message_events": 0, "suppressions": 0}


def test_expired_callback_is_refused_even_when_signed(twilio: Twilio) -> None:
    url = twilio.url("acme", issued_at=datetime.now(UTC) - timedelta(days=8, minutes=5))
    assert twilio.post(url, OPT_OUT, _sign(AUTH["acme"], url, OPT_OUT)).status == 410
    assert twilio.stored() == {"message_events": 0, "suppressions": 0}


def test_callback_signed_by_the_channels_account_is_recorded(twilio: Twilio) -> None:
    url = twilio.url("acme")
    reply = twilio.post(url, OPT_OUT, _sign(AUTH["acme"], url, OPT_OUT))
    assert reply.status == 200, reply.text
    after = twilio.stored()
    assert after["message_events"] == 1
    assert after["suppressions"] >= 1  # the number (and, for an opt-out, the customer)
    # globex's own account signs for globex's message, not for acme's
    url = twilio.url("globex")
    delivered = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered"}
    assert twilio.post(url, delivered, _sign(AUTH["globex"], url, delivered)).status == 200
    assert twilio.stored() == {"message_events": 2, "suppressions": after["suppressions"]}

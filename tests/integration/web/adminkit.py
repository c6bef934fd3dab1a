"""Helpers for the admin API tests: an HTTP caller that remembers every answer (for the leak
check), seeded tenants with known secrets, and campaigns with messages in given states."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg

from optibridge.core.config import TenantConfig
from optibridge.store import tenants

from inprocess import Service

# Secrets seeded into the tenants; no response may ever contain one of them.
ACME_API_KEY = "acme-optimove-key-3f9c2d71"
SMTP_PASSWORD = "smtp-pass-8e1b44aa"
GLOBEX_PASSWORD = "globex-login-pw-51c0e7"
TWILIO_TOKEN = "twilio-token-77aa01bc"
SECRETS = (ACME_API_KEY, SMTP_PASSWORD, GLOBEX_PASSWORD, TWILIO_TOKEN)

Conn = psycopg.AsyncConnection[dict[str, Any]]


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    text: str


@dataclass
class Admin:
    svc: Service
    admin_key: str
    acme_key: str
    globex_key: str
    revoked_key: str
    keys: dict[str, int] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)  # every response body seen, for the leak check

    @property
    def base_url(self) -> str:
        return self.svc.base_url

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = "admin",
        json_body: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        if key is not None:
            token = {"admin": self.admin_key, "acme": self.acme_key, "globex": self.globex_key}.get(key, key)
            hdrs["Authorization"] = f"Bearer {token}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, self.base_url + path, json=json_body, data=data, headers=hdrs, allow_redirects=False
            ) as resp,
        ):
            text = await resp.text()
            self.texts.append(text)
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
            return Reply(resp.status, body, dict(resp.headers), text)


def assert_no_secrets(texts: list[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a credential leaked into a response: {text[:300]}"


async def seed_tenants(conn: Conn, box: Any) -> None:
    acme = TenantConfig.model_validate(
        {
            "id": "acme",
            "name": "Acme Corp",
            "api_base_url": "http://127.0.0.1:9",
            "api_key": ACME_API_KEY,
            "channels": [
                {
                    "name": "email",
                    "kind": "email",
                    "channel_id": 504,
                    "provider": {"host": "smtp.example.com", "port": 587, "password": SMTP_PASSWORD},
                },
                {
                    "name": "sms",
                    "kind": "sms",
                    "channel_id": 505,
                    "provider": {"account_sid": "AC1", "auth_token": TWILIO_TOKEN},
                },
            ],
        }
    )
    globex = TenantConfig.model_validate(
        {
            "id": "globex",
            "api_base_url": "http://127.0.0.1:9",
            "username": "globex-user",
            "password": GLOBEX_PASSWORD,
            "channels": [{"name": "email", "kind": "email", "channel_id": 504}],
        }
    )
    await tenants.add(conn, box, acme, "cli")
    await tenants.add(conn, box, globex, "cli")


async def seed_campaign(
    conn: Conn,
    tenant: str,
    channel_name: str,
    channel_id: int,
    campaign_id: int,
    states: dict[str, int],
    *,
    templates: tuple[int, ...] = (1,),
    created_at: datetime | None = None,
    status: str = "ingested",
    reason: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, status, first_event,
                                  customers, messages, ingest_pages, created_at)
           VALUES (%s, %s, %s, %s, %s, 1, %s, %s, 1, %s)""",
        (
            tenant,
            channel_id,
            campaign_id,
            channel_name,
            status,
            sum(states.values()),
            sum(states.values()),
            created_at or datetime.now(UTC),
        ),
    )
    now = datetime.now(UTC)
    rows = []
    i = 0
    for state, n in states.items():
        for _ in range(n):
            template = templates[i % len(templates)]
            rows.append(
                (
                    uuid.uuid4(),
                    tenant,
                    channel_id,
                    campaign_id,
                    f"c{i}",
                    template,
                    now - timedelta(minutes=5),
                    now - timedelta(minutes=5),
                    f"c{i}@example.com",
                    state,
                    reason if state == "failed" else None,
                    now if state == "sent" else None,
                )
            )
            i += 1
    async with conn.cursor().copy(
        "COPY messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id, scheduled_at, "
        "send_at, address, state, reason, sent_at) FROM STDIN"
    ) as copy:
        for row in rows:
            await copy.write_row(row)

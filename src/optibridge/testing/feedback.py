"""Seeding helpers for tests, demos and benchmarks: a tenant, a channel, a campaign already sent.

Rows are written the way ingest and the dispatcher write them (uuid5 message ids, state 'sent',
`sent_at`), so feedback and reporting see exactly what production would give them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import psycopg
from psycopg.types.json import Jsonb

from optibridge.bootstrap import open_runtime
from optibridge.core.config import Settings
from optibridge.core.feedback_settings import FeedbackSettings
from optibridge.core.secretbox import SecretBox
from optibridge.emulator.testing import serving
from optibridge.feedback.keys import TrackingKeys
from optibridge.intake.ingest import message_id
from optibridge.runtime import Runtime
from optibridge.web import receipts, tracking

Conn = psycopg.AsyncConnection[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SeededMessage:
    id: uuid.UUID
    customer_id: str
    template_id: int
    address: str


async def add_tenant(conn: Conn, box: SecretBox, tenant_id: str, api_base_url: str, api_key: str) -> None:
    await conn.execute(
        """INSERT INTO tenants (id, api_base_url, auth_kind, credentials, source)
           VALUES (%s, %s, 'api_key', %s, 'cli')""",
        (tenant_id, api_base_url, box.encrypt_json({"api_key": api_key})),
    )


async def add_channel(
    conn: Conn,
    tenant_id: str,
    name: str,
    kind: str,
    channel_id: int,
    *,
    feedback: dict[str, Any] | None = None,
) -> None:
    options = {"feedback": feedback} if feedback else {}
    await conn.execute(
        """INSERT INTO channels (tenant_id, name, kind, optimove_channel_id, options)
           VALUES (%s, %s, %s, %s, %s)""",
        (tenant_id, name, kind, channel_id, Jsonb(options)),
    )


def address_for(kind: str, n: int) -> str:
    if kind == "sms":
        return f"+1555{n:07d}"
    if kind == "push":
        return f"device-token-{n:08d}"
    return f"c{n}@example.test"


async def seed_campaign(
    conn: Conn,
    *,
    tenant_id: str,
    channel_name: str,
    channel_kind: str,
    channel_id: int,
    campaign_id: int,
    customers: int,
    sent_at: datetime,
    templates: tuple[int, ...] = (1,),
    state: str = "sent",
    campaign_status: str = "ingested",
    first: int = 1,
) -> list[SeededMessage]:
    """A campaign row and one message per customer, templates assigned round-robin."""
    await conn.execute(
        """INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, status, first_event,
                                  ingested_at, messages)
           VALUES (%s, %s, %s, %s, %s, 1, %s, %s)
           ON CONFLICT (tenant_id, channel_id, campaign_id) DO NOTHING""",
        (tenant_id, channel_id, campaign_id, channel_name, campaign_status, sent_at, customers),
    )
    seeded = []
    for n in range(first, first + customers):
        customer = f"C{n}"
        template = templates[(n - first) % len(templates)]
        seeded.append(
            SeededMessage(
                message_id(tenant_id, channel_id, campaign_id, customer, template),
                customer,
                template,
                address_for(channel_kind, n),
            )
        )
    async with conn.cursor().copy(
        """COPY messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id, scheduled_at,
                          send_at, address, state, sent_at, updated_at) FROM STDIN"""
    ) as copy:
        for m in seeded:
            await copy.write_row(
                (
                    m.id,
                    tenant_id,
                    channel_id,
                    campaign_id,
                    m.customer_id,
                    m.template_id,
                    sent_at,
                    sent_at,
                    m.address,
                    state,
                    sent_at if state == "sent" else None,
                    sent_at,
                )
            )
    return seeded


class MutableClock:
    """A wall clock tests move by hand; pass it as `clock=` to the routers, `now=` to the jobs."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class FeedbackStack:
    runtime: Runtime
    keys: TrackingKeys
    base_url: str
    session: aiohttp.ClientSession


@contextlib.asynccontextmanager
async def feedback_stack(
    settings: Settings, clock: MutableClock, feedback: FeedbackSettings | None = None
) -> AsyncIterator[FeedbackStack]:
    """A runtime on `settings`' database and the tracking and receipt routes served on loopback."""
    from fastapi import FastAPI

    async with open_runtime(settings, upgrade=False) as runtime:
        keys = TrackingKeys.from_settings(settings)
        app = FastAPI()
        app.include_router(tracking.router(runtime, settings=feedback, keys=keys, clock=clock))
        app.include_router(receipts.router(runtime, settings=feedback, keys=keys, clock=clock))
        async with serving(app) as base_url, aiohttp.ClientSession() as session:
            yield FeedbackStack(runtime, keys, base_url, session)

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

from optibridge.bootstrap import open_runtime
from optibridge.core.config import Settings
from optibridge.core.feedback_settings import FeedbackSettings
from optibridge.core.secretbox import SecretBox
from optibridge.emulator.testing import serving
from optibridge.feedback.keys import TrackingKeys
from optibridge.intake.ingest import message_id
from optibridge.runtime import Runtime
from optibridge.store import campaigns as campaign_store
from optibridge.store import messages as message_store
from optibridge.store import tenants
from optibridge.web import receipts, tracking

Conn = psycopg.AsyncConnection[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SeededMessage:
    id: uuid.UUID
    customer_id: str
    template_id: int
    address: str


async def add_tenant(conn: Conn, box: SecretBox, tenant_id: str, api_base_url: str, api_key: str) -> None:
    await tenants.seed_api_key_tenant(conn, box, tenant_id, api_base_url, api_key)


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
    await tenants.seed_channel(conn, tenant_id, name, kind, channel_id, options)


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
    await campaign_store.seed_campaign(
        conn,
        tenant_id=tenant_id,
        channel_id=channel_id,
        campaign_id=campaign_id,
        channel_name=channel_name,
        status=campaign_status,
        ingested_at=sent_at,
        messages=customers,
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
    await message_store.seed_messages(
        conn,
        tenant_id,
        channel_id,
        campaign_id,
        [message_store.SeedRow(m.id, m.customer_id, m.template_id, m.address) for m in seeded],
        state=state,
        at=sent_at,
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

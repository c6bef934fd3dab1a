"""Shared by the retention tests: a tenant with an e-mail channel, and days of campaigns written
the way production writes them (ingest's own row builder and COPY, events through the event
store, schedules through reporting's discover)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import psycopg
import psycopg_pool
from cryptography.fernet import Fernet

from optibridge.core.secretbox import SecretBox
from optibridge.intake import ingest
from optibridge.optimove.models import SendDetail
from optibridge.store import campaigns as campaign_store
from optibridge.store import events as event_store
from optibridge.store import messages as message_store
from optibridge.store import report_data
from optibridge.store import reports as report_store
from optibridge.store import tenants as tenant_store

Conn = psycopg.AsyncConnection[dict[str, Any]]
Pool = psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]

TENANT = "acme"
EMAIL = 504
ATTRIBUTES = ("Email", "FirstName", "LastName", "City", "LoyaltyTier", "Basket")
WINDOW = timedelta(days=7)


async def add_tenant(conn: Conn, tenant_id: str = TENANT) -> None:
    box = SecretBox([Fernet.generate_key()])
    await tenant_store.seed_api_key_tenant(conn, box, tenant_id, "https://api.example.test", "k")
    await tenant_store.seed_channel(conn, tenant_id, "email", "email", EMAIL, {})


def plan(campaign_id: int, tenant_id: str = TENANT) -> ingest.IngestPlan:
    return ingest.plan(tenant_id, EMAIL, campaign_id, "email", {}, ATTRIBUTES[1:])


def customer_details(customers: list[str], at: datetime) -> list[SendDetail]:
    """What Optimove would hand over for these customers: an address and five attributes."""
    return [
        SendDetail(
            customer_id=c,
            template_id=1 + (i % 2),
            scheduled_time=at,
            attributes=(
                f"{c.lower()}@mail.example.test",
                f"First{c}",
                f"Last{c}",
                "Springfield",
                "gold" if i % 3 else "silver",
                f"sku-{i % 97}-{i % 13};sku-{i % 89}",
            ),
        )
        for i, c in enumerate(customers)
    ]


async def ingest_campaign(
    conn: Conn, campaign_id: int, details: list[SendDetail], at: datetime, tenant_id: str = TENANT
) -> None:
    """Campaign row and its messages, through ingest's row builder and COPY."""
    await campaign_store.seed_campaign(
        conn,
        tenant_id=tenant_id,
        channel_id=EMAIL,
        campaign_id=campaign_id,
        channel_name="email",
        status="ingested",
        ingested_at=at,
        messages=len(details),
    )
    rows = ingest.build_rows(plan(campaign_id, tenant_id), details)
    async with conn.transaction():
        await message_store.copy_page(conn, rows.copy_text)


async def mark_sent(conn: Conn, campaign_id: int, at: datetime, tenant_id: str = TENANT) -> None:
    """What the dispatcher leaves on a sent row (state, time, provider and its message id)."""
    await conn.execute(
        """UPDATE messages SET state = 'sent', sent_at = %s, updated_at = %s, attempts = 1,
                  provider = 'smtp', provider_message_id = '<' || id::text || '@mta.example.test>'
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
        (at, at, tenant_id, EMAIL, campaign_id),
    )


async def engage(
    conn: Conn, campaign_id: int, at: datetime, rng: random.Random, tenant_id: str = TENANT
) -> int:
    """Opens (30%, some repeated, some machine), clicks (8%), bounces (1%); returns events written."""
    rows = await (
        await conn.execute(
            "SELECT id FROM messages WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s",
            (tenant_id, EMAIL, campaign_id),
        )
    ).fetchall()
    cols = event_store.EventColumns([], [], [], [], [], [], [], [], [])

    def add(
        mid: Any, kind: str, key: str, when: datetime, url: str | None = None, *, suspect: bool = False
    ) -> None:
        cols.message_ids.append(mid)
        cols.kinds.append(kind)
        cols.sources.append("tracking" if kind in ("opened", "clicked") else "send")
        cols.dedupe_keys.append(key)
        cols.suspect.append(suspect)
        cols.occurred_at.append(when)
        cols.urls.append(url)
        cols.reasons.append("550 5.1.1 user unknown" if kind == "bounced" else None)
        cols.tenant_ids.append(tenant_id)

    for r in rows:
        mid, roll = r["id"], rng.random()
        when = at + timedelta(hours=rng.randint(1, 60))
        if roll < 0.30:
            add(mid, "opened", f"open:{mid}", when, suspect=roll < 0.03)
            if roll < 0.08:
                url = f"https://shop.example.test/p/{rng.randint(1, 500)}?utm=mail"
                add(mid, "clicked", f"click:{mid}:{hash(url) & 0xFFFF}", when + timedelta(minutes=3), url)
        elif roll > 0.99:
            add(mid, "bounced", f"send:{mid}:bounced", at)
    await event_store.insert(conn, cols)
    # Interactions Optimove accepted for the opens (what the reporting push records).
    opened = [cols.message_ids[i] for i, k in enumerate(cols.kinds) if k == "opened"]
    await report_data.record_interactions(
        conn, tenant_id, EMAIL, campaign_id, event_id=2, interaction_date=at.date(), message_ids=opened, at=at
    )
    await report_data.record_metrics(
        conn, tenant_id, EMAIL, campaign_id, [(t, m, 0) for t in (1, 2) for m in (0, 1, 2, 3, 4, 5, 6, 9)], at
    )
    return len(cols.kinds)


async def report_cycle(conn: Conn, now: datetime) -> None:
    """The reporting schedule as the tick drives it: finished campaigns get a schedule now, and
    schedules whose final push is due are done (the final push itself is reporting's test)."""
    await report_store.discover(conn, now, now + WINDOW)
    await conn.execute(
        "UPDATE report_schedules SET state = 'done', next_push_at = NULL, pushes = pushes + 1 "
        "WHERE state = 'active' AND final_at <= %s",
        (now,),
    )

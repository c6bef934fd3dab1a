"""`customers forget` and DELETE /api/v1/tenants/{t}/customers/{c}: afterwards no row of any table
(listed from the catalog, so a table added later is checked too; every text, varchar, jsonb and
array column) holds the customer's id, address or attribute values; their suppressions still
stop a send (kept hashed); other customers, and the same customer id in another tenant, keep all
their rows; another tenant's API key removes nothing."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from retentionkit import (
    EMAIL,
    Conn,
    Pool,
    add_tenant,
    customer_details,
    engage,
    ingest_campaign,
    mark_sent,
)

from optibridge.feedback import suppression
from optibridge.intake.ingest import message_id
from optibridge.retention.forget import forget_customer
from optibridge.store import campaigns as campaign_store
from optibridge.store import contacts, events, preferences, report_data
from optibridge.web import admin, auth

from inprocess import running_service

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WHO = "CZ-forget-7731"  # also the id of a different customer of globex
PHONE = "+1 (555) 010-7731"
TOKEN = "device-token-zz-7731-forget"
NICKNAME = "Zebulon-Quixote-7731"  # a contact attribute value
OTHERS = [f"C{n:04d}" for n in range(60)]

# Every column whose text could hold a customer's data: text-like, jsonb/json and arrays of them.
COLUMNS_SQL = """
SELECT c.table_name, c.column_name,
       EXISTS (SELECT 1 FROM information_schema.columns t WHERE t.table_schema = c.table_schema
                 AND t.table_name = c.table_name AND t.column_name = 'tenant_id') AS has_tenant
FROM information_schema.columns c
JOIN information_schema.tables tb
  ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name AND tb.table_type = 'BASE TABLE'
WHERE c.table_schema = 'public'
  AND (c.data_type IN ('text', 'character varying', 'character', 'jsonb', 'json', 'ARRAY', 'USER-DEFINED'))
ORDER BY 1, 2
"""


def needles(details: Any) -> list[str]:
    """What identifies WHO: id, every address (as given and normalized), every attribute value
    that is theirs alone."""
    mine = next(d for d in details if d.customer_id == WHO)
    email = mine.attributes[0]
    return [
        WHO,
        email,
        email.casefold(),
        PHONE,
        suppression.normalize_address(PHONE),
        TOKEN,
        NICKNAME,
        *mine.attributes[1:3],
    ]  # FirstCZ-..., LastCZ-... (City and tier are shared values)


async def leftovers(conn: Conn, values: list[str], *, spare_tenant: str) -> list[tuple[str, str, str]]:
    """(table, column, value) for every row holding one of `values`, except rows of `spare_tenant`."""
    found = []
    for col in await (await conn.execute(COLUMNS_SQL)).fetchall():
        table, column = col["table_name"], col["column_name"]
        spare = " AND tenant_id IS DISTINCT FROM %(spare)s" if col["has_tenant"] else ""
        for value in values:
            row = await (
                await conn.execute(
                    f'SELECT count(*) AS n FROM "{table}" WHERE "{column}"::text LIKE %(like)s{spare}',
                    {
                        "like": "%" + value.replace("%", r"\%").replace("_", r"\_") + "%",
                        "spare": spare_tenant,
                    },
                )
            ).fetchone()
            if row is not None and row["n"]:
                found.append((table, column, value))
    return found


async def seed_customer_everywhere(conn: Conn, tmp_path: Path, tenant: str) -> list[Any]:
    """WHO (and 60 others) in two campaigns of `tenant`: one sent with events and reported
    interactions, one still pending; WHO also has a contact row, suppressions by address and by
    id, a cancellation and an opt-out waiting for Optimove."""
    details = customer_details([WHO, *OTHERS], T0)
    await ingest_campaign(conn, 71, details, T0, tenant_id=tenant)
    await mark_sent(conn, 71, T0 + timedelta(minutes=5), tenant_id=tenant)
    await engage(conn, 71, T0, random.Random(7), tenant_id=tenant)
    # WHO opened and clicked (a URL naming them, as a tracked link may), and was reported.
    mid = message_id(tenant, EMAIL, 71, WHO, 1)
    url = f"https://shop.example.test/welcome?cid={WHO}"
    await events.insert(
        conn,
        events.EventColumns(
            [mid, mid],
            ["opened", "clicked"],
            ["tracking", "tracking"],
            [f"open:{mid}", f"click:{mid}:1"],
            [False, False],
            [T0, T0],
            [None, url],
            [None, None],
            [tenant, tenant],
        ),
    )
    await report_data.record_interactions(
        conn, tenant, EMAIL, 71, event_id=3, interaction_date=T0.date(), message_ids=[mid], at=T0
    )
    await ingest_campaign(conn, 72, details, T0 + timedelta(days=1), tenant_id=tenant)
    csv = tmp_path / f"{tenant}.csv"
    csv.write_text(
        f"customer_id,email,phone,device_token,nickname\n{WHO},{details[0].attributes[0]},"
        f"{PHONE},{TOKEN},{NICKNAME}\nC0001,c0001@mail.example.test,,,Bob\n"
    )
    await contacts.import_csv(conn, tenant, csv)
    await suppression.add(
        conn,
        tenant,
        "email",
        addresses=[details[0].attributes[0].upper()],
        reason="unsubscribed",
        source="feedback",
        note=f"one-click by {WHO}",
    )
    await suppression.add(conn, tenant, "email", customer_ids=[WHO], reason="manual", note="asked by phone")
    await campaign_store.add_cancellations(conn, tenant, 72, [WHO, "C0002"])
    await preferences.queue(
        conn,
        [
            preferences.OptOut(tenant, EMAIL, WHO, 2, "unsubscribed"),
            preferences.OptOut(tenant, EMAIL, "C0003", 2, "unsubscribed"),
        ],
    )
    # The SMS aggregator's report row for one of their messages holds their mobile number (as if
    # the campaign had come by that flow; the row only needs a channel and a batch to hang on).
    await conn.execute(
        "INSERT INTO aggregator_channels (tenant_id, channel_id, base_url, secrets, key_hash) "
        "VALUES (%s, %s, 'https://agg.example.test', '\\x00', '\\x00')",
        (tenant, EMAIL),
    )
    await conn.execute(
        "INSERT INTO aggregator_batches (tenant_id, channel_id, batch_id, request_id, campaign_id, "
        "metadata, recipients, accepted) VALUES (%s, %s, 'b1', 'r1', 71, '{}', 1, 1)",
        (tenant, EMAIL),
    )
    await conn.execute(
        "INSERT INTO aggregator_messages (message_id, tenant_id, channel_id, batch_id, mobile_number) "
        "VALUES (%s, %s, %s, 'b1', %s)",
        (mid, tenant, EMAIL, PHONE),
    )
    return details


async def row_counts(conn: Conn, tenant: str) -> dict[str, int]:
    counts = {}
    for table in (
        "messages",
        "message_events",
        "reported_interactions",
        "contacts",
        "campaign_cancellations",
        "preference_outbox",
        "suppressions",
    ):
        row = await (
            await conn.execute(f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %s", (tenant,))
        ).fetchone()
        counts[table] = int(row["n"]) if row else 0
    return counts


async def test_forget_leaves_no_trace_and_keeps_the_suppression(pool: Pool, tmp_path: Path) -> None:
    async with pool.connection() as conn:
        for tenant in ("acme", "globex"):
            await add_tenant(conn, tenant)
        details = await seed_customer_everywhere(conn, tmp_path, "acme")
        await seed_customer_everywhere(conn, tmp_path, "globex")
        values = needles(details)
        # The check sees them before: in every table that holds customer text.
        seen = {table for table, _, _ in await leftovers(conn, values, spare_tenant="globex")}
        assert seen >= {
            "messages",
            "message_events",
            "contacts",
            "suppressions",
            "campaign_cancellations",
            "preference_outbox",
            "aggregator_messages",
        }, seen
        globex_before = await row_counts(conn, "globex")
        acme_before = await row_counts(conn, "acme")

    removed = await forget_customer(pool, "acme", WHO)

    assert removed["messages"] == 2
    assert removed["contacts"] == 1
    assert removed["campaign_cancellations"] == 1
    assert removed["preference_outbox"] == 1
    assert removed["suppressions (kept hashed)"] == 2
    assert removed["message_events"] >= 2
    assert removed["reported_interactions"] >= 1
    assert removed["aggregator_messages"] == 1
    async with pool.connection() as conn:
        assert await leftovers(conn, values, spare_tenant="globex") == []
        # Still never sent to again, by address (in any case) or by id.
        hit = await suppression.suppressed(
            conn, "acme", "email", addresses=[details[0].attributes[0]], customer_ids=[WHO]
        )
        assert hit == {details[0].attributes[0], WHO}
        # Everyone else's rows, and globex's customer of the same id, are all there.
        after = await row_counts(conn, "acme")
        assert after["messages"] == acme_before["messages"] - 2
        assert after["contacts"] == acme_before["contacts"] - 1
        assert after["suppressions"] == acme_before["suppressions"]  # rewritten, not dropped
        assert await row_counts(conn, "globex") == globex_before
    # Forgetting again finds nothing; it is no error.
    again = await forget_customer(pool, "acme", WHO)
    assert set(again.values()) == {0}


@pytest.fixture
async def served(db_url: str, test_secret_key: str) -> AsyncIterator[tuple[str, dict[str, str], Any]]:
    async with running_service(
        db_url, test_secret_key, worker=False, configure_app=lambda app: admin.install(app, app.state.runtime)
    ) as svc:
        async with svc.runtime.pool.connection() as conn:
            keys = {}
            for tenant in ("acme", "globex"):
                await add_tenant(conn, tenant)
                _, keys[tenant] = await auth.create_key(conn, f"{tenant}-ops", tenant)
            _, keys["admin"] = await auth.create_key(conn, "ops", None)
        yield svc.base_url, keys, svc.runtime.pool


async def test_delete_customer_api_is_tenant_scoped(
    served: tuple[str, dict[str, str], Any], tmp_path: Path
) -> None:
    base, keys, pool = served
    async with pool.connection() as conn:
        await seed_customer_everywhere(conn, tmp_path, "acme")
        before = await row_counts(conn, "acme")
    path = f"/api/v1/tenants/acme/customers/{WHO}"
    async with aiohttp.ClientSession() as session:
        # globex's key: refused, and nothing of acme's is touched.
        async with session.delete(base + path, headers={"Authorization": f"Bearer {keys['globex']}"}) as resp:
            assert resp.status in (403, 404), resp.status
        async with session.delete(base + path) as resp:
            assert resp.status == 401
        async with pool.connection() as conn:
            assert await row_counts(conn, "acme") == before
        # acme's own key: removed, with the counts per table.
        async with session.delete(base + path, headers={"Authorization": f"Bearer {keys['acme']}"}) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["removed"]["messages"] == 2
        assert body["removed"]["contacts"] == 1
        # An unknown tenant: 404 for the admin key.
        async with session.delete(
            base + "/api/v1/tenants/nosuch/customers/x", headers={"Authorization": f"Bearer {keys['admin']}"}
        ) as resp:
            assert resp.status == 404

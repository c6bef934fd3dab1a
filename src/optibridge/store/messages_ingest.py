"""Message rows as intake writes them: a page of ingest COPYed in, and pending messages canceled.

A page arrives as COPY text with the columns of `COPY_COLUMNS`, in that order (built by
`optibridge.intake.ingest.build_rows`). Each function runs in the caller's transaction; the
ingest's one-transaction-per-page and its savepoint around the fast path are the caller's
(`optibridge.intake.ingest.write_page`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]

# `reason` is null but for a row failed at ingest (which never takes the fast path: `state` is not
# a COPY column, so a row COPYed straight into `messages` is pending).
COPY_COLUMNS = (
    "tenant_id, channel_id, campaign_id, id, customer_id, template_id, scheduled_at, send_at, "
    "address, attrs, reason"
)
STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    tenant_id text, channel_id integer, campaign_id bigint, id uuid, customer_id text, template_id integer,
    scheduled_at timestamptz, send_at timestamptz, address text, attrs jsonb, reason text
) ON COMMIT DELETE ROWS
"""
# The contacts column that holds a channel kind's address (None: the kind has no stored contact).
CONTACT_COLUMN = {"email": "email", "sms": "phone", "push": "device_token", "webhook": None}


async def _copy(conn: Conn, table: str, text: str) -> None:
    async with conn.cursor().copy(f"COPY {table} ({COPY_COLUMNS}) FROM STDIN") as copy:
        await copy.write(text.encode())


async def copy_page(conn: Conn, copy_text: str) -> None:
    """COPY a page straight into `messages` (every row addressed, none canceled).

    Raises psycopg.errors.UniqueViolation if a row exists already: run it in a savepoint and take
    `insert_page` instead.
    """
    await _copy(conn, "messages", copy_text)


async def insert_page(
    conn: Conn,
    tenant_id: str,
    campaign_id: int,
    copy_text: str,
    *,
    contact_column: str | None,
    partly_canceled: bool,
) -> tuple[int, int]:
    """The general path: a staging table and INSERT ... ON CONFLICT DO NOTHING, with addresses
    looked up in contacts and cancellations applied; returns (inserted, inserted without address)."""
    assert contact_column is None or contact_column in CONTACT_COLUMN.values(), contact_column
    # Contacts are looked up per row only where Optimove gave no address: a join would scan the
    # whole contacts table for every page (measured: half the ingest rate at 500k contacts).
    address_sql = (
        "CASE WHEN s.address IS NOT NULL THEN s.address ELSE (SELECT NULLIF(ct." + contact_column + ", '') "
        "FROM contacts ct WHERE ct.tenant_id = %(t)s AND ct.customer_id = s.customer_id) END"
        if contact_column
        else "s.address"
    )
    canceled_sql = (
        "EXISTS (SELECT 1 FROM campaign_cancellations cc WHERE cc.tenant_id = %(t)s "
        "AND cc.campaign_id = %(c)s AND cc.customer_id = s.customer_id)"
        if partly_canceled
        else "false"
    )
    await conn.execute(STAGING_DDL)
    await conn.execute("TRUNCATE ingest_staging")
    await _copy(conn, "ingest_staging", copy_text)
    counts = await (
        await conn.execute(
            f"""WITH src AS (
                  SELECT s.*, {address_sql} AS addr, {canceled_sql} AS canceled FROM ingest_staging s
                ), ins AS (
                  INSERT INTO messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id,
                                        scheduled_at, send_at, address, attrs, state, reason)
                  SELECT id, tenant_id, channel_id, campaign_id, customer_id, template_id, scheduled_at,
                         send_at, addr, attrs,
                         CASE WHEN canceled THEN 'canceled'
                              WHEN reason IS NOT NULL OR addr IS NULL THEN 'failed'
                              ELSE 'pending' END::message_state,
                         CASE WHEN canceled THEN 'canceled by Optimove'
                              WHEN reason IS NOT NULL THEN reason
                              WHEN addr IS NULL THEN 'no address' END
                  FROM src
                  ON CONFLICT (id) DO NOTHING
                  RETURNING state, reason)
                SELECT count(*) AS inserted,
                       count(*) FILTER (WHERE state = 'failed' AND reason = 'no address') AS no_address
                FROM ins""",
            {"t": tenant_id, "c": campaign_id},
        )
    ).fetchone()
    assert counts is not None
    return int(counts["inserted"]), int(counts["no_address"])


async def cancel_listed(conn: Conn, tenant_id: str, campaign_id: int) -> int:
    """Cancel the pending messages of the customers in `campaign_cancellations`; returns how many."""
    # The cancellations were just copied in, so the planner's statistics say the table is empty
    # and it joins with a nested loop that filters instead of looking up: 20,000 canceled
    # customers against 20,000 messages took 38 s of CPU (4e8 comparisons); after ANALYZE of the
    # small table, 0.4 s. ANALYZE samples at most 30,000 rows, so its cost is bounded.
    await conn.execute("ANALYZE campaign_cancellations")
    cur = await conn.execute(
        """UPDATE messages m
           SET state = 'canceled', reason = 'canceled by Optimove', updated_at = now()
           FROM campaign_cancellations cc
           WHERE m.tenant_id = %s AND m.campaign_id = %s AND m.state = 'pending'
             AND cc.tenant_id = m.tenant_id AND cc.campaign_id = m.campaign_id
             AND cc.customer_id = m.customer_id""",
        (tenant_id, campaign_id),
    )
    return cur.rowcount


async def cancel_all_pending(conn: Conn, tenant_id: str, campaign_id: int) -> int:
    """Cancel every pending message of the campaign (all channels); returns how many."""
    cur = await conn.execute(
        """UPDATE messages SET state = 'canceled', reason = 'campaign canceled', updated_at = now()
           WHERE tenant_id = %s AND campaign_id = %s AND state = 'pending'""",
        (tenant_id, campaign_id),
    )
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class SeedRow:
    """A message as ingest and the dispatcher leave it (for `optibridge.testing.feedback`)."""

    id: uuid.UUID
    customer_id: str
    template_id: int
    address: str


async def seed(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    rows: Sequence[SeedRow],
    *,
    state: str,
    at: datetime,
) -> None:
    """COPY messages scheduled, sent (if `state` is 'sent') and last changed at `at`."""
    async with conn.cursor().copy(
        """COPY messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id, scheduled_at,
                          send_at, address, state, sent_at, updated_at) FROM STDIN"""
    ) as copy:
        for m in rows:
            await copy.write_row(
                (
                    m.id,
                    tenant_id,
                    channel_id,
                    campaign_id,
                    m.customer_id,
                    m.template_id,
                    at,
                    at,
                    m.address,
                    state,
                    at if state == "sent" else None,
                    at,
                )
            )

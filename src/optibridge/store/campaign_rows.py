"""The campaigns table as intake writes it: a row per (tenant, channel, campaign) created by a
notification, moved along by the ingest job (resume point, counts, final status) and by the cancel
job; plus the campaign-level side tables intake keeps (`campaign_holds`, `campaign_cancellations`).

Every function runs in whatever transaction the caller has open on `conn`: the flows decide the
transaction boundaries (see `optibridge.intake.accept`, `.ingest`, `.tasks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]


# --- notifications (optibridge.intake.accept) ------------------------------------------------


async def add_processed(
    conn: Conn, tenant_id: str, channel_id: int, campaign_id: int, channel_name: str, first_event: int
) -> bool:
    """Insert the campaign row of a processed/executed notification; False if it was known already."""
    row = await (
        await conn.execute(
            """INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, first_event)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (tenant_id, channel_id, campaign_id) DO NOTHING
               RETURNING campaign_id""",
            (tenant_id, channel_id, campaign_id, channel_name, first_event),
        )
    ).fetchone()
    return row is not None


async def restart_ingest(conn: Conn, tenant_id: str, channel_id: int, campaign_id: int) -> bool:
    """Set a known campaign ingesting again if nothing started it yet ('awaiting': known only from a
    cancel or hold) or its ingest failed; False if it is in any other state."""
    restarted = await (
        await conn.execute(
            """UPDATE campaigns SET status = 'ingesting', error = NULL, updated_at = now()
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s
                 AND status IN ('awaiting', 'failed')
               RETURNING campaign_id""",
            (tenant_id, channel_id, campaign_id),
        )
    ).fetchone()
    return restarted is not None


async def flag_cancel_pending(
    conn: Conn, tenant_id: str, channel_id: int, campaign_id: int, channel_name: str
) -> None:
    """A cancel notification: the campaign (created 'awaiting' if unknown) holds back sending until
    the cancel job has run; one already canceled stays as it is."""
    await conn.execute(
        """INSERT INTO campaigns
               (tenant_id, channel_id, campaign_id, channel_name, first_event, status, cancel_pending)
           VALUES (%s, %s, %s, %s, 4, 'awaiting', true)
           ON CONFLICT (tenant_id, channel_id, campaign_id)
           DO UPDATE SET cancel_pending = campaigns.status <> 'canceled', updated_at = now()""",
        (tenant_id, channel_id, campaign_id, channel_name),
    )


async def hold(conn: Conn, tenant_id: str, campaign_id: int, until: datetime) -> None:
    """Nothing of the campaign is sent before `until` (a later hold never shortens an earlier one)."""
    await conn.execute(
        """INSERT INTO campaign_holds (tenant_id, campaign_id, hold_until) VALUES (%s, %s, %s)
           ON CONFLICT (tenant_id, campaign_id)
           DO UPDATE SET hold_until = GREATEST(campaign_holds.hold_until, EXCLUDED.hold_until)""",
        (tenant_id, campaign_id, until),
    )


# --- the ingest job (optibridge.intake.tasks, optibridge.intake.ingest) -----------------------


@dataclass(frozen=True)
class IngestStart:
    """Where a (resumed) ingest starts: the campaign's state and its channel."""

    status: str
    attributes: list[str] | None
    ingest_skip: int
    channel_kind: str
    channel_options: dict[str, Any]
    channel_name: str


async def ingest_start(conn: Conn, tenant_id: str, channel_id: int, campaign_id: int) -> IngestStart | None:
    """None if the campaign or its channel no longer exists."""
    row = await (
        await conn.execute(
            """SELECT c.status, c.attributes, c.ingest_skip, ch.kind, ch.options, ch.name
               FROM campaigns c JOIN channels ch
                 ON ch.tenant_id = c.tenant_id AND ch.optimove_channel_id = c.channel_id
               WHERE c.tenant_id = %s AND c.channel_id = %s AND c.campaign_id = %s""",
            (tenant_id, channel_id, campaign_id),
        )
    ).fetchone()
    if row is None:
        return None
    return IngestStart(
        status=str(row["status"]),
        attributes=row["attributes"],
        ingest_skip=int(row["ingest_skip"]),
        channel_kind=row["kind"],
        channel_options=row["options"],
        channel_name=row["name"],
    )


async def fix_attributes(
    conn: Conn, tenant_id: str, channel_id: int, campaign_id: int, attributes: list[str]
) -> None:
    """Store the attributes asked for at the first page, so a resumed ingest asks for the same."""
    await conn.execute(
        "UPDATE campaigns SET attributes = %s WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s",
        (attributes, tenant_id, channel_id, campaign_id),
    )


@dataclass(frozen=True)
class PagePosition:
    status: str
    ingest_skip: int


async def lock_for_page(conn: Conn, tenant_id: str, channel_id: int, campaign_id: int) -> PagePosition | None:
    """Lock the campaign row (FOR UPDATE) for one page's transaction; None if it is gone."""
    state = await (
        await conn.execute(
            """SELECT status, ingest_skip FROM campaigns
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s FOR UPDATE""",
            (tenant_id, channel_id, campaign_id),
        )
    ).fetchone()
    if state is None:
        return None
    return PagePosition(str(state["status"]), int(state["ingest_skip"]))


async def has_cancellations(conn: Conn, tenant_id: str, campaign_id: int) -> bool:
    """Whether Optimove canceled some customers of the campaign.

    Call it in a statement of its own, after `lock_for_page`: a cancel job that held the lock has
    committed by now, and only a new statement's snapshot sees its rows (a subquery in the locking
    statement would still see the world from before the wait).
    """
    partly = await (
        await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM campaign_cancellations WHERE tenant_id = %s "
            "AND campaign_id = %s) AS yes",
            (tenant_id, campaign_id),
        )
    ).fetchone()
    return bool(partly and partly["yes"])


async def advance_ingest(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    *,
    skip_to: int,
    customers: int,
    inserted: int,
    no_address: int,
) -> None:
    """Move the resume point past a page and add its counts."""
    await conn.execute(
        """UPDATE campaigns SET ingest_skip = %s, ingest_pages = ingest_pages + 1,
                  customers = customers + %s, messages = messages + %s,
                  no_address = no_address + %s, updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
        (skip_to, customers, inserted, no_address, tenant_id, channel_id, campaign_id),
    )


async def mark_ingested(conn: Conn, tenant_id: str, channel_id: int, campaign_id: int) -> None:
    await conn.execute(
        """UPDATE campaigns SET status = 'ingested', ingested_at = now(), updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s AND status = 'ingesting'""",
        (tenant_id, channel_id, campaign_id),
    )


async def mark_ingest_failed(
    conn: Conn, tenant_id: str, channel_id: int, campaign_id: int, error: str
) -> None:
    await conn.execute(
        """UPDATE campaigns SET status = 'failed', error = %s, updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s AND status = 'ingesting'""",
        (error[:1000], tenant_id, channel_id, campaign_id),
    )


# --- the cancel job (optibridge.intake.tasks.run_cancel) --------------------------------------


async def lock_campaign(conn: Conn, tenant_id: str, campaign_id: int) -> None:
    """Lock every channel's row of the campaign (FOR UPDATE) until the transaction ends."""
    await conn.execute(
        "SELECT 1 FROM campaigns WHERE tenant_id = %s AND campaign_id = %s FOR UPDATE",
        (tenant_id, campaign_id),
    )


async def add_cancellations(
    conn: Conn, tenant_id: str, campaign_id: int, customer_ids: Iterable[str]
) -> None:
    """Record the customers Optimove canceled (each once)."""
    async with conn.cursor().copy(
        "COPY campaign_cancellations (tenant_id, campaign_id, customer_id) FROM STDIN"
    ) as copy:
        for customer in customer_ids:
            await copy.write_row((tenant_id, campaign_id, customer))


async def mark_canceled(conn: Conn, tenant_id: str, campaign_id: int) -> None:
    """The whole campaign is canceled, on every channel that has a cancel pending."""
    await conn.execute(
        """UPDATE campaigns SET status = 'canceled', canceled_at = now(), updated_at = now()
           WHERE tenant_id = %s AND campaign_id = %s AND cancel_pending""",
        (tenant_id, campaign_id),
    )


async def clear_cancel_pending(conn: Conn, tenant_id: str, campaign_id: int) -> None:
    await conn.execute(
        "UPDATE campaigns SET cancel_pending = false, updated_at = now() "
        "WHERE tenant_id = %s AND campaign_id = %s",
        (tenant_id, campaign_id),
    )


# --- seeding (optibridge.testing.feedback) ---------------------------------------------------


async def seed(
    conn: Conn,
    *,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    channel_name: str,
    status: str,
    ingested_at: datetime,
    messages: int,
) -> None:
    """A campaign row as if notified (event 1) and ingested; an existing row is left alone."""
    await conn.execute(
        """INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, status, first_event,
                                  ingested_at, messages)
           VALUES (%s, %s, %s, %s, %s, 1, %s, %s)
           ON CONFLICT (tenant_id, channel_id, campaign_id) DO NOTHING""",
        (tenant_id, channel_id, campaign_id, channel_name, status, ingested_at, messages),
    )


# --- the demo's progress bars (optibridge.demo.run) ------------------------------------------


@dataclass(frozen=True)
class CampaignProgress:
    campaign_id: int
    status: str
    customers: int
    open: int  # messages pending or claimed
    sent: int


async def tenant_progress(conn: Conn, tenant_id: str) -> list[CampaignProgress]:
    """Every campaign of the tenant (all channels together) with its open and sent message counts."""
    rows = await (
        await conn.execute(
            """SELECT c.campaign_id, c.status, c.customers,
                      count(*) FILTER (WHERE m.state IN ('pending', 'claimed')) AS open,
                      count(*) FILTER (WHERE m.state = 'sent') AS sent
               FROM campaigns c LEFT JOIN messages m USING (tenant_id, channel_id, campaign_id)
               WHERE c.tenant_id = %s GROUP BY 1, 2, 3""",
            (tenant_id,),
        )
    ).fetchall()
    return [
        CampaignProgress(
            int(r["campaign_id"]), str(r["status"]), int(r["customers"]), int(r["open"]), int(r["sent"])
        )
        for r in rows
    ]


async def add_ingest_notes(
    conn: Conn, tenant_id: str, channel_id: int, campaign_id: int, notes: Sequence[str]
) -> None:
    """Append what looked wrong while paging (optibridge.intake.page_check), bounded to 20 notes."""
    await conn.execute(
        """UPDATE campaigns SET ingest_notes = (ingest_notes || %s::text[])[1:20], updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
        (list(notes), tenant_id, channel_id, campaign_id),
    )

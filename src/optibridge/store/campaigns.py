"""SQL of the campaigns table and its side tables.

As operators see it: the queries behind progress and the operator actions (pause, resume, cancel);
the arithmetic lives in `optibridge.campaigns`. As intake writes it: a row per (tenant, channel,
campaign) created by a notification, moved along by the ingest job (resume point, counts, final
status) and by the cancel job; plus the campaign-level side tables intake keeps (`campaign_holds`,
`campaign_cancellations`). Every function runs in the caller's transaction: the flows decide the
boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]
CampaignKey = tuple[str, int, int]  # tenant, Optimove channel id, campaign id
CampaignCursor = tuple[datetime, str, int, int]  # created_at, tenant, channel id, campaign id


@dataclass(frozen=True)
class CampaignRow:
    tenant_id: str
    channel: str
    channel_id: int
    campaign_id: int
    status: str
    paused: bool
    cancel_pending: bool
    ingest_pages: int
    customers: int
    messages: int
    no_address: int
    error: str | None
    created_at: datetime
    ingested_at: datetime | None
    canceled_at: datetime | None
    updated_at: datetime
    ingest_notes: tuple[str, ...] = ()

    @property
    def key(self) -> CampaignKey:
        return (self.tenant_id, self.channel_id, self.campaign_id)


@dataclass(frozen=True)
class StateCounts:
    """Messages by state, and how many were sent within the rate window."""

    counts: dict[str, int]
    sent_in_window: int


@dataclass(frozen=True)
class CampaignFilter:
    tenant_id: str | None = None
    channel: str | None = None
    status: str | None = None
    paused: bool | None = None
    campaign_id: int | None = None


_COLUMNS = (
    "tenant_id, channel_name, channel_id, campaign_id, status, paused, cancel_pending, ingest_pages, "
    "customers, messages, no_address, error, created_at, ingested_at, canceled_at, updated_at, ingest_notes"
)


def _row(row: dict[str, Any]) -> CampaignRow:
    return CampaignRow(
        tenant_id=row["tenant_id"],
        channel=row["channel_name"],
        channel_id=int(row["channel_id"]),
        campaign_id=int(row["campaign_id"]),
        status=row["status"],
        paused=row["paused"],
        cancel_pending=row["cancel_pending"],
        ingest_pages=int(row["ingest_pages"]),
        customers=int(row["customers"]),
        messages=int(row["messages"]),
        no_address=int(row["no_address"]),
        error=row["error"],
        created_at=row["created_at"],
        ingested_at=row["ingested_at"],
        canceled_at=row["canceled_at"],
        updated_at=row["updated_at"],
        ingest_notes=tuple(row["ingest_notes"] or ()),
    )


def _key_arrays(keys: list[CampaignKey]) -> tuple[list[str], list[int], list[int]]:
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]


async def list_campaigns(
    conn: Conn, flt: CampaignFilter, *, after: CampaignCursor | None, limit: int
) -> list[CampaignRow]:
    """Newest first; `after` is the sort key of the last campaign of the previous page."""
    params: dict[str, Any] = {
        "t": flt.tenant_id,
        "ch": flt.channel,
        "st": flt.status,
        "p": flt.paused,
        "cid": flt.campaign_id,
        "a0": after[0] if after else None,
        "a1": after[1] if after else None,
        "a2": after[2] if after else None,
        "a3": after[3] if after else None,
        "n": limit,
    }
    rows = await (
        await conn.execute(
            f"""SELECT {_COLUMNS} FROM campaigns
                WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s)
                  AND (%(ch)s::text IS NULL OR channel_name = %(ch)s)
                  AND (%(st)s::text IS NULL OR status = %(st)s)
                  AND (%(p)s::boolean IS NULL OR paused = %(p)s)
                  AND (%(cid)s::bigint IS NULL OR campaign_id = %(cid)s)
                  AND (%(a0)s::timestamptz IS NULL
                       OR (created_at, tenant_id, channel_id, campaign_id)
                          < (%(a0)s::timestamptz, %(a1)s::text, %(a2)s::int, %(a3)s::bigint))
                ORDER BY created_at DESC, tenant_id DESC, channel_id DESC, campaign_id DESC
                LIMIT %(n)s""",
            params,
        )
    ).fetchall()
    return [_row(r) for r in rows]


async def get_campaign(
    conn: Conn, tenant_id: str, channel: str, campaign_id: int, *, lock: bool = False
) -> CampaignRow | None:
    """One campaign by channel name; `lock` takes the row lock (inside a transaction)."""
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM campaigns "
            "WHERE tenant_id = %s AND channel_name = %s AND campaign_id = %s"
            + (" FOR UPDATE" if lock else ""),
            (tenant_id, channel, campaign_id),
        )
    ).fetchone()
    return None if row is None else _row(row)


async def state_counts(
    conn: Conn, keys: list[CampaignKey], window_s: float
) -> dict[CampaignKey, StateCounts]:
    """Messages of each campaign by state (every key present, possibly empty)."""
    if not keys:
        return {}
    rows = await (
        await conn.execute(
            """SELECT m.tenant_id, m.channel_id, m.campaign_id, m.state::text AS state, count(*) AS n,
                      count(*) FILTER (WHERE m.state = 'sent'
                                       AND m.sent_at > now() - make_interval(secs => %s)) AS recent
               FROM messages m
               JOIN unnest(%s::text[], %s::int[], %s::bigint[]) AS k(tenant_id, channel_id, campaign_id)
                 ON m.tenant_id = k.tenant_id AND m.channel_id = k.channel_id
                AND m.campaign_id = k.campaign_id
               GROUP BY 1, 2, 3, 4""",
            (window_s, *_key_arrays(keys)),
        )
    ).fetchall()
    counts: dict[CampaignKey, dict[str, int]] = {k: {} for k in keys}
    recent: dict[CampaignKey, int] = dict.fromkeys(keys, 0)
    for r in rows:
        key = (r["tenant_id"], int(r["channel_id"]), int(r["campaign_id"]))
        counts[key][r["state"]] = int(r["n"])
        recent[key] += int(r["recent"])
    return {k: StateCounts(counts[k], recent[k]) for k in keys}


async def template_state_counts(conn: Conn, key: CampaignKey, window_s: float) -> dict[int, StateCounts]:
    """One campaign's messages by template and state, templates in ascending order."""
    rows = await (
        await conn.execute(
            """SELECT template_id, state::text AS state, count(*) AS n,
                      count(*) FILTER (WHERE state = 'sent'
                                       AND sent_at > now() - make_interval(secs => %s)) AS recent
               FROM messages WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s
               GROUP BY 1, 2 ORDER BY 1""",
            (window_s, *key),
        )
    ).fetchall()
    per_template: dict[int, dict[str, int]] = {}
    recent: dict[int, int] = {}
    for r in rows:
        tid = int(r["template_id"])
        per_template.setdefault(tid, {})[r["state"]] = int(r["n"])
        recent[tid] = recent.get(tid, 0) + int(r["recent"])
    return {tid: StateCounts(c, recent.get(tid, 0)) for tid, c in per_template.items()}


async def failures(conn: Conn, key: CampaignKey, limit: int = 20) -> list[tuple[str, int]]:
    """One campaign's failed messages by reason, most frequent first."""
    rows = await (
        await conn.execute(
            """SELECT coalesce(reason, '(no reason recorded)') AS reason, count(*) AS n FROM messages
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s AND state = 'failed'
               GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s""",
            (*key, limit),
        )
    ).fetchall()
    return [(r["reason"], int(r["n"])) for r in rows]


async def top_failures(
    conn: Conn, keys: list[CampaignKey], top: int
) -> dict[CampaignKey, list[tuple[str, int]]]:
    """The `top` most frequent failure reasons of each campaign (every key present)."""
    out: dict[CampaignKey, list[tuple[str, int]]] = {k: [] for k in keys}
    if not keys:
        return out
    rows = await (
        await conn.execute(
            """SELECT tenant_id, channel_id, campaign_id, reason, n FROM (
                 SELECT g.*, row_number() OVER (PARTITION BY tenant_id, channel_id, campaign_id
                                                ORDER BY n DESC, reason) AS rank
                 FROM (SELECT m.tenant_id, m.channel_id, m.campaign_id,
                              coalesce(m.reason, '(no reason recorded)') AS reason, count(*) AS n
                       FROM messages m
                       JOIN unnest(%s::text[], %s::int[], %s::bigint[])
                            AS k(tenant_id, channel_id, campaign_id)
                         ON m.tenant_id = k.tenant_id AND m.channel_id = k.channel_id
                        AND m.campaign_id = k.campaign_id
                       WHERE m.state = 'failed'
                       GROUP BY 1, 2, 3, 4) g) r
               WHERE rank <= %s ORDER BY 1, 2, 3, n DESC""",
            (*_key_arrays(keys), top),
        )
    ).fetchall()
    for r in rows:
        out[(r["tenant_id"], int(r["channel_id"]), int(r["campaign_id"]))].append((r["reason"], int(r["n"])))
    return out


async def cancel_pending_messages(conn: Conn, key: CampaignKey, reason: str) -> int:
    """Cancel every pending message of the campaign; returns how many."""
    cur = await conn.execute(
        """UPDATE messages SET state = 'canceled', reason = %s, updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s AND state = 'pending'""",
        (reason, *key),
    )
    return cur.rowcount


async def mark_canceled(conn: Conn, key: CampaignKey) -> None:
    await conn.execute(
        """UPDATE campaigns SET status = 'canceled', canceled_at = now(), cancel_pending = false,
                  updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
        key,
    )


async def set_paused(conn: Conn, key: CampaignKey, paused: bool) -> None:
    await conn.execute(
        "UPDATE campaigns SET paused = %s, updated_at = now() "
        "WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s",
        (paused, *key),
    )


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


async def mark_pending_cancels_done(conn: Conn, tenant_id: str, campaign_id: int) -> None:
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


async def seed_campaign(
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

"""SQL of the send path: claiming due messages, writing what became of them, the campaigns that hold
them back, reconciling the claims of dead workers, and the reads a send job needs (its channel, its
templates).

Every function runs on the caller's connection and inside the caller's transaction, if any: the
transaction boundaries are the delivery flow's (`optibridge.delivery`), and they are what makes a
send happen exactly once. `claim_due` locks rows (`FOR UPDATE SKIP LOCKED`): concurrent workers
share the work and never block on each other. `stale_claims` locks nothing (the delivery lookup it
prepares may take seconds); `settle_stale_claims` writes only rows still claimed as they were seen.

And as intake writes them: a page of ingest COPYed in (columns of `COPY_COLUMNS`, built by
`optibridge.intake.ingest.build_rows`; the one-transaction-per-page and the savepoint around the
fast path are the caller's), and pending messages canceled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import tuple_row

from optibridge.core.states import MessageState

Conn = psycopg.AsyncConnection[dict[str, Any]]
Hold = Literal["paused", "canceled"]


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """A message this worker has claimed: everything needed to decide on it, render and send it."""

    id: uuid.UUID
    campaign_id: int
    customer_id: str
    template_id: int
    send_at: datetime
    address: str | None
    attrs: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1  # counts the attempt this claim is for


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """What becomes of one claimed message: its new state and what goes with it."""

    message_id: uuid.UUID
    state: MessageState
    reason: str | None = None
    send_at: datetime | None = None  # a retry's new time; None keeps the message's time
    attempts_delta: int = 0  # -1 gives back the attempt taken at claim time
    provider: str | None = None
    provider_message_id: str | None = None


@dataclass(frozen=True, slots=True)
class StaleClaim:
    id: uuid.UUID
    claimed_by: str | None
    send_at: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class SendChannel:
    name: str
    kind: str
    options: dict[str, Any]
    version: int = 0


@dataclass(frozen=True, slots=True)
class DueChannel:
    tenant_id: str
    channel_id: int
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SendTemplate:
    template_id: int
    version: int
    name: str
    subject: str | None
    body: str
    text_body: str | None
    app_id: str | None
    defaults: dict[str, str]


def _attrs(value: object) -> dict[str, Any]:
    if isinstance(value, dict):
        return value  # psycopg's jsonb loader made it for this row: nobody else holds it
    return dict(json.loads(value)) if isinstance(value, str | bytes) and value else {}


# -- claiming ---------------------------------------------------------------------------------

CLAIM_SQL = """
WITH due AS (
    SELECT m.id FROM messages m
    JOIN campaigns c ON c.tenant_id = m.tenant_id AND c.channel_id = m.channel_id
                    AND c.campaign_id = m.campaign_id
    WHERE m.tenant_id = %(t)s AND m.channel_id = %(ch)s AND m.state = 'pending' AND m.send_at <= %(now)s
      AND NOT c.paused AND NOT c.cancel_pending AND c.status <> 'canceled'
      AND NOT EXISTS (SELECT 1 FROM campaign_holds h WHERE h.tenant_id = m.tenant_id
                      AND h.campaign_id = m.campaign_id AND h.hold_until > %(now)s)
    ORDER BY m.send_at
    LIMIT %(n)s
    FOR UPDATE OF m SKIP LOCKED
)
UPDATE messages m SET state = 'claimed', claimed_by = %(me)s, claimed_until = %(until)s,
                      attempts = attempts + 1, updated_at = %(now)s
FROM due WHERE m.id = due.id
RETURNING m.id, m.campaign_id, m.customer_id, m.template_id, m.send_at, m.address, m.attrs, m.attempts
"""


async def claim_due(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    worker: str,
    now: datetime,
    *,
    limit: int,
    until: datetime,
) -> list[ClaimedMessage]:
    """Claim up to `limit` due messages of a channel whose campaign may send, oldest first, leased
    to `until`. The caller keeps `until` unique per worker: it names the claim (`unclaim_lost`)."""
    params = {"t": tenant_id, "ch": channel_id, "now": now, "n": limit, "me": worker, "until": until}
    # Tuples, not the pool's dicts: a slice is hundreds of rows, claimed on every slice of a
    # campaign, and the dict per row was a visible share of a worker's CPU (bench/send.py profile).
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(CLAIM_SQL, params)
        rows = await cur.fetchall()
    return [
        ClaimedMessage(id_, campaign, customer, template, send_at, address, _attrs(attrs), attempts)
        for id_, campaign, customer, template, send_at, address, attrs, attempts in rows
    ]


RELEASE_SQL = """
UPDATE messages m SET state = u.state::message_state, reason = u.reason,
       send_at = COALESCE(u.send_at, m.send_at), attempts = m.attempts + u.delta,
       provider = COALESCE(u.provider, m.provider),
       provider_message_id = COALESCE(u.pmid, m.provider_message_id),
       sent_at = CASE WHEN u.state = 'sent' THEN %(now)s ELSE m.sent_at END,
       claimed_by = NULL, claimed_until = NULL, updated_at = %(now)s
FROM unnest(%(ids)s::uuid[], %(states)s::text[], %(reasons)s::text[], %(send_at)s::timestamptz[],
            %(deltas)s::int[], %(providers)s::text[], %(pmids)s::text[])
     AS u(id, state, reason, send_at, delta, provider, pmid)
WHERE m.id = u.id AND m.state = 'claimed' AND m.claimed_by = %(me)s
"""


def _outcome_columns(outcomes: Sequence[ClaimOutcome]) -> dict[str, list[Any]]:
    """The outcomes as the arrays RELEASE_SQL and LATE_SQL unnest, one per column (pure)."""
    return {
        "ids": [o.message_id for o in outcomes],
        "states": [str(o.state) for o in outcomes],
        "reasons": [o.reason for o in outcomes],
        "send_at": [o.send_at for o in outcomes],
        "deltas": [o.attempts_delta for o in outcomes],
        "providers": [o.provider for o in outcomes],
        "pmids": [o.provider_message_id for o in outcomes],
    }


# RELEASE_SQL for outcomes all `sent` with no reason, no new time, no attempt given back and one
# provider (release_claims): the same row, written from two arrays.
RELEASE_SENT_SQL = """
UPDATE messages m SET state = 'sent', reason = NULL,
       provider = COALESCE(%(provider)s, m.provider),
       provider_message_id = COALESCE(u.pmid, m.provider_message_id),
       sent_at = %(now)s, claimed_by = NULL, claimed_until = NULL, updated_at = %(now)s
FROM unnest(%(ids)s::uuid[], %(pmids)s::text[]) AS u(id, pmid)
WHERE m.id = u.id AND m.state = 'claimed' AND m.claimed_by = %(me)s
"""


async def release_claims(conn: Conn, outcomes: Sequence[ClaimOutcome], worker: str, now: datetime) -> int:
    """Write the outcome of messages this worker still holds claimed; one statement for all.

    A message no longer claimed by `worker` (reconciled meanwhile) is left alone. Returns how many
    were written.
    """
    if not outcomes:
        return 0
    provider = outcomes[0].provider
    if all(
        o.state is MessageState.SENT
        and o.reason is None
        and o.send_at is None
        and o.attempts_delta == 0
        and o.provider == provider
        for o in outcomes
    ):
        # The common write, a chunk sent without a hitch: two arrays instead of seven (each array
        # element is dumped one by one in Python, and unnested by the server).
        cur = await conn.execute(
            RELEASE_SENT_SQL,
            {
                "ids": [o.message_id for o in outcomes],
                "pmids": [o.provider_message_id for o in outcomes],
                "provider": provider,
                "me": worker,
                "now": now,
            },
        )
        return cur.rowcount
    cur = await conn.execute(RELEASE_SQL, {**_outcome_columns(outcomes), "me": worker, "now": now})
    return cur.rowcount


LATE_SQL = """
UPDATE messages m SET state = u.state::message_state, reason = u.reason,
       send_at = COALESCE(u.send_at, m.send_at), attempts = GREATEST(0, m.attempts + u.delta),
       provider = COALESCE(u.provider, m.provider),
       provider_message_id = COALESCE(u.pmid, m.provider_message_id),
       sent_at = CASE WHEN u.state = 'sent' THEN %(now)s ELSE m.sent_at END,
       claimed_by = NULL, claimed_until = NULL, updated_at = %(now)s
FROM unnest(%(ids)s::uuid[], %(states)s::text[], %(reasons)s::text[], %(send_at)s::timestamptz[],
            %(deltas)s::int[], %(providers)s::text[], %(pmids)s::text[])
     AS u(id, state, reason, send_at, delta, provider, pmid)
WHERE m.id = u.id AND (
    (m.state = 'claimed' AND m.claimed_by = %(me)s)
    OR (u.state <> 'pending' AND m.state = 'pending')
    OR (u.state <> 'pending' AND m.state = 'claimed' AND NOT EXISTS (
          SELECT 1 FROM procrastinate_workers w
          WHERE w.id::text = m.claimed_by AND w.last_heartbeat > %(now)s - %(dead)s)))
"""


async def release_claims_late(
    conn: Conn, outcomes: Sequence[ClaimOutcome], worker: str, now: datetime, *, dead_after: timedelta
) -> int:
    """Write outcomes that could not be written when they happened (the database was away), or that
    a worker journaled before it died, where they still tell the truth about the row.

    An answer the provider gave is written to a row still claimed by `worker`; a final answer (the
    provider took the message, or refused it for good) also to a row that went back to `pending`
    meanwhile (reconciled while the database or the worker was away, not yet claimed again: writing
    `sent` keeps it from being sent twice), or that is claimed by a worker that is dead too. A row
    claimed by a live worker is that worker's to write; a final state is never touched. Returns
    how many were written.
    """
    if not outcomes:
        return 0
    cur = await conn.execute(
        LATE_SQL, {**_outcome_columns(outcomes), "me": worker, "now": now, "dead": dead_after}
    )
    return cur.rowcount


# A claim given back unsent: `pending` again, with the attempt the claim counted.
UNCLAIM_SQL = """UPDATE messages SET state = 'pending', attempts = GREATEST(0, attempts - 1),
       claimed_by = NULL, claimed_until = NULL, updated_at = %(now)s
"""


async def unclaim(conn: Conn, ids: Sequence[uuid.UUID], worker: str, now: datetime) -> int:
    """Give claims this worker has not started sending back to `pending`, with their attempt (a
    draining or out-of-time send job); returns how many."""
    if not ids:
        return 0
    cur = await conn.execute(
        UNCLAIM_SQL + "WHERE id = ANY(%(ids)s::uuid[]) AND state = 'claimed' AND claimed_by = %(me)s",
        {"ids": list(ids), "me": worker, "now": now},
    )
    return cur.rowcount


async def unclaim_lost(
    conn: Conn, tenant_id: str, channel_id: int, worker: str, until: datetime, now: datetime
) -> int:
    """Give back to `pending` the rows of a claim whose answer never reached `worker` (the
    connection died after the claim committed): the claim's lease end `until` names them. The
    worker never saw these rows, so none was sent; without this they would wait out the lease."""
    cur = await conn.execute(
        UNCLAIM_SQL
        + """WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND state = 'claimed'
               AND claimed_by = %(me)s AND claimed_until = %(until)s""",
        {"t": tenant_id, "ch": channel_id, "me": worker, "until": until, "now": now},
    )
    return cur.rowcount


async def extend_claims(conn: Conn, ids: Sequence[uuid.UUID], worker: str, until: datetime) -> int:
    """Push the lease of claims this worker still holds to `until` (results waiting to be written)."""
    if not ids:
        return 0
    cur = await conn.execute(
        """UPDATE messages SET claimed_until = GREATEST(claimed_until, %(until)s)
           WHERE id = ANY(%(ids)s::uuid[]) AND state = 'claimed' AND claimed_by = %(me)s""",
        {"ids": list(ids), "me": worker, "until": until},
    )
    return cur.rowcount


# -- campaigns that hold their messages back ----------------------------------------------------


async def held_campaigns(
    conn: Conn, tenant_id: str, channel_id: int, campaign_ids: Collection[int]
) -> dict[int, Hold]:
    """Campaigns among these that must not send now: 'paused' (or pausing) or 'canceled'."""
    rows = await (
        await conn.execute(
            """SELECT campaign_id, CASE WHEN status = 'canceled' THEN 'canceled' ELSE 'paused' END AS why
               FROM campaigns
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = ANY(%s)
                 AND (paused OR cancel_pending OR status = 'canceled')""",
            (tenant_id, channel_id, list(campaign_ids)),
        )
    ).fetchall()
    return {int(r["campaign_id"]): "canceled" if r["why"] == "canceled" else "paused" for r in rows}


# -- reconciliation -----------------------------------------------------------------------------

# A claim is stale when its lease ran out, or when its worker has sent no heartbeat for `dead` and
# the database itself has been up for longer than that: just after a database restart every
# worker's heartbeat is old, and a live worker's claims (with results waiting to be written) must
# not be taken from it.
STALE_SQL = """
SELECT m.id, m.claimed_by, m.send_at, m.attempts FROM messages m
WHERE m.tenant_id = %(t)s AND m.channel_id = %(ch)s AND m.state = 'claimed'
  AND (m.claimed_until < %(now)s OR (pg_postmaster_start_time() < %(now)s - %(dead)s AND NOT EXISTS (
        SELECT 1 FROM procrastinate_workers w
        WHERE w.id::text = m.claimed_by AND w.last_heartbeat > %(now)s - %(dead)s)))
LIMIT %(n)s
"""


async def stale_claims(
    conn: Conn, tenant_id: str, channel_id: int, now: datetime, *, dead_after: timedelta, limit: int = 10000
) -> list[StaleClaim]:
    """The claims of dead workers (no heartbeat for `dead_after`) or past their lease. Locks
    nothing: the caller asks the delivery lookup about them, then settles with `settle_stale_claims`,
    which writes only rows still claimed as they were seen here."""
    params = {"t": tenant_id, "ch": channel_id, "now": now, "dead": dead_after, "n": limit}
    rows = await (await conn.execute(STALE_SQL, params)).fetchall()
    return [
        StaleClaim(id=r["id"], claimed_by=r["claimed_by"], send_at=r["send_at"], attempts=r["attempts"])
        for r in rows
    ]


async def settle_stale_claims(
    conn: Conn,
    claims: Sequence[StaleClaim],
    states: Sequence[MessageState],
    now: datetime,
    reason: str,
    *,
    dead_after: timedelta,
) -> int:
    """Settle stale claims: each to `sent` or back to `pending`, with one reason for all. Only rows
    still claimed by the worker `stale_claims` saw are written: a row its worker wrote meanwhile (it
    was alive after all), or that another send job settled, is left as it is. Returns how many."""
    cur = await conn.execute(
        """UPDATE messages m SET state = u.state::message_state, claimed_by = NULL, claimed_until = NULL,
                  sent_at = CASE WHEN u.state = 'sent' THEN %(now)s ELSE m.sent_at END,
                  reason = %(why)s, updated_at = %(now)s
           FROM unnest(%(ids)s::uuid[], %(states)s::text[], %(by)s::text[]) AS u(id, state, by)
           WHERE m.id = u.id AND m.state = 'claimed' AND m.claimed_by IS NOT DISTINCT FROM u.by
             AND (m.claimed_until < %(now)s OR NOT EXISTS (
                  SELECT 1 FROM procrastinate_workers w
                  WHERE w.id::text = m.claimed_by AND w.last_heartbeat > %(now)s - %(dead)s))""",
        {
            "ids": [c.id for c in claims],
            "states": [str(s) for s in states],
            "by": [c.claimed_by for c in claims],
            "now": now,
            "why": reason,
            "dead": dead_after,
        },
    )
    return cur.rowcount


DUE_SQL = """
SELECT ch.tenant_id, ch.optimove_channel_id AS channel_id, ch.options FROM channels ch
WHERE EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = ch.tenant_id
              AND m.channel_id = ch.optimove_channel_id AND m.state = 'pending' AND m.send_at <= %(due_by)s)
   OR EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = ch.tenant_id
              AND m.channel_id = ch.optimove_channel_id AND m.state = 'claimed'
              AND (m.claimed_until < %(now)s OR NOT EXISTS (
                   SELECT 1 FROM procrastinate_workers w WHERE w.id::text = m.claimed_by
                   AND w.last_heartbeat > %(now)s - %(dead)s)))
"""


async def channels_with_due_work(
    conn: Conn, now: datetime, *, dead_after: timedelta, due_by: datetime | None = None
) -> list[DueChannel]:
    """Channels with pending messages due by `due_by` (default `now`) or stale claims (see
    `stale_claims`)."""
    params = {"now": now, "due_by": due_by or now, "dead": dead_after}
    rows = await (await conn.execute(DUE_SQL, params)).fetchall()
    return [
        DueChannel(tenant_id=r["tenant_id"], channel_id=r["channel_id"], options=r["options"]) for r in rows
    ]


# -- what a send job reads ----------------------------------------------------------------------


async def next_due(conn: Conn, tenant_id: str, channel_id: int) -> datetime | None:
    """The earliest send time among a channel's pending messages (one probe of messages_due)."""
    row = await (
        await conn.execute(
            "SELECT send_at FROM messages WHERE tenant_id = %s AND channel_id = %s AND state = 'pending' "
            "ORDER BY send_at LIMIT 1",
            (tenant_id, channel_id),
        )
    ).fetchone()
    return None if row is None else row["send_at"]


async def send_channel(conn: Conn, tenant_id: str, channel_id: int) -> SendChannel | None:
    """A channel's name, kind and options (its provider settings: `tenants.channel_provider_settings`)."""
    row = await (
        await conn.execute(
            "SELECT name, kind, options, version FROM channels "
            "WHERE tenant_id = %s AND optimove_channel_id = %s",
            (tenant_id, channel_id),
        )
    ).fetchone()
    if row is None:
        return None
    return SendChannel(name=row["name"], kind=row["kind"], options=row["options"], version=row["version"])


async def channel_version(conn: Conn, tenant_id: str, channel_id: int) -> int | None:
    """The channel's version: bumped by every change to its row (migration 0007), so a process
    that keeps a built channel knows, at the cost of one index lookup, when to build it again."""
    row = await (
        await conn.execute(
            "SELECT version FROM channels WHERE tenant_id = %s AND optimove_channel_id = %s",
            (tenant_id, channel_id),
        )
    ).fetchone()
    return None if row is None else int(row["version"])


async def send_templates(
    conn: Conn, tenant_id: str, channel_name: str, template_ids: Collection[int]
) -> list[SendTemplate]:
    """The current (not deleted) templates among these ids; a missing id is simply not returned."""
    rows = await (
        await conn.execute(
            "SELECT template_id, version, name, subject, body, text_body, app_id, defaults "
            "FROM templates WHERE tenant_id = %s AND channel_name = %s AND template_id = ANY(%s) "
            "AND deleted_at IS NULL",
            (tenant_id, channel_name, list(template_ids)),
        )
    ).fetchall()
    return [
        SendTemplate(
            template_id=r["template_id"],
            version=r["version"],
            name=r["name"],
            subject=r["subject"],
            body=r["body"],
            text_body=r["text_body"],
            app_id=r["app_id"],
            defaults=r["defaults"],
        )
        for r in rows
    ]


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


async def seed_messages(
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

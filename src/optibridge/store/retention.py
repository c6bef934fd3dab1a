"""Retention and erasure: the queries that shrink a campaign to its totals once its reporting
window is over (`optibridge.retention.purge` decides when and drives the batches), and the ones
that remove one customer from every table (`optibridge.retention.forget`).

Every function runs in the caller's transaction: a purge batch (count, aggregate, delete) must
commit or roll back as one, so a crash between batches never counts a message twice or loses one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from optibridge.store.suppressions import hashed as hashed_suppression

Conn = psycopg.AsyncConnection[dict[str, Any]]

# One purge at a time across every worker and machine: a second worker's run finds the lock held
# and stops at once (the periodic job runs once per period anyway; this also covers a run that
# outlasts its period). Transaction-scoped, so a crashed worker never leaves it held.
_LOCK_SQL = "SELECT pg_try_advisory_xact_lock(hashtextextended('optibridge.retention', 0)) AS ok"


@dataclass(frozen=True, slots=True)
class CampaignKey:
    tenant_id: str
    channel_id: int
    campaign_id: int


async def try_lock(conn: Conn) -> bool:
    """Take the retention lock for the current transaction; False if another worker holds it."""
    row = await (await conn.execute(_LOCK_SQL)).fetchone()
    return bool(row and row["ok"])


async def database_now(conn: Conn) -> datetime:
    row = await (await conn.execute("SELECT now() AS now")).fetchone()
    assert row is not None
    now: datetime = row["now"]
    return now


async def due_campaigns(
    conn: Conn, *, final_before: datetime, idle_before: datetime, limit: int
) -> list[CampaignKey]:
    """Campaigns (per channel) not purged yet whose reporting is over: their schedule is done or
    abandoned and its final push was due before `final_before`; or they never had a schedule
    (failed, wholly canceled) and have not changed since `idle_before`, with nothing left to send."""
    rows = await (
        await conn.execute(
            """SELECT c.tenant_id, c.channel_id, c.campaign_id
               FROM campaigns c
               LEFT JOIN report_schedules s
                 ON s.tenant_id = c.tenant_id AND s.channel_id = c.channel_id
                AND s.campaign_id = c.campaign_id
               WHERE c.purged_at IS NULL
                 AND ((s.state IN ('done', 'abandoned') AND s.final_at <= %(final)s)
                      OR (s.tenant_id IS NULL
                          AND c.status IN ('ingested', 'failed', 'canceled')
                          AND c.updated_at <= %(idle)s
                          AND NOT EXISTS (
                              SELECT 1 FROM messages m
                              WHERE m.tenant_id = c.tenant_id AND m.channel_id = c.channel_id
                                AND m.campaign_id = c.campaign_id
                                AND m.state IN ('pending', 'claimed'))))
               ORDER BY c.created_at, c.tenant_id, c.channel_id, c.campaign_id
               LIMIT %(n)s""",
            {"final": final_before, "idle": idle_before, "n": limit},
        )
    ).fetchall()
    return [CampaignKey(r["tenant_id"], int(r["channel_id"]), int(r["campaign_id"])) for r in rows]


async def purge_batch(conn: Conn, key: CampaignKey, batch: int, *, keep_sent_after: datetime) -> int:
    """Fold up to `batch` of the campaign's message rows (with their events) into the summary
    tables and delete them (their events and interaction watermarks go by ON DELETE CASCADE);
    the recipient of each one sent after `keep_sent_after` is kept in `unsubscribe_keys`, so its
    unsubscribe link still works. Returns how many messages were deleted; fewer than `batch`
    means the campaign is empty."""
    params: dict[str, Any] = {
        "t": key.tenant_id,
        "ch": key.channel_id,
        "c": key.campaign_id,
        "n": batch,
        "keep": keep_sent_after,
    }
    # SKIP LOCKED: a row a sender still holds (it cannot be, after the window, but a stuck claim
    # must not stall the purge) is left for the next run.
    rows = await (
        await conn.execute(
            """SELECT id FROM messages
               WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s
               LIMIT %(n)s FOR UPDATE SKIP LOCKED""",
            params,
        )
    ).fetchall()
    ids = [r["id"] for r in rows]
    if not ids:
        return 0
    params["ids"] = ids
    await conn.execute(
        """INSERT INTO campaign_totals (tenant_id, channel_id, campaign_id, template_id, state, messages)
           SELECT %(t)s, %(ch)s, %(c)s, template_id, state, count(*)
           FROM messages WHERE id = ANY(%(ids)s::uuid[])
           GROUP BY template_id, state
           ON CONFLICT (tenant_id, channel_id, campaign_id, template_id, state)
           DO UPDATE SET messages = campaign_totals.messages + EXCLUDED.messages""",
        params,
    )
    # Per message, the first counted event of each kind decides the day it counts on (reporting's
    # metrics are unique per message); every event row, repeats and machine hits, is in `events`.
    await conn.execute(
        """WITH ev AS (
               SELECT message_id, template_id, kind, suspect, occurred_at,
                      (occurred_at AT TIME ZONE 'UTC')::date AS day
               FROM message_events WHERE message_id = ANY(%(ids)s::uuid[])
           ), firsts AS (
               SELECT DISTINCT ON (message_id, kind) template_id, kind, day
               FROM ev WHERE NOT suspect ORDER BY message_id, kind, occurred_at
           ), counted AS (
               SELECT template_id, kind, day, count(*) AS messages FROM firsts
               GROUP BY template_id, kind, day
           ), all_events AS (
               SELECT template_id, kind, day, count(*) AS events,
                      count(*) FILTER (WHERE suspect) AS suspect
               FROM ev GROUP BY template_id, kind, day
           )
           INSERT INTO campaign_event_days
               (tenant_id, channel_id, campaign_id, template_id, kind, day, messages, events, suspect)
           SELECT %(t)s, %(ch)s, %(c)s, a.template_id, a.kind, a.day,
                  coalesce(n.messages, 0), a.events, a.suspect
           FROM all_events a
           LEFT JOIN counted n USING (template_id, kind, day)
           ON CONFLICT (tenant_id, channel_id, campaign_id, template_id, kind, day)
           DO UPDATE SET messages = campaign_event_days.messages + EXCLUDED.messages,
                         events = campaign_event_days.events + EXCLUDED.events,
                         suspect = campaign_event_days.suspect + EXCLUDED.suspect""",
        params,
    )
    # Only sent messages carry a link someone can click; DO NOTHING: a message id is one recipient.
    await conn.execute(
        """INSERT INTO unsubscribe_keys (message_id, tenant_id, channel_id, customer_id, address, sent_at)
           SELECT id, tenant_id, channel_id, customer_id, address, sent_at FROM messages
           WHERE id = ANY(%(ids)s::uuid[]) AND sent_at > %(keep)s
           ON CONFLICT (message_id) DO NOTHING""",
        params,
    )
    cur = await conn.execute("DELETE FROM messages WHERE id = ANY(%(ids)s::uuid[])", params)
    return cur.rowcount


async def mark_purged(conn: Conn, key: CampaignKey, at: datetime) -> bool:
    """Record that the campaign's rows are gone, if none is left (a row skipped as locked keeps
    it for the next run), and drop its push history but the last push (what the campaign page
    still shows). Once every channel of the campaign is purged, its per-customer cancellation
    list and Optimove's notifications about it go too (both are keyed by campaign, not channel).
    True if marked now."""
    cur = await conn.execute(
        """UPDATE campaigns c SET purged_at = %(at)s
           WHERE c.tenant_id = %(t)s AND c.channel_id = %(ch)s AND c.campaign_id = %(c)s
             AND c.purged_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = %(t)s
                               AND m.channel_id = %(ch)s AND m.campaign_id = %(c)s)""",
        {"at": at, "t": key.tenant_id, "ch": key.channel_id, "c": key.campaign_id},
    )
    if cur.rowcount == 0:
        return False
    p = {"t": key.tenant_id, "ch": key.channel_id, "c": key.campaign_id}
    await conn.execute(
        """DELETE FROM report_pushes
           WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s
             AND id <> (SELECT id FROM report_pushes WHERE tenant_id = %(t)s AND channel_id = %(ch)s
                          AND campaign_id = %(c)s ORDER BY pushed_at DESC, id DESC LIMIT 1)""",
        p,
    )
    for table in ("campaign_cancellations", "notifications"):
        await conn.execute(
            f"""DELETE FROM {table} x
                WHERE x.tenant_id = %(t)s AND x.campaign_id = %(c)s
                  AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.tenant_id = %(t)s
                                    AND c.campaign_id = %(c)s AND c.purged_at IS NULL)""",
            p,
        )
    return True


# --- records that outlive their campaign's rows ------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeptRecipient:
    """A purged message's recipient (`unsubscribe_keys`) with its channel as it is now."""

    message_id: uuid.UUID
    tenant_id: str
    channel_id: int
    customer_id: str
    address: str | None
    channel_name: str
    channel_options: dict[str, Any]


async def kept_recipient(conn: Conn, message_id: uuid.UUID, sent_after: datetime) -> KeptRecipient | None:
    """The kept recipient of a purged message sent after `sent_after`; None if there is none (not
    purged, never sent, past its keep time, forgotten) or its channel no longer exists."""
    row = await (
        await conn.execute(
            """SELECT k.message_id, k.tenant_id, k.channel_id, k.customer_id, k.address,
                      ch.name AS channel_name, ch.options
               FROM unsubscribe_keys k
               JOIN channels ch ON ch.tenant_id = k.tenant_id AND ch.optimove_channel_id = k.channel_id
               WHERE k.message_id = %s AND k.sent_at > %s""",
            (message_id, sent_after),
        )
    ).fetchone()
    if row is None:
        return None
    return KeptRecipient(
        row["message_id"],
        row["tenant_id"],
        int(row["channel_id"]),
        row["customer_id"],
        row["address"],
        row["channel_name"],
        row["options"],
    )


# Each prune deletes at most `limit` rows per call (one short transaction); the job calls it again
# until fewer come back or its time is up.
_PRUNES = {
    "unsubscribe_keys": """DELETE FROM unsubscribe_keys WHERE message_id IN (
                               SELECT message_id FROM unsubscribe_keys WHERE sent_at < %(before)s
                               LIMIT %(n)s)""",
    # A notification whose campaign still has rows stays with it (it goes at the purge).
    "notifications": """DELETE FROM notifications WHERE id IN (
                            SELECT n.id FROM notifications n
                            WHERE n.received_at < %(before)s
                              AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.tenant_id = n.tenant_id
                                                AND c.campaign_id = n.campaign_id AND c.purged_at IS NULL)
                            LIMIT %(n)s)""",
    # Sent opt-outs only: an unsent one is still owed to Optimove, whatever its age.
    "preference_outbox": """DELETE FROM preference_outbox WHERE id IN (
                                SELECT id FROM preference_outbox WHERE sent_at < %(before)s LIMIT %(n)s)""",
}
PRUNED_TABLES = tuple(_PRUNES)


async def prune(conn: Conn, table: str, before: datetime, limit: int) -> int:
    """Delete up to `limit` rows of `table` (one of PRUNED_TABLES) older than `before`."""
    cur = await conn.execute(_PRUNES[table], {"before": before, "n": limit})
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class TemplateTotals:
    template_id: int
    states: dict[str, int]


async def campaign_totals(conn: Conn, key: CampaignKey) -> list[TemplateTotals]:
    """What a purged campaign had: messages per template and final state."""
    rows = await (
        await conn.execute(
            """SELECT template_id, state::text AS state, messages FROM campaign_totals
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s
               ORDER BY template_id, state""",
            (key.tenant_id, key.channel_id, key.campaign_id),
        )
    ).fetchall()
    by_template: dict[int, dict[str, int]] = {}
    for r in rows:
        by_template.setdefault(int(r["template_id"]), {})[r["state"]] = int(r["messages"])
    return [TemplateTotals(t, states) for t, states in sorted(by_template.items())]


async def purged_at(conn: Conn, key: CampaignKey) -> datetime | None:
    """When the campaign's message rows were purged; None while they are kept."""
    row = await (
        await conn.execute(
            """SELECT purged_at FROM campaigns
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
            (key.tenant_id, key.channel_id, key.campaign_id),
        )
    ).fetchone()
    return row["purged_at"] if row else None


async def purged_states(conn: Conn, keys: Sequence[CampaignKey]) -> dict[CampaignKey, dict[str, int]]:
    """For those of the campaigns that are purged: messages per final state, over every template
    (one query for a page of campaigns)."""
    if not keys:
        return {}
    rows = await (
        await conn.execute(
            """SELECT c.tenant_id, c.channel_id, c.campaign_id, t.state::text AS state,
                      coalesce(sum(t.messages), 0) AS messages
               FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS k(tenant_id, channel_id, campaign_id)
               JOIN campaigns c USING (tenant_id, channel_id, campaign_id)
               LEFT JOIN campaign_totals t USING (tenant_id, channel_id, campaign_id)
               WHERE c.purged_at IS NOT NULL
               GROUP BY c.tenant_id, c.channel_id, c.campaign_id, t.state""",
            ([k.tenant_id for k in keys], [k.channel_id for k in keys], [k.campaign_id for k in keys]),
        )
    ).fetchall()
    out: dict[CampaignKey, dict[str, int]] = {}
    for r in rows:
        states = out.setdefault(CampaignKey(r["tenant_id"], int(r["channel_id"]), int(r["campaign_id"])), {})
        if r["state"] is not None:
            states[r["state"]] = int(r["messages"])
    return out


@dataclass(frozen=True, slots=True)
class EventTotals:
    """A purged campaign's events of one kind for one template, over every day."""

    template_id: int
    kind: str
    messages: int  # messages whose first counted (not machine) event was of this kind
    events: int  # every event row, repeats and machine hits included
    suspect: int  # of those, machine hits


async def event_totals(conn: Conn, key: CampaignKey) -> list[EventTotals]:
    rows = await (
        await conn.execute(
            """SELECT template_id, kind, sum(messages) AS messages, sum(events) AS events,
                      sum(suspect) AS suspect
               FROM campaign_event_days
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s
               GROUP BY template_id, kind ORDER BY template_id, kind""",
            (key.tenant_id, key.channel_id, key.campaign_id),
        )
    ).fetchall()
    return [
        EventTotals(int(r["template_id"]), r["kind"], int(r["messages"]), int(r["events"]), int(r["suspect"]))
        for r in rows
    ]


# --- one customer's data (optibridge customers forget) -----------------------------------------


async def customer_addresses(conn: Conn, tenant_id: str, customer_id: str) -> list[str]:
    """Every address we hold for the customer: their contact row, their messages and the kept
    recipients of their purged messages."""
    rows = await (
        await conn.execute(
            """SELECT a FROM (
                   SELECT unnest(ARRAY[email, phone, device_token]) AS a FROM contacts
                   WHERE tenant_id = %(t)s AND customer_id = %(c)s
                   UNION
                   SELECT DISTINCT address FROM messages
                   WHERE tenant_id = %(t)s AND customer_id = %(c)s
                   UNION
                   SELECT DISTINCT address FROM unsubscribe_keys
                   WHERE tenant_id = %(t)s AND customer_id = %(c)s
               ) x WHERE a IS NOT NULL AND a <> ''""",
            {"t": tenant_id, "c": customer_id},
        )
    ).fetchall()
    return sorted({r["a"] for r in rows})


async def forget_customer(
    conn: Conn, tenant_id: str, customer_id: str, normalized_addresses: Sequence[str]
) -> dict[str, int]:
    """Delete the customer's rows from every table that holds them; their suppressions are kept in
    hashed form only (`suppressions.hashed`), so they are never sent to again but nothing in the
    row names them. Returns the rows removed (or, for suppressions, rewritten) per table."""
    p: dict[str, Any] = {"t": tenant_id, "c": customer_id, "addrs": list(normalized_addresses)}
    removed: dict[str, int] = {}
    mine = """SELECT id FROM messages WHERE tenant_id = %(t)s AND customer_id = %(c)s"""
    # Suppressions: insert the hashed twin of each entry naming the customer, then delete the
    # entry (an insert + delete rather than an update: the twin may exist from an earlier forget).
    rows = await (
        await conn.execute(
            """SELECT channel_name, kind, value, reason, source, created_at FROM suppressions
               WHERE tenant_id = %(t)s
                 AND ((kind = 'customer' AND value = %(c)s)
                      OR (kind = 'address' AND value = ANY(%(addrs)s::text[])))""",
            p,
        )
    ).fetchall()
    for r in rows:
        await conn.execute(
            """INSERT INTO suppressions (tenant_id, channel_name, kind, value, reason, source, created_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            (
                tenant_id,
                r["channel_name"],
                r["kind"],
                hashed_suppression(r["value"]),
                r["reason"],
                r["source"],
                r["created_at"],
            ),
        )
    cur = await conn.execute(
        """DELETE FROM suppressions WHERE tenant_id = %(t)s
             AND ((kind = 'customer' AND value = %(c)s)
                  OR (kind = 'address' AND value = ANY(%(addrs)s::text[])))""",
        p,
    )
    removed["suppressions (kept hashed)"] = cur.rowcount
    # Another entry (e.g. a manual one) may point at one of the customer's messages: unlink it.
    await conn.execute(f"UPDATE suppressions SET message_id = NULL WHERE message_id IN ({mine})", p)
    cur = await conn.execute(f"DELETE FROM reported_interactions WHERE message_id IN ({mine})", p)
    removed["reported_interactions"] = cur.rowcount
    # Per-message progress of the newer paths: the aggregator's report rows hold the mobile number
    # (no foreign key to messages); engagement events would go with the messages (cascade).
    cur = await conn.execute(f"DELETE FROM aggregator_messages WHERE message_id IN ({mine})", p)
    removed["aggregator_messages"] = cur.rowcount
    cur = await conn.execute(f"DELETE FROM engagement_events WHERE message_id IN ({mine})", p)
    removed["engagement_events"] = cur.rowcount
    cur = await conn.execute("DELETE FROM message_events WHERE tenant_id = %(t)s AND customer_id = %(c)s", p)
    removed["message_events"] = cur.rowcount
    cur = await conn.execute("DELETE FROM messages WHERE tenant_id = %(t)s AND customer_id = %(c)s", p)
    removed["messages"] = cur.rowcount
    for table in ("contacts", "campaign_cancellations", "preference_outbox", "unsubscribe_keys"):
        cur = await conn.execute(
            f"DELETE FROM {table} WHERE tenant_id = %(t)s AND customer_id = %(c)s",
            p,
        )
        removed[table] = cur.rowcount
    return removed

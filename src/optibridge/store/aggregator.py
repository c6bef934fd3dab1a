"""The SMS aggregator flow's tables (migration 0013): channel settings, batches, report progress.

Secrets (the app-api-key and shared secret the tenant copied from Optimove, and the aggregator key
we generated for Optimove to send back) are one Fernet-encrypted JSON document per channel. The
aggregator key is also kept as its SHA-256, so an incoming request is matched in SQL without
decrypting every channel's secrets.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from optibridge.core.errors import NotFoundError
from optibridge.core.secretbox import SecretBox

Conn = psycopg.AsyncConnection[dict[str, Any]]


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def new_aggregator_key() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class AggregatorChannel:
    tenant_id: str
    channel_id: int
    base_url: str
    app_api_key: str
    shared_secret: str
    aggregator_key: str
    receipt_wait_s: int
    handshake_url: str | None
    handshake_at: datetime | None
    handshake_error: str | None

    def __repr__(self) -> str:  # never print a secret, even in a traceback
        return f"AggregatorChannel({self.tenant_id!r}, {self.channel_id}, {self.base_url!r})"


_COLUMNS = (
    "tenant_id, channel_id, base_url, secrets, receipt_wait_s, handshake_url, handshake_at, handshake_error"
)


def _channel(box: SecretBox, row: dict[str, Any]) -> AggregatorChannel:
    secret = box.decrypt_json(bytes(row["secrets"]))
    return AggregatorChannel(
        tenant_id=row["tenant_id"],
        channel_id=int(row["channel_id"]),
        base_url=row["base_url"],
        app_api_key=str(secret["app_api_key"]),
        shared_secret=str(secret["shared_secret"]),
        aggregator_key=str(secret["aggregator_key"]),
        receipt_wait_s=int(row["receipt_wait_s"]),
        handshake_url=row["handshake_url"],
        handshake_at=row["handshake_at"],
        handshake_error=row["handshake_error"],
    )


async def configure(
    conn: Conn,
    box: SecretBox,
    tenant_id: str,
    channel_id: int,
    *,
    base_url: str,
    app_api_key: str,
    shared_secret: str,
    receipt_wait_s: int = 0,
    rotate_key: bool = False,
) -> tuple[AggregatorChannel, bool]:
    """Set a channel's aggregator settings; (the channel, whether anything changed).

    The aggregator key is generated once and kept across changes (Optimove keeps sending the one it
    was given) unless `rotate_key`; the handshake then gives Optimove the new one."""
    async with conn.transaction():
        if not await (
            await conn.execute(
                "SELECT 1 FROM channels WHERE tenant_id = %s AND optimove_channel_id = %s AND kind = 'sms'",
                (tenant_id, channel_id),
            )
        ).fetchone():
            raise NotFoundError(f"tenant {tenant_id!r} has no SMS channel with ChannelID {channel_id}")
        old = await get(conn, box, tenant_id, channel_id, for_update=True)
        key = old.aggregator_key if old is not None and not rotate_key else new_aggregator_key()
        if old is not None and (
            old.base_url,
            old.app_api_key,
            old.shared_secret,
            old.receipt_wait_s,
            old.aggregator_key,
        ) == (base_url, app_api_key, shared_secret, receipt_wait_s, key):
            return old, False
        sealed = box.encrypt_json(
            {"app_api_key": app_api_key, "shared_secret": shared_secret, "aggregator_key": key}
        )
        row = await (
            await conn.execute(
                f"""INSERT INTO aggregator_channels
                       (tenant_id, channel_id, base_url, secrets, key_hash, receipt_wait_s)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (tenant_id, channel_id) DO UPDATE SET
                       base_url = EXCLUDED.base_url, secrets = EXCLUDED.secrets,
                       key_hash = EXCLUDED.key_hash, receipt_wait_s = EXCLUDED.receipt_wait_s,
                       handshake_at = NULL, handshake_error = NULL, handshake_hash = NULL,
                       updated_at = now()
                   RETURNING {_COLUMNS}""",
                (tenant_id, channel_id, base_url, sealed, key_hash(key), receipt_wait_s),
            )
        ).fetchone()
        assert row is not None
        return _channel(box, row), True


async def get(
    conn: Conn, box: SecretBox, tenant_id: str, channel_id: int, *, for_update: bool = False
) -> AggregatorChannel | None:
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM aggregator_channels WHERE tenant_id = %s AND channel_id = %s"
            + (" FOR UPDATE" if for_update else ""),
            (tenant_id, channel_id),
        )
    ).fetchone()
    return None if row is None else _channel(box, row)


async def by_key(
    conn: Conn, box: SecretBox, tenant_id: str, channel_id: int, key: str
) -> AggregatorChannel | None:
    """The channel if `key` is its aggregator key (matched by hash; the caller compares again)."""
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM aggregator_channels "
            "WHERE tenant_id = %s AND channel_id = %s AND key_hash = %s",
            (tenant_id, channel_id, key_hash(key)),
        )
    ).fetchone()
    return None if row is None else _channel(box, row)


async def remove(conn: Conn, tenant_id: str, channel_id: int) -> bool:
    cur = await conn.execute(
        "DELETE FROM aggregator_channels WHERE tenant_id = %s AND channel_id = %s", (tenant_id, channel_id)
    )
    return cur.rowcount > 0


def url_hash(url: str) -> bytes:
    return hashlib.sha256(url.encode()).digest()


async def record_handshake(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    shown_url: str,
    at: datetime,
    error: str | None,
    *,
    registered_url: str,
) -> None:
    """The outcome of a handshake: `shown_url` (token masked) for people, the hash of the URL
    actually registered to notice when it goes stale; a failure keeps the last success's."""
    await conn.execute(
        """UPDATE aggregator_channels SET handshake_url = %(shown)s, handshake_error = %(error)s,
                  handshake_at = CASE WHEN %(error)s::text IS NULL THEN %(at)s ELSE handshake_at END,
                  handshake_hash = CASE WHEN %(error)s::text IS NULL THEN %(hash)s ELSE handshake_hash END
           WHERE tenant_id = %(t)s AND channel_id = %(ch)s""",
        {
            "shown": shown_url,
            "error": error,
            "at": at,
            "hash": url_hash(registered_url),
            "t": tenant_id,
            "ch": channel_id,
        },
    )


@dataclass(frozen=True)
class Registered:
    tenant_id: str
    channel_id: int
    url_hash: bytes


async def registered(conn: Conn) -> list[Registered]:
    """Channels whose last handshake succeeded (a failing one is left to its job and to people)."""
    rows = await (
        await conn.execute(
            "SELECT tenant_id, channel_id, handshake_hash FROM aggregator_channels "
            "WHERE handshake_hash IS NOT NULL AND handshake_error IS NULL ORDER BY 1, 2"
        )
    ).fetchall()
    return [Registered(r["tenant_id"], int(r["channel_id"]), bytes(r["handshake_hash"])) for r in rows]


# -- batches ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRow:
    batch_id: str
    request_id: str
    campaign_id: int
    sender_id: str | None
    metadata: dict[str, Any]
    recipients: int
    accepted: int
    notes: Sequence[str]


async def insert_batch(conn: Conn, tenant_id: str, channel_id: int, batch: BatchRow) -> bool:
    """Record a batch; False if this batch id or request id was seen already (nothing written)."""
    row = await (
        await conn.execute(
            """INSERT INTO aggregator_batches (tenant_id, channel_id, batch_id, request_id, campaign_id,
                      sender_id, metadata, recipients, accepted, notes)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT DO NOTHING RETURNING batch_id""",
            (
                tenant_id,
                channel_id,
                batch.batch_id,
                batch.request_id,
                batch.campaign_id,
                batch.sender_id,
                json.dumps(batch.metadata),
                batch.recipients,
                batch.accepted,
                list(batch.notes),
            ),
        )
    ).fetchone()
    return row is not None


@dataclass(frozen=True)
class NewMessage:
    id: uuid.UUID
    customer_id: str
    mobile_number: str
    attrs: dict[str, str]
    reason: str | None  # set: failed at intake (an ingest note), never sent


async def insert_messages(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    template_id: int,
    batch_id: str,
    scheduled_at: datetime,
    rows: Sequence[NewMessage],
) -> int:
    """The batch's messages (pending, or failed with their reason) and their report rows; a message
    id that exists already (the same customer in a repeated campaign batch) is left as it is.
    Returns how many messages are new."""
    if not rows:
        return 0
    inserted = await (
        await conn.execute(
            """INSERT INTO messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id,
                      scheduled_at, send_at, address, attrs, state, reason)
               SELECT u.id, %(t)s, %(ch)s, %(c)s, u.customer, %(tpl)s, %(at)s, %(at)s,
                      NULLIF(u.address, ''), u.attrs::jsonb,
                      CASE WHEN u.reason IS NULL THEN 'pending' ELSE 'failed' END::message_state, u.reason
               FROM unnest(%(ids)s::uuid[], %(customers)s::text[], %(addresses)s::text[],
                           %(attrs)s::text[], %(reasons)s::text[]) AS u(id, customer, address, attrs, reason)
               ON CONFLICT (id) DO NOTHING
               RETURNING id""",
            {
                "t": tenant_id,
                "ch": channel_id,
                "c": campaign_id,
                "tpl": template_id,
                "at": scheduled_at,
                "ids": [r.id for r in rows],
                "customers": [r.customer_id for r in rows],
                "addresses": [r.mobile_number if r.reason is None else "" for r in rows],
                "attrs": [json.dumps(r.attrs if r.reason is None else {}) for r in rows],
                "reasons": [r.reason for r in rows],
            },
        )
    ).fetchall()
    new_ids = {r["id"] for r in inserted}
    fresh = [r for r in rows if r.id in new_ids]
    if fresh:
        await conn.execute(
            """INSERT INTO aggregator_messages (message_id, tenant_id, channel_id, batch_id, mobile_number)
               SELECT u.id, %s, %s, %s, u.number
               FROM unnest(%s::uuid[], %s::text[]) AS u(id, number)
               ON CONFLICT (message_id) DO NOTHING""",
            (
                tenant_id,
                channel_id,
                batch_id,
                [r.id for r in fresh],
                [r.mobile_number for r in fresh],
            ),
        )
    return len(fresh)


# -- delivery reports -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportCandidate:
    message_id: uuid.UUID
    tenant_id: str
    channel_id: int
    batch_id: str
    request_id: str
    sender_id: str | None
    metadata: dict[str, Any]
    customer_id: str
    mobile_number: str
    state: str
    reason: str | None
    sent_at: datetime | None
    receipt: str | None  # the latest provider receipt: delivered, bounced or failed
    receipt_reason: str | None
    attempts: int


_DUE = """
WITH due AS (
    SELECT a.message_id FROM aggregator_messages a
    JOIN messages m ON m.id = a.message_id
    WHERE a.reported_at IS NULL AND a.next_try_at <= %(now)s
      AND m.state IN ('sent', 'failed', 'suppressed', 'canceled', 'expired')
    ORDER BY a.next_try_at
    LIMIT %(n)s
    FOR UPDATE OF a SKIP LOCKED
)
UPDATE aggregator_messages a SET next_try_at = %(lease_until)s
FROM due WHERE a.message_id = due.message_id
RETURNING a.message_id, a.tenant_id, a.channel_id, a.batch_id, a.mobile_number, a.attempts
"""

_DETAILS = """
SELECT a.message_id, b.request_id, b.sender_id, b.metadata, m.customer_id, m.state::text AS state,
       m.reason, m.sent_at, e.kind AS receipt, e.reason AS receipt_reason
FROM unnest(%s::uuid[]) AS u(id)
JOIN aggregator_messages a ON a.message_id = u.id
JOIN aggregator_batches b ON b.tenant_id = a.tenant_id AND b.channel_id = a.channel_id
                         AND b.batch_id = a.batch_id
JOIN messages m ON m.id = a.message_id
LEFT JOIN LATERAL (
    SELECT kind, reason FROM message_events ev
    WHERE ev.message_id = a.message_id AND ev.kind IN ('delivered', 'bounced', 'failed')
    ORDER BY ev.occurred_at DESC LIMIT 1
) e ON true
"""


async def lease_due_reports(conn: Conn, now: datetime, lease: timedelta, limit: int) -> list[ReportCandidate]:
    """Up to `limit` report rows whose message has an outcome, leased until now + lease (a crashed
    reporter's rows come back then). The caller holds no transaction: the lease commits at once."""
    async with conn.transaction():
        leased = await (
            await conn.execute(_DUE, {"now": now, "n": limit, "lease_until": now + lease})
        ).fetchall()
    if not leased:
        return []
    details = {
        r["message_id"]: r
        for r in await (await conn.execute(_DETAILS, ([r["message_id"] for r in leased],))).fetchall()
    }
    out = []
    for r in leased:
        d = details.get(r["message_id"])
        if d is None:
            continue
        out.append(
            ReportCandidate(
                message_id=r["message_id"],
                tenant_id=r["tenant_id"],
                channel_id=int(r["channel_id"]),
                batch_id=r["batch_id"],
                request_id=d["request_id"],
                sender_id=d["sender_id"],
                metadata=dict(d["metadata"]),
                customer_id=d["customer_id"],
                mobile_number=r["mobile_number"],
                state=d["state"],
                reason=d["reason"],
                sent_at=d["sent_at"],
                receipt=d["receipt"],
                receipt_reason=d["receipt_reason"],
                attempts=int(r["attempts"]),
            )
        )
    return out


async def mark_reported(conn: Conn, message_id: uuid.UUID, status: str, now: datetime) -> None:
    await conn.execute(
        """UPDATE aggregator_messages SET reported_at = %s, report_status = %s, attempts = attempts + 1,
                  last_error = NULL WHERE message_id = %s""",
        (now, status, message_id),
    )


async def postpone(
    conn: Conn, message_id: uuid.UUID, next_try_at: datetime, error: str | None, *, attempt: bool
) -> None:
    """Try again at `next_try_at`; `attempt`: a report was tried (and failed), count it."""
    await conn.execute(
        """UPDATE aggregator_messages SET next_try_at = %s, last_error = %s,
                  attempts = attempts + %s WHERE message_id = %s""",
        (next_try_at, error, 1 if attempt else 0, message_id),
    )


async def channels_for(
    conn: Conn, box: SecretBox, keys: set[tuple[str, int]]
) -> dict[tuple[str, int], AggregatorChannel]:
    out = {}
    for tenant_id, channel_id in sorted(keys):
        ch = await get(conn, box, tenant_id, channel_id)
        if ch is not None:
            out[(tenant_id, channel_id)] = ch
    return out


@dataclass(frozen=True)
class ReportCounts:
    reported: int
    pending: int
    failing: int


async def report_counts(conn: Conn, tenant_id: str, channel_id: int) -> ReportCounts:
    row = await (
        await conn.execute(
            """SELECT count(*) FILTER (WHERE reported_at IS NOT NULL) AS reported,
                      count(*) FILTER (WHERE reported_at IS NULL) AS pending,
                      count(*) FILTER (WHERE reported_at IS NULL AND last_error IS NOT NULL) AS failing
               FROM aggregator_messages WHERE tenant_id = %s AND channel_id = %s""",
            (tenant_id, channel_id),
        )
    ).fetchone()
    assert row is not None
    return ReportCounts(int(row["reported"]), int(row["pending"]), int(row["failing"]))


# -- the campaign and template the rows live under --------------------------------------------


async def ensure_template(
    conn: Conn, tenant_id: str, channel_id: int, template_id: int, name: str, body: str
) -> None:
    """The channel's built-in template that sends the prepared text (restored if it was deleted).

    `attributes` stays empty: the classic flow asks Optimove for every live template's attributes,
    and `message` is not a customer attribute there."""
    await conn.execute(
        """INSERT INTO templates (tenant_id, channel_name, template_id, name, body, attributes)
           SELECT tenant_id, name, %s, %s, %s, '{}' FROM channels
           WHERE tenant_id = %s AND optimove_channel_id = %s
           ON CONFLICT (tenant_id, channel_name, template_id) DO UPDATE
               SET body = EXCLUDED.body, name = EXCLUDED.name, deleted_at = NULL, attributes = '{}',
                   version = templates.version + 1, updated_at = now()
               WHERE templates.body <> EXCLUDED.body OR templates.deleted_at IS NOT NULL
                  OR templates.name <> EXCLUDED.name""",
        (template_id, name, body, tenant_id, channel_id),
    )


async def ensure_campaign(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    first_event: int,
    messages: int,
    customers: int,
) -> None:
    """The campaign row the batch's messages belong to: created ingested (there is nothing to page),
    counts added batch by batch. A campaign that was canceled stays canceled."""
    await conn.execute(
        """INSERT INTO campaigns (tenant_id, channel_id, campaign_id, channel_name, first_event, status,
                  ingested_at, customers, messages)
           SELECT tenant_id, optimove_channel_id, %s, name, %s, 'ingested', now(), %s, %s FROM channels
           WHERE tenant_id = %s AND optimove_channel_id = %s
           ON CONFLICT (tenant_id, channel_id, campaign_id) DO UPDATE
               SET customers = campaigns.customers + EXCLUDED.customers,
                   messages = campaigns.messages + EXCLUDED.messages,
                   status = CASE WHEN campaigns.status IN ('awaiting', 'ingesting') THEN 'ingested'
                                 ELSE campaigns.status END,
                   ingested_at = coalesce(campaigns.ingested_at, now()), updated_at = now()""",
        (campaign_id, first_event, customers, messages, tenant_id, channel_id),
    )


async def add_campaign_notes(
    conn: Conn, tenant_id: str, channel_id: int, campaign_id: int, notes: Sequence[str]
) -> None:
    """What was wrong with some recipients, on the campaign like the classic ingest's notes (20 kept)."""
    if notes:
        await conn.execute(
            """UPDATE campaigns SET ingest_notes = (ingest_notes || %s::text[])[1:20], updated_at = now()
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
            (list(notes), tenant_id, channel_id, campaign_id),
        )


async def prune(conn: Conn, before: datetime, limit: int) -> int:
    """Delete up to `limit` batches received before `before` with nothing left to report (their
    report rows go with them; a report whose message was purged meanwhile counts as nothing left).
    Returns how many batches went."""
    cur = await conn.execute(
        """DELETE FROM aggregator_batches b USING (
               SELECT x.tenant_id, x.channel_id, x.batch_id FROM aggregator_batches x
               WHERE x.received_at < %(before)s
                 AND NOT EXISTS (
                     SELECT 1 FROM aggregator_messages a JOIN messages m ON m.id = a.message_id
                     WHERE a.tenant_id = x.tenant_id AND a.channel_id = x.channel_id
                       AND a.batch_id = x.batch_id AND a.reported_at IS NULL)
               LIMIT %(n)s) old
           WHERE b.tenant_id = old.tenant_id AND b.channel_id = old.channel_id
             AND b.batch_id = old.batch_id""",
        {"before": before, "n": limit},
    )
    return max(cur.rowcount, 0)

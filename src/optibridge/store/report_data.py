"""What reporting reads and records: a campaign's messages with their events, and what Optimove
has accepted (`reported_metrics`, `reported_interactions`). The schedule of pushes is in
`optibridge.store.reports`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

Conn = psycopg.AsyncConnection[dict[str, Any]]

_FACTS_OF = """
WITH ev AS (
    SELECT message_id,
           min(occurred_at) FILTER (WHERE kind = 'delivered') AS delivered_at,
           min(occurred_at) FILTER (WHERE kind IN ('opened', 'clicked') AND NOT suspect) AS opened_at,
           min(occurred_at) FILTER (WHERE kind = 'clicked' AND NOT suspect) AS clicked_at,
           min(occurred_at) FILTER (WHERE kind = 'unsubscribed') AS unsubscribed_at,
           min(occurred_at) FILTER (WHERE kind = 'bounced') AS bounced_at,
           min(occurred_at) FILTER (WHERE kind = 'complained') AS complained_at,
           min(occurred_at) FILTER (WHERE kind = 'failed') AS failed_at
    FROM message_events
    WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s
    GROUP BY message_id
), rep AS (
    SELECT message_id, array_agg(event_id) AS reported
    FROM {progress}
    WHERE tenant_id = %(t)s AND channel_id = %(ch)s AND campaign_id = %(c)s
    GROUP BY message_id
)
SELECT m.id, m.template_id, m.customer_id, m.state::text AS state, m.sent_at, m.updated_at,
       ev.delivered_at, ev.opened_at, ev.clicked_at, ev.unsubscribed_at, ev.bounced_at,
       ev.complained_at, ev.failed_at, rep.reported
FROM messages m
LEFT JOIN ev ON ev.message_id = m.id
LEFT JOIN rep ON rep.message_id = m.id
WHERE m.tenant_id = %(t)s AND m.channel_id = %(ch)s AND m.campaign_id = %(c)s
  AND m.state NOT IN ('pending', 'claimed', 'canceled')
"""
# Which metrics are already handled, per message: the classic push's watermark table, or the
# engagement events' (store/engagement_events.py); the two progress independently ("both" mode).
PROGRESS_TABLES = ("reported_interactions", "engagement_events")


@dataclass(slots=True)
class MessageFactRow:
    """A message that left the queue, with the first time of each kind of event it had and the
    interaction EventIDs Optimove has accepted for it (None: none)."""

    id: uuid.UUID
    template_id: int
    customer_id: str
    state: str
    sent_at: datetime | None
    updated_at: datetime
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    unsubscribed_at: datetime | None
    bounced_at: datetime | None
    complained_at: datetime | None
    failed_at: datetime | None
    reported: list[int] | None


async def message_facts(
    conn: Conn, tenant_id: str, channel_id: int, campaign_id: int, *, progress: str = "reported_interactions"
) -> AsyncIterator[MessageFactRow]:
    """Stream the campaign's sent-or-final messages (one pass, whatever the campaign's size), each
    with `reported`: the MetricIDs the `progress` table (PROGRESS_TABLES) says are handled."""
    if progress not in PROGRESS_TABLES:
        raise ValueError(f"unknown progress table {progress!r}")
    params = {"t": tenant_id, "ch": channel_id, "c": campaign_id}
    # A named (server-side) cursor streams the rows; it needs a transaction, read-only here.
    async with (
        conn.transaction(),
        conn.cursor(name=f"facts_{progress}", row_factory=class_row(MessageFactRow)) as cur,
    ):
        cur.itersize = 5000
        await cur.execute(_FACTS_OF.format(progress=progress), params)
        async for row in cur:
            yield row


async def record_metrics(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    values: Sequence[tuple[int, int, int]],
    at: datetime,
) -> None:
    """Record the metric totals Optimove accepted: (template id, metric id, value) each."""
    await conn.execute(
        """INSERT INTO reported_metrics
               (tenant_id, channel_id, campaign_id, template_id, metric_id, value, pushed_at)
           SELECT %s, %s, %s, t, m, v, %s
           FROM unnest(%s::int[], %s::int[], %s::bigint[]) AS x(t, m, v)
           ON CONFLICT (tenant_id, channel_id, campaign_id, template_id, metric_id)
           DO UPDATE SET value = EXCLUDED.value, pushed_at = EXCLUDED.pushed_at""",
        (
            tenant_id,
            channel_id,
            campaign_id,
            at,
            [t for t, _, _ in values],
            [m for _, m, _ in values],
            [v for _, _, v in values],
        ),
    )


async def record_interactions(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    *,
    event_id: int,
    interaction_date: date,
    message_ids: Sequence[uuid.UUID],
    at: datetime,
) -> None:
    """Record the messages whose interaction (`event_id` on `interaction_date`) Optimove accepted."""
    await conn.execute(
        """INSERT INTO reported_interactions
               (message_id, event_id, tenant_id, channel_id, campaign_id,
                interaction_date, pushed_at)
           SELECT mid, %s, %s, %s, %s, %s, %s FROM unnest(%s::uuid[]) AS x(mid)
           ON CONFLICT DO NOTHING""",
        (event_id, tenant_id, channel_id, campaign_id, interaction_date, at, list(message_ids)),
    )


async def reported_metrics(
    conn: Conn, tenant_id: str, channel_id: int, campaign_id: int
) -> dict[int, dict[int, int]]:
    """template id -> metric id -> the value Optimove last accepted."""
    rows = await (
        await conn.execute(
            """SELECT template_id, metric_id, value, pushed_at FROM reported_metrics
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
            (tenant_id, channel_id, campaign_id),
        )
    ).fetchall()
    reported: dict[int, dict[int, int]] = {}
    for r in rows:
        reported.setdefault(int(r["template_id"]), {})[int(r["metric_id"])] = int(r["value"])
    return reported


@dataclass(frozen=True, slots=True)
class SideCounts:
    suspect_hits: int  # machine opens and clicks, not counted
    interactions_reported: int


async def side_counts(conn: Conn, tenant_id: str, channel_id: int, campaign_id: int) -> SideCounts:
    extra = await (
        await conn.execute(
            """SELECT (SELECT count(*) FROM message_events WHERE tenant_id = %(t)s AND channel_id = %(ch)s
                         AND campaign_id = %(c)s AND suspect) AS suspect_hits,
                      (SELECT count(*) FROM reported_interactions WHERE tenant_id = %(t)s
                         AND channel_id = %(ch)s AND campaign_id = %(c)s) AS interactions_reported""",
            {"t": tenant_id, "ch": channel_id, "c": campaign_id},
        )
    ).fetchone()
    if extra is None:
        return SideCounts(0, 0)
    return SideCounts(int(extra["suspect_hits"]), int(extra["interactions_reported"]))

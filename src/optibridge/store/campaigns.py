"""Campaigns and their messages as operators see them: the queries behind progress and the
operator actions (pause, resume, cancel). The arithmetic lives in `optibridge.campaigns`."""

from __future__ import annotations

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

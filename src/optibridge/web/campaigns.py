"""Campaigns as operators see them: progress from the message rows, and pause/resume/cancel.

"Sent" is the `sent` state; "done" is any final state (sent, failed, suppressed, canceled,
expired). The rate is what was sent in the last minute; the ETA divides what is still to go
(pending and claimed) by that rate. `compute_progress` is the pure part, tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg

from optibridge.core.errors import ConflictError, NotFoundError

Conn = psycopg.AsyncConnection[dict[str, Any]]
STATES = ("pending", "claimed", "sent", "failed", "suppressed", "canceled", "expired")
FINAL_STATES = frozenset({"sent", "failed", "suppressed", "canceled", "expired"})
CAMPAIGN_STATUSES = ("awaiting", "ingesting", "ingested", "failed", "canceled")
RATE_WINDOW_S = 60
OPERATOR_CANCEL_REASON = "canceled by operator"
CampaignKey = tuple[str, int, int]  # tenant, Optimove channel id, campaign id


@dataclass(frozen=True)
class Progress:
    counts: dict[str, int]
    total: int
    sent: int
    done: int
    failed: int
    remaining: int
    percent_sent: float
    percent_done: float
    rate_per_s: float
    eta_s: float | None


def compute_progress(
    counts: dict[str, int], sent_in_window: int, window_s: float = RATE_WINDOW_S
) -> Progress:
    full = {state: int(counts.get(state, 0)) for state in STATES}
    total = sum(full.values())
    sent = full["sent"]
    done = sum(n for state, n in full.items() if state in FINAL_STATES)
    remaining = full["pending"] + full["claimed"]
    rate = sent_in_window / window_s if window_s > 0 else 0.0
    return Progress(
        counts=full,
        total=total,
        sent=sent,
        done=done,
        failed=full["failed"],
        remaining=remaining,
        percent_sent=round(100.0 * sent / total, 1) if total else 0.0,
        percent_done=round(100.0 * done / total, 1) if total else 0.0,
        rate_per_s=round(rate, 2),
        eta_s=round(remaining / rate, 1) if rate > 0 and remaining else (0.0 if not remaining else None),
    )


@dataclass(frozen=True)
class Campaign:
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
    progress: Progress

    @property
    def key(self) -> CampaignKey:
        return (self.tenant_id, self.channel_id, self.campaign_id)


@dataclass(frozen=True)
class CampaignDetail:
    campaign: Campaign
    templates: dict[int, Progress] = field(default_factory=dict)
    failures: list[tuple[str, int]] = field(default_factory=list)


_COLUMNS = (
    "tenant_id, channel_name, channel_id, campaign_id, status, paused, cancel_pending, ingest_pages, "
    "customers, messages, no_address, error, created_at, ingested_at, canceled_at, updated_at"
)


async def _counts(conn: Conn, keys: list[CampaignKey]) -> dict[CampaignKey, Progress]:
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
            (RATE_WINDOW_S, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
        )
    ).fetchall()
    counts: dict[CampaignKey, dict[str, int]] = {k: {} for k in keys}
    recent: dict[CampaignKey, int] = dict.fromkeys(keys, 0)
    for r in rows:
        key = (r["tenant_id"], int(r["channel_id"]), int(r["campaign_id"]))
        counts[key][r["state"]] = int(r["n"])
        recent[key] += int(r["recent"])
    return {k: compute_progress(counts[k], recent[k]) for k in keys}


def _campaign(row: dict[str, Any], progress: Progress) -> Campaign:
    return Campaign(
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
        progress=progress,
    )


@dataclass(frozen=True)
class CampaignFilter:
    tenant_id: str | None = None
    channel: str | None = None
    status: str | None = None
    paused: bool | None = None
    campaign_id: int | None = None


async def list_campaigns(
    conn: Conn, flt: CampaignFilter, *, after: tuple[datetime, str, int, int] | None, limit: int
) -> list[Campaign]:
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
    keys = [(r["tenant_id"], int(r["channel_id"]), int(r["campaign_id"])) for r in rows]
    progress = await _counts(conn, keys)
    return [_campaign(r, progress[k]) for r, k in zip(rows, keys, strict=True)]


async def _row(
    conn: Conn, tenant_id: str, channel: str, campaign_id: int, *, lock: bool = False
) -> dict[str, Any]:
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM campaigns "
            "WHERE tenant_id = %s AND channel_name = %s AND campaign_id = %s"
            + (" FOR UPDATE" if lock else ""),
            (tenant_id, channel, campaign_id),
        )
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no campaign {campaign_id} on {tenant_id}/{channel}")
    return row


async def get_campaign(conn: Conn, tenant_id: str, channel: str, campaign_id: int) -> CampaignDetail:
    row = await _row(conn, tenant_id, channel, campaign_id)
    key = (row["tenant_id"], int(row["channel_id"]), int(row["campaign_id"]))
    progress = (await _counts(conn, [key]))[key]
    rows = await (
        await conn.execute(
            """SELECT template_id, state::text AS state, count(*) AS n,
                      count(*) FILTER (WHERE state = 'sent'
                                       AND sent_at > now() - make_interval(secs => %s)) AS recent
               FROM messages WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s
               GROUP BY 1, 2 ORDER BY 1""",
            (RATE_WINDOW_S, *key),
        )
    ).fetchall()
    per_template: dict[int, dict[str, int]] = {}
    recent: dict[int, int] = {}
    for r in rows:
        tid = int(r["template_id"])
        per_template.setdefault(tid, {})[r["state"]] = int(r["n"])
        recent[tid] = recent.get(tid, 0) + int(r["recent"])
    failures = await (
        await conn.execute(
            """SELECT coalesce(reason, '(no reason recorded)') AS reason, count(*) AS n FROM messages
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s AND state = 'failed'
               GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20""",
            key,
        )
    ).fetchall()
    return CampaignDetail(
        campaign=_campaign(row, progress),
        templates={tid: compute_progress(c, recent.get(tid, 0)) for tid, c in per_template.items()},
        failures=[(r["reason"], int(r["n"])) for r in failures],
    )


Action = Literal["pause", "resume", "cancel"]


async def act(conn: Conn, tenant_id: str, channel: str, campaign_id: int, action: Action) -> str:
    """Pause/resume set `paused` (the dispatcher honours it). Cancel is what a full cancel from
    Optimove does: status 'canceled' and every pending message canceled, in one transaction.
    Returns what happened; ConflictError for pause/resume of a canceled campaign."""
    async with conn.transaction():
        row = await _row(conn, tenant_id, channel, campaign_id, lock=True)
        key = (tenant_id, int(row["channel_id"]), campaign_id)
        if action == "cancel":
            if row["status"] == "canceled":
                # Pending rows written after an earlier cancel cannot exist (ingest stops on it),
                # but canceling them again is harmless and makes the answer true.
                cur = await conn.execute(
                    """UPDATE messages SET state = 'canceled', reason = %s, updated_at = now()
                       WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s AND state = 'pending'""",
                    (OPERATOR_CANCEL_REASON, *key),
                )
                return f"already canceled; {cur.rowcount} pending message(s) canceled"
            await conn.execute(
                """UPDATE campaigns SET status = 'canceled', canceled_at = now(), cancel_pending = false,
                          updated_at = now()
                   WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
                key,
            )
            cur = await conn.execute(
                """UPDATE messages SET state = 'canceled', reason = %s, updated_at = now()
                   WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s AND state = 'pending'""",
                (OPERATOR_CANCEL_REASON, *key),
            )
            return f"canceled; {cur.rowcount} pending message(s) canceled"
        if row["status"] == "canceled":
            raise ConflictError(f"campaign {campaign_id} on {tenant_id}/{channel} is canceled")
        paused = action == "pause"
        if row["paused"] == paused:
            return "already paused" if paused else "not paused"
        await conn.execute(
            "UPDATE campaigns SET paused = %s, updated_at = now() "
            "WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s",
            (paused, *key),
        )
        return "paused" if paused else "resumed"


async def failure_reasons(
    conn: Conn, keys: list[CampaignKey], top: int = 3
) -> dict[CampaignKey, list[tuple[str, int]]]:
    """The most frequent failure reasons of each campaign (for the list page)."""
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
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], top),
        )
    ).fetchall()
    for r in rows:
        out[(r["tenant_id"], int(r["channel_id"]), int(r["campaign_id"]))].append((r["reason"], int(r["n"])))
    return out

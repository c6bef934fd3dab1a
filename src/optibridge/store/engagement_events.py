"""Signed engagement events: a tenant's reporting mode and token (`tenant_engagement`), and which
(message, metric) pairs went out as events or were too old to go (`engagement_events`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from optibridge.core.engagement_settings import EngagementConfig, ReportingMode, missing_for_mode
from optibridge.core.errors import ConfigError, ConflictError, NotFoundError
from optibridge.core.secretbox import SecretBox
from optibridge.store import report_data
from optibridge.store.report_data import MessageFactRow

Conn = psycopg.AsyncConnection[dict[str, Any]]
EventStatus = Literal["sent", "too_old"]


@dataclass(frozen=True, slots=True)
class EngagementRow:
    """A tenant's stored settings, without the token (see `token`)."""

    mode: ReportingMode
    metric_tenant_id: str | None
    base_url: str | None
    has_token: bool
    updated_at: datetime | None


CLASSIC = EngagementRow("classic", None, None, False, None)


async def get(conn: Conn, tenant_id: str) -> EngagementRow:
    """The tenant's settings; the default (classic, nothing set) when it never set any."""
    row = await (
        await conn.execute(
            "SELECT mode, metric_tenant_id, base_url, token IS NOT NULL AS has_token, updated_at "
            "FROM tenant_engagement WHERE tenant_id = %s",
            (tenant_id,),
        )
    ).fetchone()
    return CLASSIC if row is None else EngagementRow(**row)


async def token(conn: Conn, box: SecretBox, tenant_id: str) -> str | None:
    row = await (
        await conn.execute("SELECT token FROM tenant_engagement WHERE tenant_id = %s", (tenant_id,))
    ).fetchone()
    if row is None or row["token"] is None:
        return None
    value: str = box.decrypt_json(row["token"])["token"]
    return value


async def put(conn: Conn, box: SecretBox, tenant_id: str, config: EngagementConfig) -> EngagementRow:
    """Store the settings as given; a config without a token keeps the stored one.

    ConfigError (nothing stored) if the mode needs a tenant id or a token that is missing."""
    async with conn.transaction():
        current = await (
            await conn.execute(
                "SELECT token IS NOT NULL AS has_token FROM tenant_engagement "
                "WHERE tenant_id = %s FOR UPDATE",
                (tenant_id,),
            )
        ).fetchone()
        has_token = config.token is not None or bool(current and current["has_token"])
        reason = missing_for_mode(config.mode, config.metric_tenant_id, has_token)
        if reason is not None:
            raise ConfigError(f"engagement settings refused: {reason}")
        secret = (
            box.encrypt_json({"token": config.token.get_secret_value()}) if config.token is not None else None
        )
        # UPDATE or INSERT, not INSERT .. ON CONFLICT: the CHECK (a token in events mode) is judged
        # on the row proposed for insertion, before the conflict would keep the stored token.
        params = (config.mode, config.metric_tenant_id, config.base_url, secret, tenant_id)
        if current is not None:
            await conn.execute(
                """UPDATE tenant_engagement SET mode = %s, metric_tenant_id = %s, base_url = %s,
                          token = coalesce(%s, token), updated_at = now()
                   WHERE tenant_id = %s""",
                params,
            )
        else:
            await conn.execute(
                """INSERT INTO tenant_engagement (mode, metric_tenant_id, base_url, token, tenant_id)
                   VALUES (%s, %s, %s, %s, %s)""",
                params,
            )
    return await get(conn, tenant_id)


async def _editable(conn: Conn, tenant_id: str) -> None:
    """NotFoundError, or ConflictError for a tenant the config file defines (the file would undo
    the change at the next start: it is edited there). Locks the tenant row until commit."""
    row = await (
        await conn.execute("SELECT source FROM tenants WHERE id = %s FOR UPDATE", (tenant_id,))
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no tenant {tenant_id!r}")
    if row["source"] == "config":
        raise ConflictError(
            f"tenant {tenant_id!r} is defined in the config file, which would overwrite this change "
            "at the next start; edit the file instead"
        )


async def set_for_tenant(
    conn: Conn, box: SecretBox, tenant_id: str, config: EngagementConfig
) -> EngagementRow:
    """`put` from the API or CLI: only for tenants not defined by the config file."""
    async with conn.transaction():
        await _editable(conn, tenant_id)
        return await put(conn, box, tenant_id, config)


async def clear_for_tenant(conn: Conn, tenant_id: str) -> bool:
    """`remove` from the API or CLI: only for tenants not defined by the config file."""
    async with conn.transaction():
        await _editable(conn, tenant_id)
        return await remove(conn, tenant_id)


async def matches(conn: Conn, box: SecretBox, tenant_id: str, config: EngagementConfig) -> bool:
    """Whether the stored settings are exactly these (token included): a config-file start leaves
    an unchanged tenant untouched."""
    row = await get(conn, tenant_id)
    stored_token = await token(conn, box, tenant_id)
    wanted_token = config.token.get_secret_value() if config.token is not None else None
    return (row.mode, row.metric_tenant_id, row.base_url, stored_token) == (
        config.mode,
        config.metric_tenant_id,
        config.base_url,
        wanted_token,
    )


async def remove(conn: Conn, tenant_id: str) -> bool:
    """Back to classic with nothing stored; whether there was anything."""
    cur = await conn.execute("DELETE FROM tenant_engagement WHERE tenant_id = %s", (tenant_id,))
    return cur.rowcount > 0


async def message_facts(
    conn: Conn, tenant_id: str, channel_id: int, campaign_id: int
) -> AsyncIterator[MessageFactRow]:
    """The campaign's sent-or-final messages with their first events, as `report_data.message_facts`,
    but `reported` lists the MetricIDs already handled as events (sent or too old)."""
    async for row in report_data.message_facts(
        conn, tenant_id, channel_id, campaign_id, progress="engagement_events"
    ):
        yield row


async def record(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    events: Sequence[tuple[uuid.UUID, int, datetime]],
    *,
    status: EventStatus,
    at: datetime,
) -> None:
    """Record (message id, metric id, occurred at) pairs as handled; a pair already handled stays."""
    if not events:
        return
    await conn.execute(
        """INSERT INTO engagement_events
               (message_id, event_id, tenant_id, channel_id, campaign_id, status, occurred_at, recorded_at)
           SELECT mid, eid, %s, %s, %s, %s, occ, %s
           FROM unnest(%s::uuid[], %s::smallint[], %s::timestamptz[]) AS x(mid, eid, occ)
           ON CONFLICT DO NOTHING""",
        (
            tenant_id,
            channel_id,
            campaign_id,
            status,
            at,
            [m for m, _, _ in events],
            [e for _, e, _ in events],
            [o for _, _, o in events],
        ),
    )


async def counts(conn: Conn, tenant_id: str, channel_id: int, campaign_id: int) -> dict[str, int]:
    """How many (message, metric) pairs are in each status for the campaign."""
    rows = await (
        await conn.execute(
            "SELECT status, count(*) AS n FROM engagement_events "
            "WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s GROUP BY status",
            (tenant_id, channel_id, campaign_id),
        )
    ).fetchall()
    return {str(r["status"]): int(r["n"]) for r in rows}

"""Event-14 engagements (Optimove's Scheduled Campaign Integration flow): one row per webhook call.

Keyed by (tenant, channel, EngagementID): a repeated POST finds the row and does nothing. The
customer-supplied decryption key is stored encrypted (the caller passes it through the secret box).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.AsyncConnection[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class EngagementRow:
    tenant_id: str
    channel_id: int
    engagement_id: int
    campaign_id: int
    bucket_name: str
    customers_folder: str
    metadata_path: str
    decryption_key: bytes | None  # encrypted
    status: str
    template_id: int | None
    scheduled_time: datetime | None
    duration_days: int | None
    promotions: list[str]
    tags: list[str]
    number_of_files: int | None
    number_of_customers: int | None
    error: str | None


async def record(
    conn: Conn,
    *,
    tenant_id: str,
    channel_id: int,
    engagement_id: int,
    campaign_id: int,
    bucket_name: str,
    customers_folder: str,
    metadata_path: str,
    encrypted_key: bytes | None,
    payload: dict[str, Any],
) -> bool:
    """Insert the engagement; False if this (tenant, channel, engagement) was recorded already."""
    row = await (
        await conn.execute(
            """INSERT INTO engagements (tenant_id, channel_id, engagement_id, campaign_id, bucket_name,
                                        customers_folder, metadata_path, decryption_key, payload)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (tenant_id, channel_id, engagement_id) DO NOTHING
               RETURNING engagement_id""",
            (
                tenant_id,
                channel_id,
                engagement_id,
                campaign_id,
                bucket_name,
                customers_folder,
                metadata_path,
                encrypted_key,
                Jsonb(payload),
            ),
        )
    ).fetchone()
    return row is not None


def _row(r: dict[str, Any]) -> EngagementRow:
    tid: Decimal | None = r["template_id"]
    return EngagementRow(
        tenant_id=r["tenant_id"],
        channel_id=int(r["channel_id"]),
        engagement_id=int(r["engagement_id"]),
        campaign_id=int(r["campaign_id"]),
        bucket_name=r["bucket_name"],
        customers_folder=r["customers_folder"],
        metadata_path=r["metadata_path"],
        decryption_key=r["decryption_key"],
        status=r["status"],
        template_id=int(tid) if tid is not None else None,  # numeric(20,0): exact
        scheduled_time=r["scheduled_time"],
        duration_days=r["duration_days"],
        promotions=list(r["promotions"]),
        tags=list(r["tags"]),
        number_of_files=r["number_of_files"],
        number_of_customers=r["number_of_customers"],
        error=r["error"],
    )


_COLUMNS = """tenant_id, channel_id, engagement_id, campaign_id, bucket_name, customers_folder,
    metadata_path, decryption_key, status, template_id, scheduled_time, duration_days, promotions,
    tags, number_of_files, number_of_customers, error"""


async def get(conn: Conn, tenant_id: str, channel_id: int, engagement_id: int) -> EngagementRow | None:
    r = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM engagements "
            "WHERE tenant_id = %s AND channel_id = %s AND engagement_id = %s",
            (tenant_id, channel_id, engagement_id),
        )
    ).fetchone()
    return _row(r) if r is not None else None


async def of_campaign(conn: Conn, tenant_id: str, campaign_id: int) -> list[EngagementRow]:
    """The engagements that fed a campaign (any channel), oldest first: shown with the campaign."""
    rows = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM engagements WHERE tenant_id = %s AND campaign_id = %s "
            "ORDER BY created_at, channel_id",
            (tenant_id, campaign_id),
        )
    ).fetchall()
    return [_row(r) for r in rows]


async def restart_failed(conn: Conn, tenant_id: str, channel_id: int, engagement_id: int) -> bool:
    """A failed engagement back to 'received' (its webhook came again); False if it did not fail."""
    row = await (
        await conn.execute(
            """UPDATE engagements SET status = 'received', error = NULL, updated_at = now()
               WHERE tenant_id = %s AND channel_id = %s AND engagement_id = %s AND status = 'failed'
               RETURNING engagement_id""",
            (tenant_id, channel_id, engagement_id),
        )
    ).fetchone()
    return row is not None


async def set_status(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    engagement_id: int,
    status: str,
    error: str | None = None,
) -> None:
    await conn.execute(
        """UPDATE engagements SET status = %s, error = %s, updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND engagement_id = %s""",
        (status, error[:1000] if error else None, tenant_id, channel_id, engagement_id),
    )


async def store_metadata(
    conn: Conn,
    tenant_id: str,
    channel_id: int,
    engagement_id: int,
    *,
    template_id: int,
    template_name: str | None,
    scheduled_time: datetime,
    duration_days: int | None,
    promotions: Sequence[str],
    tags: Sequence[str],
    number_of_files: int,
    number_of_customers: int | None,
    metadata: dict[str, Any],
) -> None:
    """What the metadata file said, and the campaign's reporting window from its Duration."""
    await conn.execute(
        """UPDATE engagements SET template_id = %s, template_name = %s, scheduled_time = %s,
                  duration_days = %s, promotions = %s, tags = %s, number_of_files = %s,
                  number_of_customers = %s, metadata = %s, status = 'ingesting', updated_at = now()
           WHERE tenant_id = %s AND channel_id = %s AND engagement_id = %s""",
        (
            Decimal(template_id),
            template_name,
            scheduled_time,
            duration_days,
            list(promotions),
            list(tags),
            number_of_files,
            number_of_customers,
            Jsonb(metadata),
            tenant_id,
            channel_id,
            engagement_id,
        ),
    )
    if duration_days is not None:
        await conn.execute(
            """UPDATE campaigns c SET report_window_days = %s
               FROM engagements e
               WHERE e.tenant_id = %s AND e.channel_id = %s AND e.engagement_id = %s
                 AND c.tenant_id = e.tenant_id AND c.channel_id = e.channel_id
                 AND c.campaign_id = e.campaign_id""",
            (max(1, min(366, duration_days)), tenant_id, channel_id, engagement_id),
        )

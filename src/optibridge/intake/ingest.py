"""Ingest: page GetCustomerSendDetailsByChannel into one message row per customer and template.

Each page is one transaction: COPY into a staging table, one INSERT ... ON CONFLICT DO NOTHING into
`messages` (the id is a UUIDv5 of the message key), and the campaign's resume point moved past the
page. A crash loses at most the page in flight, which the next run reads again; rows it had already
written are not written twice. Memory holds one page at a time, whatever the campaign's size.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from optibridge.config import address_attribute
from optibridge.intake.schedule import QuietHours, SendTimePolicy, send_time
from optibridge.logs import get_logger
from optibridge.optimove import SendDetail

log = get_logger(__name__)
Conn = psycopg.AsyncConnection[dict[str, Any]]

# Fixed forever: message ids derive from it, and must stay the same across versions and machines.
MESSAGE_NAMESPACE = uuid.UUID("5b0d6c1e-4f3a-5e8b-9a61-0f7b2d3c4e5a")
CONTACT_COLUMN = {"email": "email", "sms": "phone", "push": "device_token", "webhook": None}


def message_id(
    tenant_id: str, channel_id: int, campaign_id: int, customer_id: str, template_id: int
) -> uuid.UUID:
    return uuid.uuid5(
        MESSAGE_NAMESPACE, f"{tenant_id}\x1f{channel_id}\x1f{campaign_id}\x1f{customer_id}\x1f{template_id}"
    )


@dataclass(frozen=True)
class IngestPlan:
    """What to ask Optimove for and how to turn each answer into a row (fixed for a campaign)."""

    tenant_id: str
    channel_id: int
    campaign_id: int
    channel_kind: str
    attributes: tuple[str, ...]
    address_index: int | None
    timezone_index: int | None
    policy: SendTimePolicy

    @property
    def contact_column(self) -> str | None:
        return CONTACT_COLUMN.get(self.channel_kind)


def plan(
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
    channel_kind: str,
    options: dict[str, Any],
    template_attributes: Iterable[str],
    fixed_attributes: Sequence[str] | None = None,
) -> IngestPlan:
    """The attributes to request: the templates' own, plus address and time zone attributes.

    `fixed_attributes` (stored on the campaign at its first page) wins, so a resumed ingest asks for
    the same columns even if templates changed in between.
    """
    address_attr = address_attribute(channel_kind, options.get("address_attribute"))
    tz_attr = options.get("timezone_attribute") or None
    if fixed_attributes is not None:
        names = list(fixed_attributes)
    else:
        names = []
        for name in [address_attr, tz_attr, *options.get("extra_attributes", []), *template_attributes]:
            if name and name.lower() not in {n.lower() for n in names}:
                names.append(name)
    lowered = [n.lower() for n in names]
    quiet = options.get("quiet_hours")
    policy = SendTimePolicy(
        local_send_time=bool(options.get("local_send_time")),
        reference_zone=ZoneInfo(options.get("reference_timezone") or "UTC"),
        quiet_hours=QuietHours.parse(quiet) if quiet else None,
    )
    return IngestPlan(
        tenant_id=tenant_id,
        channel_id=channel_id,
        campaign_id=campaign_id,
        channel_kind=channel_kind,
        attributes=tuple(names),
        address_index=lowered.index(address_attr.lower())
        if address_attr and address_attr.lower() in lowered
        else None,
        timezone_index=lowered.index(tz_attr.lower()) if tz_attr and tz_attr.lower() in lowered else None,
        policy=policy,
    )


Row = tuple[uuid.UUID, str, int, datetime, datetime, str | None, str]


def build_rows(p: IngestPlan, details: Sequence[SendDetail]) -> list[Row]:
    """Rows for the staging COPY: id, customer, template, scheduled, send_at, address, attrs JSON."""
    rows: list[Row] = []
    times: dict[tuple[datetime, str | None], datetime] = {}
    names = p.attributes
    identity = p.policy.is_identity
    prefix = f"{p.tenant_id}\x1f{p.channel_id}\x1f{p.campaign_id}\x1f"
    for d in details:
        values = d.attributes
        address = None
        if p.address_index is not None and p.address_index < len(values):
            address = values[p.address_index].strip() or None
        if identity:
            at = d.scheduled_time
        else:
            zone = (
                values[p.timezone_index]
                if p.timezone_index is not None and p.timezone_index < len(values)
                else None
            )
            key = (d.scheduled_time, zone)
            at = times.get(key) or times.setdefault(key, send_time(d.scheduled_time, zone, p.policy))
        attrs = json.dumps(dict(zip(names, values, strict=False)), separators=(",", ":"), ensure_ascii=False)
        mid = uuid.uuid5(MESSAGE_NAMESPACE, f"{prefix}{d.customer_id}\x1f{d.template_id}")
        rows.append((mid, d.customer_id, d.template_id, d.scheduled_time, at, address, attrs))
    return rows


STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    id uuid, customer_id text, template_id integer, scheduled_at timestamptz, send_at timestamptz,
    address text, attrs jsonb
) ON COMMIT DELETE ROWS
"""


@dataclass(frozen=True)
class PageResult:
    inserted: int
    no_address: int
    canceled: bool  # the campaign was canceled meanwhile: stop reading


async def write_page(conn: Conn, p: IngestPlan, skip: int, rows: list[Row]) -> PageResult:
    """One page, one transaction: rows in, resume point moved. Caller holds no transaction."""
    contact = p.contact_column
    address_sql = f"COALESCE(s.address, NULLIF(ct.{contact}, ''))" if contact else "s.address"
    async with conn.transaction():
        state = await (
            await conn.execute(
                "SELECT status, ingest_skip FROM campaigns "
                "WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s FOR UPDATE",
                (p.tenant_id, p.channel_id, p.campaign_id),
            )
        ).fetchone()
        if state is None or state["status"] == "canceled":
            return PageResult(0, 0, canceled=True)
        if int(state["ingest_skip"]) != skip:
            # Another run got here first (should not happen under the job lock): its rows stand.
            log.warning("ingest: resume point moved under us", stored=state["ingest_skip"], ours=skip)
            return PageResult(0, 0, canceled=False)
        await conn.execute(STAGING_DDL)
        async with conn.cursor().copy(
            "COPY ingest_staging (id, customer_id, template_id, scheduled_at, send_at, address, attrs) "
            "FROM STDIN"
        ) as copy:
            for row in rows:
                await copy.write_row(row)
        counts = await (
            await conn.execute(
                f"""WITH ins AS (
                      INSERT INTO messages (id, tenant_id, channel_id, campaign_id, customer_id, template_id,
                                            scheduled_at, send_at, address, attrs, state, reason)
                      SELECT s.id, %(t)s, %(ch)s, %(c)s, s.customer_id, s.template_id, s.scheduled_at,
                             s.send_at, {address_sql}, s.attrs,
                             CASE WHEN cc.customer_id IS NOT NULL THEN 'canceled'
                                  WHEN {address_sql} IS NULL THEN 'failed'
                                  ELSE 'pending' END::message_state,
                             CASE WHEN cc.customer_id IS NOT NULL THEN 'canceled by Optimove'
                                  WHEN {address_sql} IS NULL THEN 'no address' END
                      FROM ingest_staging s
                      LEFT JOIN contacts ct ON ct.tenant_id = %(t)s AND ct.customer_id = s.customer_id
                      LEFT JOIN campaign_cancellations cc
                             ON cc.tenant_id = %(t)s AND cc.campaign_id = %(c)s
                            AND cc.customer_id = s.customer_id
                      ON CONFLICT (id) DO NOTHING
                      RETURNING state)
                    SELECT count(*) AS inserted,
                           count(*) FILTER (WHERE state = 'failed') AS no_address
                    FROM ins""",
                {"t": p.tenant_id, "ch": p.channel_id, "c": p.campaign_id},
            )
        ).fetchone()
        assert counts is not None
        inserted, no_address = int(counts["inserted"]), int(counts["no_address"])
        await conn.execute(
            """UPDATE campaigns SET ingest_skip = %s, ingest_pages = ingest_pages + 1,
                      customers = customers + %s, messages = messages + %s,
                      no_address = no_address + %s, updated_at = now()
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
            (skip + len(rows), len(rows), inserted, no_address, p.tenant_id, p.channel_id, p.campaign_id),
        )
    return PageResult(inserted, no_address, canceled=False)

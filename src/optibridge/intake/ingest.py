"""Ingest: page GetCustomerSendDetailsByChannel into one message row per customer and template.

Each page is one transaction: COPY into a staging table, one INSERT ... ON CONFLICT DO NOTHING into
`messages` (the id is a UUIDv5 of the message key), and the campaign's resume point moved past the
page. A crash loses at most the page in flight, which the next run reads again; rows it had already
written are not written twice. Memory holds one page at a time, whatever the campaign's size.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from optibridge.core.config import address_attribute
from optibridge.core.logs import get_logger
from optibridge.core.quiet_hours import QuietHours
from optibridge.intake.schedule import SendTimePolicy, send_time
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


# COPY text format: backslash, tab and line ends inside a value must be escaped.
_COPY_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_JSON_STR = json.encoder.encode_basestring
_NAMESPACE_BYTES = MESSAGE_NAMESPACE.bytes


@dataclass(frozen=True)
class PageRows:
    """One page as COPY text (tenant, channel, campaign, id, customer, template, scheduled, send_at,
    address, attrs), built without an object per row: this loop runs a million times a campaign."""

    copy_text: str
    count: int
    unaddressed: int


def _copy_text(value: str) -> str:
    # Most values need no escaping; checking first is cheaper than translating every one.
    if value.isprintable() and "\\" not in value:
        return value
    return value.translate(_COPY_ESCAPE)


def build_rows(p: IngestPlan, details: Sequence[SendDetail]) -> PageRows:
    lines: list[str] = []
    append = lines.append
    times: dict[tuple[datetime, str | None], str] = {}
    stamps: dict[datetime, str] = {}
    keys = [_JSON_STR(n) + ":" for n in p.attributes]
    identity = p.policy.is_identity
    head = f"{p.tenant_id}\x1f{p.channel_id}\x1f{p.campaign_id}\x1f"
    lead = f"{_copy_text(p.tenant_id)}\t{p.channel_id}\t{p.campaign_id}\t"
    address_index, tz_index = p.address_index, p.timezone_index
    json_str, sha1, ns = _JSON_STR, hashlib.sha1, _NAMESPACE_BYTES
    unaddressed = 0
    for d in details:
        values = d.attributes
        n = len(values)
        address = values[address_index].strip() if address_index is not None and address_index < n else ""
        if not address:
            unaddressed += 1
        when = d.scheduled_time
        scheduled = stamps.get(when)
        if scheduled is None:
            scheduled = stamps[when] = when.isoformat()
        if identity:
            at = scheduled
        else:
            zone = values[tz_index] if tz_index is not None and tz_index < n else None
            key = (when, zone)
            at = times.get(key) or times.setdefault(key, send_time(when, zone, p.policy).isoformat())
        # JSON strings never hold raw tabs or line ends; only their backslashes need COPY escaping.
        attrs = "{" + ",".join([k + json_str(v) for k, v in zip(keys, values, strict=False)]) + "}"
        if "\\" in attrs:
            attrs = attrs.replace("\\", "\\\\")
        customer = d.customer_id
        tid = d.template_id
        # RFC 4122 version 5, inline: a UUID object per row costs more than the hash itself.
        h = bytearray(sha1(ns + f"{head}{customer}\x1f{tid}".encode()).digest()[:16])
        h[6] = (h[6] & 0x0F) | 0x50
        h[8] = (h[8] & 0x3F) | 0x80
        append(
            f"{lead}{h.hex()}\t{_copy_text(customer)}\t{tid}\t{scheduled}\t{at}\t"
            f"{_copy_text(address) if address else chr(92) + 'N'}\t{attrs}\n"
        )
    return PageRows("".join(lines), len(lines), unaddressed)


COPY_COLUMNS = (
    "tenant_id, channel_id, campaign_id, id, customer_id, template_id, scheduled_at, send_at, address, attrs"
)
STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    tenant_id text, channel_id integer, campaign_id bigint, id uuid, customer_id text, template_id integer,
    scheduled_at timestamptz, send_at timestamptz, address text, attrs jsonb
) ON COMMIT DELETE ROWS
"""


@dataclass(frozen=True)
class PageResult:
    inserted: int
    no_address: int
    canceled: bool  # the campaign was canceled meanwhile: stop reading


async def _copy(conn: Conn, table: str, text: str) -> None:
    async with conn.cursor().copy(f"COPY {table} ({COPY_COLUMNS}) FROM STDIN") as copy:
        await copy.write(text.encode())


async def write_page(conn: Conn, p: IngestPlan, skip: int, page: PageRows) -> PageResult:
    """One page, one transaction: rows in, resume point moved. Caller holds no transaction.

    Fast path: when every row has its address and nobody was canceled, COPY straight into
    `messages` (a page is committed whole or not at all, so its rows are new unless Optimove repeats
    a customer); a unique violation rolls back to a savepoint and the page takes the general path:
    a staging table and INSERT ... ON CONFLICT DO NOTHING, with contacts and cancellations applied.
    """
    async with conn.transaction():
        state = await (
            await conn.execute(
                """SELECT status, ingest_skip FROM campaigns
                   WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s FOR UPDATE""",
                (p.tenant_id, p.channel_id, p.campaign_id),
            )
        ).fetchone()
        if state is None or state["status"] == "canceled":
            return PageResult(0, 0, canceled=True)
        if int(state["ingest_skip"]) != skip:
            # Another run got here first (should not happen under the job lock): its rows stand.
            log.warning("ingest: resume point moved under us", stored=state["ingest_skip"], ours=skip)
            return PageResult(0, 0, canceled=False)
        # A statement of its own, after the lock: a cancel job that held the lock has committed by
        # now, and only a new statement's snapshot sees its rows (a subquery in the locking
        # statement would still see the world from before the wait).
        partly = await (
            await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM campaign_cancellations WHERE tenant_id = %s "
                "AND campaign_id = %s) AS yes",
                (p.tenant_id, p.campaign_id),
            )
        ).fetchone()
        partly_canceled = bool(partly and partly["yes"])
        inserted = no_address = -1
        if page.unaddressed == 0 and not partly_canceled:
            try:
                async with conn.transaction():
                    await _copy(conn, "messages", page.copy_text)
                inserted, no_address = page.count, 0
            except psycopg.errors.UniqueViolation:
                log.info("ingest: page repeats known messages; taking the de-duplicating path")
        if inserted < 0:
            inserted, no_address = await _insert_general(conn, p, page, partly_canceled)
        await conn.execute(
            """UPDATE campaigns SET ingest_skip = %s, ingest_pages = ingest_pages + 1,
                      customers = customers + %s, messages = messages + %s,
                      no_address = no_address + %s, updated_at = now()
               WHERE tenant_id = %s AND channel_id = %s AND campaign_id = %s""",
            (skip + page.count, page.count, inserted, no_address, p.tenant_id, p.channel_id, p.campaign_id),
        )
    return PageResult(inserted, no_address, canceled=False)


async def _insert_general(
    conn: Conn, p: IngestPlan, page: PageRows, partly_canceled: bool
) -> tuple[int, int]:
    contact = p.contact_column
    # Contacts are looked up per row only where Optimove gave no address: a join would scan the
    # whole contacts table for every page (measured: half the ingest rate at 500k contacts).
    address_sql = (
        "CASE WHEN s.address IS NOT NULL THEN s.address ELSE (SELECT NULLIF(ct." + contact + ", '') "
        "FROM contacts ct WHERE ct.tenant_id = %(t)s AND ct.customer_id = s.customer_id) END"
        if contact
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
    await _copy(conn, "ingest_staging", page.copy_text)
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
                              WHEN addr IS NULL THEN 'failed'
                              ELSE 'pending' END::message_state,
                         CASE WHEN canceled THEN 'canceled by Optimove'
                              WHEN addr IS NULL THEN 'no address' END
                  FROM src
                  ON CONFLICT (id) DO NOTHING
                  RETURNING state)
                SELECT count(*) AS inserted,
                       count(*) FILTER (WHERE state = 'failed') AS no_address
                FROM ins""",
            {"t": p.tenant_id, "c": p.campaign_id},
        )
    ).fetchone()
    assert counts is not None
    return int(counts["inserted"]), int(counts["no_address"])

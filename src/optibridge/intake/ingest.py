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
from optibridge.core.text import ID_BAD as _ID_BAD
from optibridge.core.text import address_refused, clean_attribute_values
from optibridge.intake.schedule import SendTimePolicy, send_time
from optibridge.optimove import SendDetail
from optibridge.store import campaigns as campaign_store
from optibridge.store import messages as message_store
from optibridge.store import templates as template_store
from optibridge.store.messages import CONTACT_COLUMN

log = get_logger(__name__)
Conn = psycopg.AsyncConnection[dict[str, Any]]

# Fixed forever: message ids derive from it, and must stay the same across versions and machines.
MESSAGE_NAMESPACE = uuid.UUID("5b0d6c1e-4f3a-5e8b-9a61-0f7b2d3c4e5a")


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


# Control characters in customer data: the rules and their reasons are in optibridge.core.text,
# shared with the contacts import.
NUL_REASON = "customer data holds a NUL character (\\u0000); not sent"
ADDRESS_CONTROL_REASON = "address holds a control character; not sent"


# COPY text format: backslash, tab and line ends inside a value must be escaped.
_COPY_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_JSON_STR = json.encoder.encode_basestring
_NAMESPACE_BYTES = MESSAGE_NAMESPACE.bytes


async def plan_at_start(
    conn: psycopg.AsyncConnection[dict[str, Any]],
    start: campaign_store.IngestStart,
    tenant_id: str,
    channel_id: int,
    campaign_id: int,
) -> IngestPlan:
    """The plan of a campaign's ingest, new or resumed, whichever path it came by (listener or
    event 14): the attributes the channel's live templates use, fixed on the campaign at the
    first page so that a resumed ingest writes the same columns as before."""
    skip = start.ingest_skip
    used = await template_store.live_attributes(conn, tenant_id, start.channel_name)
    p = plan(
        tenant_id,
        channel_id,
        campaign_id,
        start.channel_kind,
        start.channel_options,
        used,
        fixed_attributes=start.attributes if skip > 0 else None,
    )
    if skip == 0:
        await campaign_store.fix_attributes(conn, tenant_id, channel_id, campaign_id, list(p.attributes))
    return p


@dataclass(frozen=True)
class PageRows:
    """One page as COPY text (the columns of `store.messages.COPY_COLUMNS`: tenant, channel,
    campaign, id, customer, template, scheduled, send_at, address, attrs), built without an object
    per row: this loop runs a million times a campaign."""

    copy_text: str
    count: int
    unaddressed: int
    invalid: int = 0  # rows failed at ingest, with their reason (e.g. shifted legacy attributes)
    cleaned: int = 0  # rows sent with control characters stripped from their attribute values


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
    unaddressed = invalid = cleaned = 0
    null = chr(92) + "N"
    nul_reason, address_reason = _copy_text(NUL_REASON), _copy_text(ADDRESS_CONTROL_REASON)
    for d in details:
        values = d.attributes
        reason = null
        if d.problem is not None:
            invalid += 1
            reason = _copy_text(d.problem)
        n = len(values)
        address = values[address_index].strip() if address_index is not None and address_index < n else ""
        # isprintable() first: one C call clears nearly every row; the regexes run only for the rest.
        refused = not address.isprintable() and address_refused(address)
        if refused:
            if reason == null:
                invalid += 1
                reason = address_reason
            address = ""
        if not " ".join(values).isprintable():
            stripped = clean_attribute_values(values)
            if stripped is not None:
                values = stripped
                cleaned += reason == null  # only rows that will be sent count as sent cleaned
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
        if reason != null:
            attrs = "{}"  # a row that is not sent keeps none of the customer's data
        customer = d.customer_id
        if not customer.isprintable() and _ID_BAD.search(customer):
            # PostgreSQL stores no NUL, and a lone surrogate cannot even be encoded: one customer's
            # would fail the whole page (the whole campaign, once). That customer alone is failed.
            if reason == null:
                invalid += 1
            reason = nul_reason
            attrs, address, customer = "{}", "", _ID_BAD.sub("\ufffd", customer)
        if "\\" in attrs:
            attrs = attrs.replace("\\", "\\\\")
        tid = d.template_id
        # RFC 4122 version 5, inline: a UUID object per row costs more than the hash itself.
        # surrogatepass: the same bytes as before for every valid id, and no crash on a lone surrogate.
        h = bytearray(
            sha1(ns + f"{head}{d.customer_id}\x1f{tid}".encode("utf-8", "surrogatepass")).digest()[:16]
        )
        h[6] = (h[6] & 0x0F) | 0x50
        h[8] = (h[8] & 0x3F) | 0x80
        append(
            f"{lead}{h.hex()}\t{_copy_text(customer)}\t{tid}\t{scheduled}\t{at}\t"
            f"{_copy_text(address) if address else null}\t{attrs}\t{reason}\n"
        )
    return PageRows("".join(lines), len(lines), unaddressed, invalid, cleaned)


@dataclass(frozen=True)
class PageResult:
    inserted: int
    no_address: int
    canceled: bool  # the campaign was canceled meanwhile: stop reading


async def write_page(conn: Conn, p: IngestPlan, skip: int, page: PageRows) -> PageResult:
    """One page, one transaction: rows in, resume point moved. Caller holds no transaction.

    Fast path: when every row has its address and nobody was canceled, COPY straight into
    `messages` (a page is committed whole or not at all, so its rows are new unless Optimove repeats
    a customer); a unique violation rolls back to a savepoint and the page takes the general path:
    a staging table and INSERT ... ON CONFLICT DO NOTHING, with contacts and cancellations applied.
    """
    async with conn.transaction():
        state = await campaign_store.lock_for_page(conn, p.tenant_id, p.channel_id, p.campaign_id)
        if state is None or state.status == "canceled":
            return PageResult(0, 0, canceled=True)
        if state.ingest_skip != skip:
            # Another run got here first (should not happen under the job lock): its rows stand.
            log.warning("ingest: resume point moved under us", stored=state.ingest_skip, ours=skip)
            return PageResult(0, 0, canceled=False)
        # A statement of its own, after the lock (see `has_cancellations`).
        partly_canceled = await campaign_store.has_cancellations(conn, p.tenant_id, p.campaign_id)
        inserted = no_address = -1
        if page.unaddressed == 0 and page.invalid == 0 and not partly_canceled:
            try:
                async with conn.transaction():
                    await message_store.copy_page(conn, page.copy_text)
                inserted, no_address = page.count, 0
            except psycopg.errors.UniqueViolation:
                log.info("ingest: page repeats known messages; taking the de-duplicating path")
        if inserted < 0:
            inserted, no_address = await message_store.insert_page(
                conn,
                p.tenant_id,
                p.campaign_id,
                page.copy_text,
                contact_column=p.contact_column,
                partly_canceled=partly_canceled,
            )
        await campaign_store.advance_ingest(
            conn,
            p.tenant_id,
            p.channel_id,
            p.campaign_id,
            skip_to=skip + page.count,
            customers=page.count,
            inserted=inserted,
            no_address=no_address,
        )
    return PageResult(inserted, no_address, canceled=False)

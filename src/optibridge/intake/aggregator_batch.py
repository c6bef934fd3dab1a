"""An aggregator campaign batch (reference §12), read into message rows: pure functions, no I/O.

A batch that is not a batch (not an object, no batchId/requestId/campaignId, recipients not a list)
is refused whole with the reason (400). Inside a good batch, one bad recipient (no customer id, no
usable number, empty text, control characters) never fails the others: it becomes a failed
message with its reason (when it has a customer id to hang it on) and an ingest note on the
campaign, and the rest are sent.

The text is Optimove's, already personalised: it travels as the message attribute `message` and the
channel's built-in template (`{{ message }}`, id `PREPARED_TEMPLATE_ID`) renders it verbatim: SMS
parts are rendered without any escaping (rendering: autoescape only for HTML parts).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from optibridge.catalog.models import RESERVED_TEMPLATE_ID
from optibridge.intake.ingest import message_id
from optibridge.store.aggregator import NewMessage

PREPARED_TEMPLATE_ID = RESERVED_TEMPLATE_ID  # 2^31 - 1: no tenant template may take it
PREPARED_TEMPLATE_NAME = "optibridge: aggregator prepared text"
PREPARED_TEMPLATE_BODY = "{{ message }}"
FIRST_EVENT = 0  # campaigns.first_event for a campaign known from an aggregator batch, not a listener event
MAX_RECIPIENTS = 10_000
MAX_TEXT = 5_000  # characters; a concatenated SMS tops out far below (about 10 x 153)
MAX_ID = 200
MAX_NOTES = 20
# Seconds or milliseconds since the epoch (UNCONFIRMED): below this a value is seconds (until 5138).
_MS_THRESHOLD = 100_000_000_000
_NUMBER = re.compile(r"\+?[0-9][0-9 ().\-]{3,31}")
_NUMBER_NOISE = re.compile(r"[ ().\-]")


class InvalidBatch(ValueError):
    """The body is not an aggregator batch; nothing of it is stored."""


@dataclass(frozen=True)
class Batch:
    batch_id: str
    request_id: str
    campaign_id: int
    sender_id: str | None
    metadata: dict[str, Any]
    scheduled_at: datetime
    rows: list[NewMessage]
    recipients: int
    notes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.rows if r.reason is None)


def _ident(value: object, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidBatch(f"{name} must be a string or a number")
    text = str(value).strip()
    if not text or len(text) > MAX_ID or not text.isprintable():
        raise InvalidBatch(f"{name} must be 1-{MAX_ID} printable characters")
    return text


def _campaign_id(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise InvalidBatch("metadata.campaignId must be a positive integer")
    return value


def scheduled_time(value: object, now: datetime) -> datetime:
    """metadata.scheduledTime (a long: UNCONFIRMED unit): milliseconds when it is that large,
    else seconds; missing or unreadable: now (the batch is due at once)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return now
    seconds = value / 1000 if value >= _MS_THRESHOLD else float(value)
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return now


def normalise_number(value: object) -> str | None:
    """A phone number as the provider is given it (spaces, dots, dashes, brackets dropped), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not _NUMBER.fullmatch(text):
        return None
    number = _NUMBER_NOISE.sub("", text)
    return number if 4 <= len(number.lstrip("+")) <= 20 else None


def text_problem(value: object) -> str | None:
    """Why a recipient's message cannot be sent, or None. Line breaks are text; other control
    characters (NUL, ESC, ...) are not."""
    if not isinstance(value, str) or not value.strip():
        return "empty message text"
    if len(value) > MAX_TEXT:
        return f"message text longer than {MAX_TEXT} characters"
    for ch in value:
        if ch in "\n\r":
            continue
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return "message text holds a control character"
    return None


def _sender(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidBatch("senderId must be a string")
    text = str(value).strip()
    if len(text) > 64 or not text.isprintable():
        raise InvalidBatch("senderId must be at most 64 printable characters")
    return text or None


def parse(body: object, tenant_id: str, channel_id: int, now: datetime) -> Batch:
    """The batch's rows and notes; InvalidBatch when the body is not a batch at all."""
    if not isinstance(body, dict):
        raise InvalidBatch("body must be a JSON object")
    batch_id = _ident(body.get("batchId"), "batchId")
    request_id = _ident(body.get("requestId", batch_id), "requestId")
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        raise InvalidBatch("metadata must be an object")
    campaign_id = _campaign_id(metadata.get("campaignId"))
    recipients = body.get("recipients")
    if not isinstance(recipients, list):
        raise InvalidBatch("recipients must be a list")
    if len(recipients) > MAX_RECIPIENTS:
        raise InvalidBatch(f"more than {MAX_RECIPIENTS} recipients in one batch")
    sender_id = _sender(body.get("senderId"))
    notes: list[str] = []
    bad: dict[str, int] = {}

    def note(reason: str) -> None:
        bad[reason] = bad.get(reason, 0) + 1

    other_channel = metadata.get("channelId")
    if other_channel is not None and str(other_channel) != str(channel_id):
        notes.append(f"batch {batch_id}: metadata.channelId {str(other_channel)[:20]} is not {channel_id}")
    rows: list[NewMessage] = []
    seen: set[str] = set()
    for item in recipients:
        if not isinstance(item, dict):
            note("recipient is not an object")
            continue
        raw_customer = item.get("customerId")
        if isinstance(raw_customer, bool) or not isinstance(raw_customer, str | int):
            note("recipient without customerId")
            continue
        customer = str(raw_customer).strip()
        if not customer or len(customer) > MAX_ID or not customer.isprintable():
            note("recipient with an unusable customerId")
            continue
        if customer in seen:
            note("customer listed twice in the batch (sent once)")
            continue
        seen.add(customer)
        number = normalise_number(item.get("mobileNumber"))
        problem = text_problem(item.get("message"))
        if number is None:
            problem = "no usable mobileNumber"
        if problem is not None:
            note(problem)
        mid = message_id(tenant_id, channel_id, campaign_id, customer, PREPARED_TEMPLATE_ID)
        raw_number = item.get("mobileNumber")
        echoed = str(raw_number)[:64] if isinstance(raw_number, str | int) else ""
        attrs = {"message": str(item.get("message")), "sender_id": sender_id or ""}
        rows.append(NewMessage(mid, customer, number or echoed, attrs, problem))
    for reason, count in sorted(bad.items()):
        notes.append(f"batch {batch_id}: {count} recipient(s): {reason}")
    return Batch(
        batch_id=batch_id,
        request_id=request_id,
        campaign_id=campaign_id,
        sender_id=sender_id,
        metadata=metadata,
        scheduled_at=scheduled_time(metadata.get("scheduledTime"), now),
        rows=rows,
        recipients=len(recipients),
        notes=notes[:MAX_NOTES],
    )

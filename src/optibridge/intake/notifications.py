"""What a listener notification says, parsed and checked without I/O.

Optimove's payload casing is not documented for every event (see docs/optimove-api-notes.md), so
keys are matched case-insensitively (`EventTypeID`, `eventTypeId`) and numbers may arrive as strings.
A notification is refused (400) only when what it needs cannot be read: the event type, the
campaign of a campaign event, the channel of event 13 when the listener URL names none, the
clearance time of a hold. Optimove does not resend after our 400, so an unreadable optional field
(a `TimeStamp` of `19/07/2022 08:54`) never costs the campaign: it is stored as null and named in
`problems`, which the listener logs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class EventType(enum.IntEnum):
    CAMPAIGN_PROCESSED = 1
    DAILY_CAMPAIGNS_PROCESSED = 2
    DAILY_PROCESS_COMPLETE = 3
    CAMPAIGN_CANCELED = 4
    CAMPAIGN_ON_HOLD = 5
    CHANNEL_EXECUTED = 13


# Events that name a campaign, and so need a CampaignID.
CAMPAIGN_EVENTS = frozenset(
    {
        EventType.CAMPAIGN_PROCESSED,
        EventType.CAMPAIGN_CANCELED,
        EventType.CAMPAIGN_ON_HOLD,
        EventType.CHANNEL_EXECUTED,
    }
)
MAX_ID = 2**63 - 1


class InvalidNotification(ValueError):
    """The body is not a notification we understand; the message says why (for the 400 reply)."""


@dataclass(frozen=True, slots=True)
class Notification:
    event_type: EventType
    campaign_id: int | None
    channel_id: int | None
    timestamp: datetime | None
    clearance_required_by: datetime | None
    problems: tuple[str, ...] = ()  # optional fields that could not be read (stored as null)


def parse_optimove_time(value: str) -> datetime:
    """`YYYY-MM-DD HH:MM[:SS]` (or ISO 8601) as UTC; naive values are UTC by Optimove's rule."""
    text = value.strip().replace("T", " ").removesuffix("Z")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S.%f"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidNotification(f"unreadable date-time {value[:40]!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def whole_number(value: Any, maximum: int) -> int | str:
    """A positive whole number as Optimove may send one (a JSON number, a string of digits, a
    float with no fraction; never a boolean), or why it is not one (pure; the caller names the
    field and raises its own error)."""
    if isinstance(value, bool):
        return "must be a whole number"
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        return "must be a whole number"
    return number if 0 < number <= maximum else "out of range"


def _int(name: str, value: Any) -> int:
    number = whole_number(value, MAX_ID)
    if isinstance(number, str):
        raise InvalidNotification(f"{name} {number}")
    return number


def parse(body: Any, *, channel_known: bool = False) -> Notification:
    """Read a notification; `channel_known`: the listener URL names the channel."""
    if not isinstance(body, dict):
        raise InvalidNotification("the body must be a JSON object")
    fields = {str(k).lower(): v for k, v in body.items()}
    if "eventtypeid" not in fields:
        raise InvalidNotification("EventTypeID is missing")
    raw_type = _int("EventTypeID", fields["eventtypeid"])
    try:
        event_type = EventType(raw_type)
    except ValueError:
        raise InvalidNotification(f"EventTypeID {raw_type} is not one we handle") from None
    campaign_id = None
    if fields.get("campaignid") is not None:
        campaign_id = _int("CampaignID", fields["campaignid"])
    elif event_type in CAMPAIGN_EVENTS:
        raise InvalidNotification(f"CampaignID is missing (EventTypeID {raw_type})")
    problems: list[str] = []
    channel_id = None
    if fields.get("channelid") is not None:
        try:
            channel_id = _int("ChannelID", fields["channelid"])
        except InvalidNotification as exc:
            if event_type is EventType.CHANNEL_EXECUTED and not channel_known:
                raise
            problems.append(f"{exc}; ignored")
    timestamp = None
    raw_time = fields.get("timestamp")
    if raw_time is not None and raw_time != "":
        try:
            if not isinstance(raw_time, str):
                raise InvalidNotification("TimeStamp must be a string")
            timestamp = parse_optimove_time(raw_time) if raw_time.strip() else None
        except InvalidNotification as exc:
            problems.append(f"TimeStamp: {exc}; stored as null")
    clearance = None
    if event_type is EventType.CAMPAIGN_ON_HOLD:
        raw = fields.get("clearancerequiredby")
        if not isinstance(raw, str) or not raw.strip():
            raise InvalidNotification("ClearanceRequiredBy is missing (EventTypeID 5)")
        clearance = parse_optimove_time(raw)
    return Notification(event_type, campaign_id, channel_id, timestamp, clearance, tuple(problems))

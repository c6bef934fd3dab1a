"""Typed values sent to and returned by the Optimove API.

Plain slotted dataclasses rather than pydantic models: ingest builds a million `SendDetail`s per
large campaign and per-row validation would cost more than the HTTP transfer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any


class EventType(IntEnum):
    """Listener event types (optimove-api.md §4.1)."""

    CAMPAIGN_PROCESSED = 1
    ALL_CAMPAIGNS_PROCESSED = 2
    DAILY_PROCESS_COMPLETE = 3
    CAMPAIGN_CANCELED = 4
    CLEARANCE_REQUIRED = 5
    REALTIME_TRIGGER = 11
    CAMPAIGN_EXECUTED_ON_CHANNEL = 13


class MetricID(IntEnum):
    """UpdateCampaignMetrics MetricIDs gathered from client code (§9.1; no official table)."""

    SENT = 0
    DELIVERED = 1
    OPENED = 2
    CLICKED = 3
    UNSUBSCRIBED = 4
    DROPPED = 5
    SPAM_REPORTS = 6
    BOUNCED = 9


@dataclass(frozen=True, slots=True)
class SendDetail:
    """One customer of a campaign on a channel: who, which template, when.

    `attributes` holds the requested customer attributes in the order they were requested;
    `SendDetailsPage.attribute_names` names them.
    """

    customer_id: str
    template_id: int
    scheduled_time: datetime
    attributes: tuple[str, ...] = ()
    # Why this row's attributes cannot be trusted (then `attributes` is empty): the row fails
    # alone, with this reason, instead of sending with values shifted into the wrong names.
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class SendDetailsPage:
    """One page of GetCustomerSendDetailsByChannel, with where it starts in the campaign."""

    campaign_id: int
    channel_id: int
    skip: int
    top: int
    attribute_names: tuple[str, ...]
    rows: list[SendDetail]

    def __len__(self) -> int:
        return len(self.rows)

    def attribute_dict(self, row: SendDetail) -> dict[str, str]:
        """The row's attributes keyed by name (convenient, not for hot loops)."""
        return dict(zip(self.attribute_names, row.attributes, strict=False))


@dataclass(frozen=True, slots=True)
class EventListener:
    event_type_id: int
    listener_url: str
    channel_id: int | None = None


@dataclass(frozen=True, slots=True)
class ChannelTemplate:
    template_id: int
    template_name: str


@dataclass(frozen=True, slots=True)
class ChannelApp:
    app_id: str
    app_name: str


@dataclass(frozen=True, slots=True)
class CampaignMetric:
    """One UpdateCampaignMetrics item. optibridge sends running totals (see the API notes)."""

    campaign_id: int
    channel_id: int
    template_id: int
    metric_id: int
    metric_value: float


@dataclass(frozen=True, slots=True)
class ExecutionChannel:
    channel_id: int
    channel_name: str


@dataclass(frozen=True, slots=True)
class CanceledCustomer:
    customer_id: str
    action_id: str
    promo_code: str | None = None


@dataclass(frozen=True, slots=True)
class CampaignDetails:
    """GetCampaignDetails: the fields optibridge uses, typed; everything else in `raw`."""

    campaign_id: int
    channel_ids: tuple[int, ...] = ()
    duration_days: int | None = None
    lead_time_days: int | None = None
    status: str | None = None
    campaign_type: str | None = None
    target_group_id: int | None = None
    tags: tuple[str, ...] = ()
    notes: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

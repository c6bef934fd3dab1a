"""Settings of the feedback side: process-wide (`FeedbackSettings`) and per channel (`FeedbackOptions`).

Both are plain pydantic models with defaults so the service runs without any of them set; the
application settings surface them (`Settings.feedback`, `ChannelOptions.feedback`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DeliveredFrom = Literal["receipts", "sent"]

# Kinds whose channels usually get no delivery receipt: "delivered" is then sent minus bounced.
_DEFAULT_DELIVERED_FROM: dict[str, DeliveredFrom] = {
    "email": "sent",
    "sms": "receipts",
    "push": "sent",
    "webhook": "sent",
}


class FeedbackSettings(BaseModel):
    """Process-wide settings of the tracking and receipt endpoints."""

    model_config = ConfigDict(extra="forbid")

    min_human_delay_s: float = Field(
        default=5.0,
        ge=0,
        description="Opens/clicks sooner than this after the message was rendered are flagged as "
        "machine prefetch (mail scanners) and not counted",
    )
    flush_interval_ms: int = Field(
        default=50,
        ge=0,
        le=1000,
        description="Tracking hits are written in batches at most this old (0: one write per hit). "
        "A crash loses at most this window of hits",
    )
    buffer_max_events: int = Field(
        default=20_000, ge=1, description="Above this many unwritten hits, requests wait for the writer"
    )
    max_receipt_events: int = Field(
        default=1000, ge=1, le=10_000, description="Events per generic delivery-report request"
    )


class FeedbackOptions(BaseModel):
    """Per-channel behaviour of feedback (stored under `options.feedback` of a channel)."""

    model_config = ConfigDict(extra="forbid")

    delivered_from: DeliveredFrom | None = Field(
        default=None,
        description="'receipts': delivered = delivery receipts; 'sent': sent minus bounced/failed. "
        "Default by kind: sms receipts, others sent",
    )
    report_preferences: bool = Field(
        default=False,
        description="Tell Optimove (SetCustomerChannelPreference) about unsubscribes and complaints",
    )
    report_bounces_as_opt_out: bool = Field(
        default=False, description="Also report hard bounces as opt-outs (needs report_preferences)"
    )
    opt_out_mode: int = Field(
        default=2, ge=0, description="CommunicationMode value meaning opt-out (UNCONFIRMED, see docs)"
    )

    def delivered_mode(self, kind: str) -> DeliveredFrom:
        return self.delivered_from or _DEFAULT_DELIVERED_FROM.get(kind, "sent")


def channel_feedback_options(options: dict[str, Any] | None) -> FeedbackOptions:
    """The feedback options stored in a channel's `options` column; defaults when absent or bad.

    A malformed stored value must not stop reporting for the whole tenant, so it falls back to the
    defaults (which report nothing to Optimove's preferences).
    """
    raw = (options or {}).get("feedback")
    if not isinstance(raw, dict):
        return FeedbackOptions()
    try:
        return FeedbackOptions.model_validate(raw)
    except ValidationError:
        return FeedbackOptions()


def feedback_settings(app_settings: object) -> FeedbackSettings:
    """`app_settings.feedback` once the application settings carry it; defaults until then."""
    value = getattr(app_settings, "feedback", None)
    return value if isinstance(value, FeedbackSettings) else FeedbackSettings()

"""Settings of the reporting schedule (surfaced as `Settings.reporting`; used by optibridge.reporting)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from optibridge.core.engagement_settings import EngagementEventSettings

# Interaction lists sent by default: every MetricID (optibridge.optimove.models.MetricID) but
# SENT = 0 (Optimove already knows whom it targeted, and that list would be the whole audience
# again): DELIVERED 1, OPENED 2, CLICKED 3, UNSUBSCRIBED 4, DROPPED 5, SPAM_REPORTS 6, BOUNCED 9.
# Plain numbers because settings sit below the Optimove client; a unit test ties them to MetricID.
DEFAULT_INTERACTION_METRICS = (1, 2, 3, 4, 5, 6, 9)


class ReportingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval_hours: float = Field(default=4.0, gt=0, le=24 * 7, description="Hours between pushes")
    window_days: float = Field(default=7.0, gt=0, le=60, description="Report for this long after sending")
    tick_cron: str = Field(default="* * * * *", description="How often due pushes are looked for")
    retry_base_s: float = Field(default=300.0, gt=0, description="First retry delay after a failed push")
    give_up_after_hours: float = Field(
        default=24.0, ge=0, description="Stop retrying this long after the final push was due"
    )
    lease_s: float = Field(default=900.0, gt=0, description="A push not finished in this time may be retaken")
    push_lock_wait_s: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="How long a tick waits for an on-demand push of the same campaign before leaving it "
        "to the next tick",
    )
    campaigns_per_tick: int = Field(default=50, ge=1, description="Pushes started per tick at most")
    concurrency: int = Field(default=4, ge=1, le=64, description="Campaigns pushed at once per tick")
    max_interactions_per_push: int = Field(
        default=200_000, ge=10_000, description="Bounds memory; the rest goes at the next tick"
    )
    interaction_metrics: list[int] = Field(
        default_factory=lambda: [int(m) for m in DEFAULT_INTERACTION_METRICS],
        description="MetricIDs whose customer lists go to UpdateCampaignInteractions (EventID = MetricID)",
    )
    engagement: EngagementEventSettings = Field(
        default_factory=EngagementEventSettings,
        description="Signed engagement events (tenants in reporting mode events/both)",
    )


def reporting_settings(app_settings: object) -> ReportingSettings:
    value = getattr(app_settings, "reporting", None)
    return value if isinstance(value, ReportingSettings) else ReportingSettings()

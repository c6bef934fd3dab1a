"""A tenant's reporting mode and its signed engagement events settings (optimove-api §9.3).

`classic` (the default) reports through UpdateCampaignMetrics/UpdateCampaignInteractions;
`events` sends each customer's interactions as signed events to `metric-<tenant>.optimove.net`
instead; `both` does both. Set in the config file (`[tenants.engagement_events]`), the admin API
(`PUT /api/v1/tenants/{id}/engagement-events`) and the CLI (`optibridge tenants engagement-events`).
The token is a secret: stored encrypted, never shown back (docs/flows/engagement-events.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy

ReportingMode = Literal["classic", "events", "both"]
REPORTING_MODES: tuple[ReportingMode, ...] = ("classic", "events", "both")
# `{tenant_id}` is replaced by the metric tenant id (optimove-api §9.3: Optimove support gives it).
DEFAULT_METRIC_BASE_URL = "https://metric-{tenant_id}.optimove.net"
# Optimove's tenant ids are numbers; letters, digits, '-' and '_' leave room without letting a
# value change the host name's structure (no dots, no slashes).
METRIC_TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"


class EngagementConfig(BaseModel):
    """What a tenant sets. The token may be omitted on a change to keep the stored one."""

    model_config = ConfigDict(extra="forbid")

    mode: ReportingMode = Field(default="classic", description="classic | events | both")
    metric_tenant_id: str | None = Field(
        default=None, pattern=METRIC_TENANT_PATTERN, description="Optimove's tenant id for saveEvent"
    )
    token: SecretStr | None = Field(
        default=None, description="Write-only: the HMAC key that signs each saveEvent body"
    )
    base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/$.?#][^\s]*$",
        max_length=2000,
        description="Default https://metric-{tenant_id}.optimove.net; '{tenant_id}' is substituted",
    )

    @model_validator(mode="after")
    def _token_not_empty(self) -> EngagementConfig:
        if self.token is not None and not self.token.get_secret_value():
            raise ValueError("token must not be empty")
        return self

    def resolved_base_url(self) -> str | None:
        """The URL saveEvent is posted under (`/api/saveEvent` is appended); None without a tenant id."""
        return metric_base_url(self.base_url, self.metric_tenant_id)


def metric_base_url(base_url: str | None, metric_tenant_id: str | None) -> str | None:
    if metric_tenant_id is None:
        return None
    return (base_url or DEFAULT_METRIC_BASE_URL).replace("{tenant_id}", metric_tenant_id).rstrip("/")


def check_engagement_url(config: EngagementConfig, policy: OutboundPolicy) -> None:
    """ConfigError if the base URL override, as it will be used, is refused by the outbound policy
    (a tenant can set it, like `api_base_url`). The default Optimove host needs no check here: the
    client's guarded resolver still checks every connection."""
    url = config.resolved_base_url()
    if config.base_url is None or url is None:
        return
    reason = policy.check_url(url)
    if reason is not None:
        raise ConfigError(f"engagement_events.base_url refused: {reason}")


def missing_for_mode(mode: ReportingMode, metric_tenant_id: str | None, has_token: bool) -> str | None:
    """Why the settings cannot send events in this mode, or None (`classic` needs nothing)."""
    if mode == "classic":
        return None
    if metric_tenant_id is None:
        return f"mode {mode!r} needs metric_tenant_id"
    if not has_token:
        return f"mode {mode!r} needs the engagement token"
    return None


class EngagementEventSettings(BaseModel):
    """Deployment-wide knobs of the events push (surfaced as `Settings.reporting.engagement`)."""

    model_config = ConfigDict(extra="forbid")

    events_per_request: int = Field(
        default=100, ge=1, le=1000, description="Events in one saveEvent request (UNCONFIRMED limit)"
    )
    metrics: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4, 5, 6, 9],
        description="MetricIDs sent as events (each customer's interaction once per metric)",
    )
    event_names: dict[int, str] = Field(
        default_factory=dict,
        description="Rename events by MetricID (default: sent, delivered, opened, clicked, "
        "unsubscribed, dropped, spam_reported, bounced)",
    )

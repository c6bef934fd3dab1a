"""Settings of one emulator instance (all limits configurable, and switchable off for benchmarks)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TenantSpec(BaseModel):
    """An emulated Optimove client ("tenant") and its credentials."""

    tenant_id: str | None = Field(None, description="default: generated")
    name: str | None = None
    api_keys: list[str] = Field(default_factory=list)
    username: str | None = None
    password: str | None = None
    channels: dict[int, str] | None = Field(
        None, description="GetExecutionChannels; default: the sandbox's generic channels"
    )


class EmulatorConfig(BaseModel):
    seed: int = 0
    token_ttl_s: float = Field(1200.0, gt=0, description="login token idle expiry (sliding)")
    rate_limit_enabled: bool = True
    rate_limit_requests: int = Field(50, ge=1)
    rate_limit_window_s: float = Field(10.0, gt=0)
    login_limit_requests: int = Field(1, ge=1)
    login_limit_window_s: float = Field(1.0, gt=0)
    send_retry_after: bool = Field(True, description="add Retry-After to 429 answers")
    max_page_size: int = Field(10_000, ge=1, description="larger $top values are clamped")
    max_batch_items: int = Field(100, ge=1)
    max_interaction_customers: int = Field(10_000, ge=1)
    max_preference_customers: int = Field(50_000, ge=1)
    max_promotion_statuses: int = Field(10_000, ge=1, description="PromosUpdated items per call")
    canceled_data_ttl_s: float = Field(7200.0, gt=0)
    notification_timeout_s: float = Field(10.0, gt=0)
    listener_payload_casing: Literal["pascal", "camel"] = "pascal"
    # -- realism switches ("Emulator realism" in docs/optimove-api-notes.md) ------------------
    strict_templates: bool = Field(
        False,
        description="refuse (409) a campaign whose TemplateIDs are not registered for its channels "
        "(AddChannelTemplates); off: such campaigns are created and flagged",
    )
    notification_id_key: Literal["ID", "Id"] = Field(
        "ID", description='PascalCase notification keys end in "ID" (ChannelID) or "Id" (ChannelId)'
    )
    notification_ids_as_strings: bool = Field(
        False, description='IDs in notifications as JSON strings ("CampaignID": "123")'
    )
    notification_time_format: Literal["seconds", "minutes", "iso"] = Field(
        "seconds", description="notification TimeStamp (and ClearanceRequiredBy) format"
    )
    scheduled_time_format: Literal["seconds", "minutes", "iso"] = Field(
        "seconds",
        description='ScheduledTime in answers: "2026-12-01 10:00:00", "2026-12-01 10:00" or '
        '"2026-12-01T10:00:00Z"',
    )
    empty_list_body: Literal["array", "null", "empty"] = Field(
        "array", description="an empty list answers [] (array), null, or an empty 200 body"
    )
    retry_after_format: Literal["seconds", "http-date"] = Field(
        "seconds", description="Retry-After on 429: delta-seconds or an HTTP date"
    )
    request_log_size: int = Field(10_000, ge=0)
    delivery_log_size: int = Field(10_000, ge=0)
    gcs_endpoint: str | None = Field(
        None, description="event 14: the GCS emulator the engagement files go to (emulator/gcs.py)"
    )
    tenants: list[TenantSpec] = Field(default_factory=list)

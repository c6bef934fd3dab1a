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
    canceled_data_ttl_s: float = Field(7200.0, gt=0)
    notification_timeout_s: float = Field(10.0, gt=0)
    listener_payload_casing: Literal["pascal", "camel"] = "pascal"
    request_log_size: int = Field(10_000, ge=0)
    delivery_log_size: int = Field(10_000, ge=0)
    tenants: list[TenantSpec] = Field(default_factory=list)

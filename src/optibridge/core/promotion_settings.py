"""A tenant's promotion settings for event-5 campaigns (docs/flows/promotions.md), as the config
file (`[tenants.promotions]`), the admin API (`PUT /api/v1/tenants/{id}/promotions`) and the CLI
(`optibridge tenants promotions`) take them.

The webhook URL is a tenant-set outbound destination: http(s) with a host here, the operator's
outbound policy at every write (`check_promotion_url`; the API and CLI also resolve the name) and at
every connection (the guarded resolver). The bearer token is write-only: absent keeps the stored
one, "" removes it; it is stored encrypted and never shown.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy

OnDeadline = Literal["report_false", "leave"]
MAX_BATCH = 10_000  # "one flow sends batches of up to 10K customers" (optimove-api.md §10)
_CONTROL = re.compile(r"[\r\n\x00]")


class PromotionSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Activate promotions for event-5 campaigns")
    webhook_url: str | None = Field(
        None,
        max_length=2000,
        description="The tenant's promotion system (POST batches, docs/flows/promotions.md); "
        "null: every targeted customer is activated (accept all)",
    )
    bearer_token: SecretStr | None = Field(
        None,
        max_length=4000,
        description="Sent as Authorization: Bearer to the webhook; write-only. Absent: keep the "
        'stored one; "": remove it',
    )
    batch_size: int = Field(MAX_BATCH, ge=1, le=MAX_BATCH, description="Customers per promotion-system call")
    deadline_margin_s: int = Field(
        120,
        ge=0,
        le=86_400,
        description="Stop asking the promotion system this long before the clearance time",
    )
    on_deadline: OnDeadline = Field(
        "report_false",
        description="Customers not answered by then: report Status false, or leave them unreported",
    )

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if _CONTROL.search(value) or any(c in value for c in " \t"):
            raise ValueError("must be a URL without spaces or control characters")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  # raises ValueError for a malformed port
        except ValueError:
            raise ValueError("must be a well-formed http:// or https:// URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("bearer_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and _CONTROL.search(value.get_secret_value()):
            raise ValueError("must be a single line")  # it ends up in a header
        return value

    def token_change(self) -> tuple[str | None, bool]:
        """(token, keep_token) for store.promotions.put_settings."""
        if self.bearer_token is None:
            return None, True
        return self.bearer_token.get_secret_value() or None, False


def check_promotion_url(settings: PromotionSettingsIn, policy: OutboundPolicy) -> None:
    """ConfigError if the outbound policy refuses the webhook URL as written (no DNS lookup)."""
    if settings.webhook_url is None:
        return
    reason = policy.check_url(settings.webhook_url)
    if reason is not None:
        raise ConfigError(f"promotions.webhook_url refused by the outbound policy: {reason}")

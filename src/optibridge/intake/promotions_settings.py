"""A tenant's promotion settings as the admin API and the CLI take them, checked before storing.

The webhook URL must be an http(s) URL that the operator's outbound policy allows (literal address
here; the name's current addresses with `check_destination`, and every connection through the
policy's guarded resolver). The bearer token is write-only: absent keeps the stored one, "" removes it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from optibridge.channels.setting_checks import CONTROL, check_http_url
from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy
from optibridge.store.promotions import OnDeadline, PromotionSettings


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
    batch_size: int = Field(10_000, ge=1, le=10_000, description="Customers per promotion-system call")
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
        return check_http_url(value)

    @field_validator("bearer_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and CONTROL.search(value.get_secret_value()):
            raise ValueError("must be a single line")  # it ends up in a header
        return value

    def stored(self) -> PromotionSettings:
        return PromotionSettings(
            enabled=self.enabled,
            webhook_url=self.webhook_url,
            batch_size=self.batch_size,
            deadline_margin_s=self.deadline_margin_s,
            on_deadline=self.on_deadline,
        )

    def token_change(self) -> tuple[str | None, bool]:
        """(token, keep_token) for store.promotions.put_settings."""
        if self.bearer_token is None:
            return None, True
        return self.bearer_token.get_secret_value() or None, False


async def check_destination(settings: PromotionSettingsIn, policy: OutboundPolicy) -> None:
    """ConfigError if the outbound policy refuses the webhook URL (its address or current DNS)."""
    if settings.webhook_url is None:
        return
    reason = await policy.check_resolved(settings.webhook_url)
    if reason is not None:
        raise ConfigError(f"webhook_url refused by the outbound policy: {reason}")

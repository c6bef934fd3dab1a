"""The write-time check of a tenant's promotion settings (core.promotion_settings) for the API and
the CLI, which may look the webhook's name up (the config file's check, at start, does not)."""

from __future__ import annotations

from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy
from optibridge.core.promotion_settings import PromotionSettingsIn, check_promotion_url

__all__ = ["PromotionSettingsIn", "check_destination"]


async def check_destination(settings: PromotionSettingsIn, policy: OutboundPolicy) -> None:
    """ConfigError if the outbound policy refuses the webhook URL: as written, then the addresses its
    name resolves to now (a name pointing inside is refused at once, with a reason)."""
    check_promotion_url(settings, policy)
    if settings.webhook_url is None:
        return
    reason = await policy.check_resolved(settings.webhook_url)
    if reason is not None:
        raise ConfigError(f"promotions.webhook_url refused by the outbound policy: {reason}")

"""Adapters for the settings in `provider_settings` (the factory's `build_provider` calls this)."""

from __future__ import annotations

from optibridge.channels.apns import ApnsPushProvider
from optibridge.channels.base import Provider
from optibridge.channels.mailgun import MailgunEmailProvider
from optibridge.channels.plivo import PlivoSmsProvider
from optibridge.channels.postmark import PostmarkEmailProvider
from optibridge.channels.provider_settings import (
    ApnsSettings,
    ExtraProviderSettings,
    MailgunSettings,
    PlivoSettings,
    PostmarkSettings,
    SendgridSettings,
    SesSettings,
    VonageSettings,
)
from optibridge.channels.sendgrid import SendgridEmailProvider
from optibridge.channels.ses import SesEmailProvider
from optibridge.channels.vonage import VonageSmsProvider
from optibridge.core.outbound import OutboundPolicy


def build_extra_provider(model: ExtraProviderSettings, policy: OutboundPolicy) -> Provider:
    """The adapter for validated settings (their destinations were checked by the factory)."""
    if isinstance(model, SesSettings):
        return SesEmailProvider(model, policy=policy)
    if isinstance(model, SendgridSettings):
        return SendgridEmailProvider(model, policy=policy)
    if isinstance(model, MailgunSettings):
        return MailgunEmailProvider(model, policy=policy)
    if isinstance(model, PostmarkSettings):
        return PostmarkEmailProvider(model, policy=policy)
    if isinstance(model, VonageSettings):
        return VonageSmsProvider(model, policy=policy)
    if isinstance(model, PlivoSettings):
        return PlivoSmsProvider(model, policy=policy)
    if isinstance(model, ApnsSettings):
        return ApnsPushProvider(model, policy=policy)
    raise AssertionError(f"no adapter for {type(model).__name__}")  # pragma: no cover

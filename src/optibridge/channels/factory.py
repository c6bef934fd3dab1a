"""`build_provider`: settings mapping in, ready-to-open adapter out, or one clear ConfigError."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from optibridge.channels.base import Provider
from optibridge.channels.fcm import FcmPushProvider
from optibridge.channels.generic_json import GenericJsonProvider
from optibridge.channels.settings import (
    SETTINGS_BY_TYPE,
    TYPES_BY_KIND,
    FcmSettings,
    JsonSettings,
    ProviderSettings,
    SmtpSettings,
    TwilioSettings,
    WebhookSettings,
)
from optibridge.channels.smtp import SmtpProvider
from optibridge.channels.twilio import TwilioSmsProvider
from optibridge.channels.webhook import WebhookProvider
from optibridge.core.errors import ConfigError


def _one_line(error: ValidationError) -> str:
    # Never echo input values: settings hold passwords and tokens.
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def validate_settings(kind: str, settings: Mapping[str, Any]) -> ProviderSettings:
    """The validated settings model for a channel kind, or ConfigError."""
    types = TYPES_BY_KIND.get(kind)
    if types is None:
        raise ConfigError(f"unknown channel kind {kind!r}: expected one of {', '.join(TYPES_BY_KIND)}")
    provider_type = settings.get("type")
    if provider_type not in types:
        raise ConfigError(
            f"{kind} provider settings need 'type' set to one of {', '.join(types)}, got {provider_type!r}"
        )
    try:
        return SETTINGS_BY_TYPE[provider_type].model_validate(dict(settings))
    except ValidationError as exc:
        raise ConfigError(f"invalid {provider_type} settings for {kind}: {_one_line(exc)}") from None


def build_provider(
    kind: str, settings: Mapping[str, Any], *, callback_base_url: str | None = None
) -> Provider:
    """Build the adapter for a channel of `kind` ("email", "sms", "push", "webhook").

    `callback_base_url` is the product's public base URL; providers that report delivery status
    (Twilio StatusCallback, {{callback_url}} in JSON templates) call back under it.
    """
    if callback_base_url is not None and not callback_base_url.startswith(("http://", "https://")):
        raise ConfigError(f"callback base URL must be http(s): {callback_base_url!r}")
    model = validate_settings(kind, settings)
    try:
        if isinstance(model, SmtpSettings):
            return SmtpProvider(model)
        if isinstance(model, TwilioSettings):
            return TwilioSmsProvider(model, callback_base_url=callback_base_url)
        if isinstance(model, JsonSettings):
            return GenericJsonProvider(kind, model, callback_base_url=callback_base_url)
        if isinstance(model, FcmSettings):
            return FcmPushProvider(model)
        if isinstance(model, WebhookSettings):
            return WebhookProvider(model)
    except ValueError as exc:  # template, credentials or URL checks done by the adapters
        raise ConfigError(f"invalid {model.type} settings for {kind}: {exc}") from None
    raise AssertionError(f"no adapter for {type(model).__name__}")  # pragma: no cover

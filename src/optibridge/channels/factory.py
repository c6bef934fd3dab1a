"""`build_provider`: settings mapping in, ready-to-open adapter out, or one clear ConfigError.

`validate_channel` is the one check every write path runs (API, CLI, config file) before provider
settings are stored: the settings model, then every destination against the outbound policy.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from optibridge.channels.base import Provider
from optibridge.channels.fcm import FcmPushProvider
from optibridge.channels.generic_json import GenericJsonProvider
from optibridge.channels.provider_factory import build_extra_provider
from optibridge.channels.provider_settings import EXTRA_SETTINGS_TYPES
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
from optibridge.core.config import ChannelConfig, ChannelOptions, TenantConfig
from optibridge.core.engagement_settings import EngagementConfig, check_engagement_url, missing_for_mode
from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy
from optibridge.core.promotion_settings import check_promotion_url

STRICT = OutboundPolicy()


def _one_line(error: ValidationError) -> str:
    # Never echo input values: settings hold passwords and tokens.
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def destinations(model: ProviderSettings) -> list[tuple[str, str]]:
    """(field, URL) of every place these settings make the service connect to (pure)."""
    if isinstance(model, SmtpSettings):
        host = model.host.strip("[]")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        shown = f"[{host}]" if literal is not None and literal.version == 6 else host
        return [("host", f"http://{shown}/")]
    if isinstance(model, TwilioSettings):
        return [("base_url", model.base_url)]
    if isinstance(model, JsonSettings):
        return [("url", model.url)]
    if isinstance(model, WebhookSettings):
        return [("url", model.url)]
    if isinstance(model, EXTRA_SETTINGS_TYPES):  # SES, SendGrid, Mailgun, Postmark, Vonage, Plivo, APNs
        return model.destinations()
    found = [("base_url", model.base_url), ("token_uri", model.effective_token_uri)]
    inner = model.service_account.get("token_uri")
    if isinstance(inner, str) and inner != model.effective_token_uri:
        found.append(("credentials.token_uri", inner))
    return found


def check_destinations(model: ProviderSettings, policy: OutboundPolicy) -> str | None:
    """Why a destination of these settings is refused by the policy, or None."""
    for where, url in destinations(model):
        reason = policy.check_url(url)
        if reason is not None:
            return f"{where} refused: {reason}"
    return None


def validate_settings(
    kind: str, settings: Mapping[str, Any], policy: OutboundPolicy = STRICT
) -> ProviderSettings:
    """The validated settings model for a channel kind, or ConfigError (destinations included)."""
    types = TYPES_BY_KIND.get(kind)
    if types is None:
        raise ConfigError(f"unknown channel kind {kind!r}: expected one of {', '.join(TYPES_BY_KIND)}")
    provider_type = settings.get("type")
    if provider_type not in types:
        shown = provider_type if provider_type is None or isinstance(provider_type, str) else "?"
        raise ConfigError(
            f"{kind} provider settings need 'type' set to one of {', '.join(types)}, got {shown!r}"[:300]
        )
    try:
        model = SETTINGS_BY_TYPE[provider_type].model_validate(dict(settings))
    except ValidationError as exc:
        raise ConfigError(f"invalid {provider_type} settings for {kind}: {_one_line(exc)}") from None
    reason = check_destinations(model, policy)
    if reason is not None:
        raise ConfigError(f"invalid {provider_type} settings for {kind}: {reason}")
    return model


def provider_entries(settings: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """One provider's settings, or each of a failover list (`{"providers": [...]}`)."""
    listed = settings.get("providers")
    if listed is None:
        return [settings]
    if not isinstance(listed, list) or not listed or not all(isinstance(p, dict) for p in listed):
        raise ConfigError("provider.providers must be a non-empty list of provider tables")
    if len(settings) != 1:
        raise ConfigError("provider settings with 'providers' may hold nothing else")
    return listed


def validate_channel(
    kind: str,
    provider: Mapping[str, Any],
    options: ChannelOptions | None,
    policy: OutboundPolicy,
    *,
    callback_base_url: str | None = None,
) -> None:
    """Everything a stored channel will be built from, checked as the send path will build it.

    An empty `provider` is a channel not configured yet (it sends nothing) and passes. Adapters
    are built (not opened: no connection) so their own checks (templates, credentials) run too.
    """
    if provider:
        for one in provider_entries(provider):
            build_provider(kind, one, callback_base_url=callback_base_url, policy=policy)
    lookup = options.delivery_lookup_url if options is not None else None
    if lookup is not None:
        reason = policy.check_url(lookup)
        if reason is not None:
            raise ConfigError(f"options.delivery_lookup_url refused: {reason}")


def validate_channel_config(
    channel: ChannelConfig, policy: OutboundPolicy, *, callback_base_url: str | None = None
) -> None:
    """`validate_channel` for one channel as written; ConfigError names the channel."""
    try:
        validate_channel(
            channel.kind, channel.provider, channel.options, policy, callback_base_url=callback_base_url
        )
    except ConfigError as exc:
        raise ConfigError(f"channel {channel.name!r}: {exc}") from None


def validate_tenant(
    tenant: TenantConfig, policy: OutboundPolicy, *, callback_base_url: str | None = None
) -> None:
    """What every write path (API, CLI, config file) checks before a tenant is stored."""
    check_api_base_url(tenant.api_base_url, policy)
    if tenant.engagement_events is not None:
        check_engagement_events(tenant.engagement_events, policy)
    if tenant.promotions is not None:
        check_promotion_url(tenant.promotions, policy)
    for channel in tenant.channels:
        validate_channel_config(channel, policy, callback_base_url=callback_base_url)


def check_engagement_events(config: EngagementConfig, policy: OutboundPolicy) -> None:
    """The saveEvent settings: complete for their mode (a file or a new tenant states the token), and
    a base URL override the outbound policy accepts."""
    reason = missing_for_mode(config.mode, config.metric_tenant_id, config.token is not None)
    if reason is not None:
        raise ConfigError(f"engagement_events: {reason}")
    check_engagement_url(config, policy)


_URL_KEYS = frozenset({"url", "base_url", "token_uri", "sns_cert_base_url"})


def named_destinations(channels: list[ChannelConfig]) -> list[tuple[str, str]]:
    """(where, URL) of every destination named in these channels as written (pure, no checks):
    for a write-time DNS look at names, after `validate_channel` has judged the settings."""
    found: list[tuple[str, str]] = []

    def walk(value: Any, where: str, depth: int) -> None:
        if depth > 8:  # settings are shallow; a deep document is not settings
            return
        if isinstance(value, dict):
            for key, item in value.items():
                here = f"{where}.{key}"
                if key in _URL_KEYS and isinstance(item, str):
                    found.append((here, item))
                else:
                    walk(item, here, depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}.{index}", depth + 1)

    for channel in channels:
        walk(channel.provider, f"channel {channel.name!r} provider", 0)
        if channel.options.delivery_lookup_url:
            found.append(
                (f"channel {channel.name!r} options.delivery_lookup_url", channel.options.delivery_lookup_url)
            )
    return found


async def check_names_resolve_outside(
    destinations: list[tuple[str, str]], policy: OutboundPolicy, *, total_s: float = 5.0
) -> None:
    """ConfigError if a destination's host name resolves, now, to an address the policy refuses.

    Write-time courtesy on top of the connect-time guard (which re-checks every connection, so a
    name re-pointed later is refused then): the writer learns at once. Bounded: 16 distinct URLs,
    looked up at once, `total_s` for all; what does not answer in time is left to the guard.
    """
    todo: dict[str, str] = {}
    for where, url in destinations:
        if policy.check_url(url) is None and url not in todo.values():
            todo[where] = url  # a URL refused without DNS is reported by validate_* in context
        if len(todo) >= 16:
            break
    if not todo:
        return
    try:
        async with asyncio.timeout(total_s):
            reasons = await asyncio.gather(*(policy.check_resolved(url) for url in todo.values()))
    except TimeoutError:
        return
    for where, reason in zip(todo, reasons, strict=True):
        if reason is not None:
            raise ConfigError(f"{where} refused: {reason}")


def check_api_base_url(url: str, policy: OutboundPolicy) -> None:
    reason = policy.check_url(url)
    if reason is not None:
        raise ConfigError(f"api_base_url refused: {reason}")


def build_provider(
    kind: str,
    settings: Mapping[str, Any],
    *,
    callback_base_url: str | None = None,
    policy: OutboundPolicy = STRICT,
) -> Provider:
    """Build the adapter for a channel of `kind` ("email", "sms", "push", "webhook").

    `callback_base_url` is the product's public base URL; providers that report delivery status
    (Twilio StatusCallback, {{callback_url}} in JSON templates) call back under it. `policy` is the
    operator's outbound policy: destinations are checked now and every address again at connect.
    """
    if callback_base_url is not None and not callback_base_url.startswith(("http://", "https://")):
        raise ConfigError(f"callback base URL must be http(s): {callback_base_url!r}")
    model = validate_settings(kind, settings, policy)
    try:
        if isinstance(model, SmtpSettings):
            return SmtpProvider(model, policy=policy)
        if isinstance(model, TwilioSettings):
            twilio = TwilioSmsProvider(model, callback_base_url=callback_base_url)
            twilio.set_policy(policy)  # its URL was checked above; connections go through the guard
            return twilio
        if isinstance(model, JsonSettings):
            return GenericJsonProvider(kind, model, callback_base_url=callback_base_url, policy=policy)
        if isinstance(model, FcmSettings):
            return FcmPushProvider(model, policy=policy)
        if isinstance(model, WebhookSettings):
            return WebhookProvider(model, policy=policy)
        if isinstance(model, EXTRA_SETTINGS_TYPES):
            return build_extra_provider(model, policy)
    except ValueError as exc:  # template, credentials or URL checks done by the adapters
        raise ConfigError(f"invalid {model.type} settings for {kind}: {exc}") from None
    raise AssertionError(f"no adapter for {type(model).__name__}")  # pragma: no cover

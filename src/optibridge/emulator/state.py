"""Everything the emulator remembers, per tenant, in memory."""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from optibridge.emulator.config import EmulatorConfig, TenantSpec
from optibridge.emulator.faults import FaultBook
from optibridge.emulator.generator import CampaignSpec, GeneratedCampaign, WeightedTemplate
from optibridge.emulator.limits import SlidingWindowCounter
from optibridge.optimove.clock import Clock

# The generic channel IDs of Optimove's sandbox (optimove-api.md §8).
SANDBOX_CHANNELS: dict[int, str] = {
    502: "Call Center",
    504: "Email",
    505: "SMS",
    506: "Push",
    510: "Web Push",
    511: "In-Platform",
}


@dataclass(slots=True)
class Campaign:
    data: GeneratedCampaign
    channel_ids: tuple[int, ...]
    created_at: str
    canceled_at: float | None = None  # monotonic; canceled data is served for a limited time
    notified: int = 0
    # Channels whose rows carry other templates than `data` (templates drawn per channel from the
    # channel's registered ones). Same seed, so the same customers and attribute values.
    by_channel: dict[int, GeneratedCampaign] = field(default_factory=dict)
    # TemplateIDs the campaign uses that were not registered for the channel at creation.
    unregistered_templates: dict[int, list[int]] = field(default_factory=dict)
    promotion_statuses: dict[str, bool] = field(default_factory=dict)

    @property
    def campaign_id(self) -> int:
        return self.data.campaign_id

    def audience(self, channel_id: int) -> GeneratedCampaign:
        return self.by_channel.get(channel_id, self.data)


@dataclass(slots=True)
class InteractionBucket:
    customers: set[str] = field(default_factory=set)
    recipient_groups: set[int] = field(default_factory=set)
    app_ids: set[str] = field(default_factory=set)
    calls: int = 0


@dataclass(slots=True)
class DeliveryRecord:
    at: str
    url: str
    event_type_id: int
    campaign_id: int | None
    channel_id: int | None
    payload: dict[str, Any]
    status: int | None
    error: str | None
    duration_ms: float


@dataclass(slots=True)
class RequestRecord:
    at: str
    method: str
    path: str
    function: str
    tenant_id: str | None
    status: int
    fault_ids: list[int]


@dataclass(slots=True)
class Tenant:
    tenant_id: str
    name: str
    api_keys: set[str]
    username: str | None
    password: str | None
    channels: dict[int, str]
    listeners: dict[tuple[int, int | None], str] = field(default_factory=dict)
    templates: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)
    apps: dict[int, dict[str, str]] = field(default_factory=dict)
    campaigns: dict[int, Campaign] = field(default_factory=dict)
    # MetricValue replaces the previous value for the same key (see docs/optimove-api-notes.md).
    metrics: dict[tuple[int, int, int, int], float] = field(default_factory=dict)
    metric_updates: int = 0
    interactions: dict[tuple[int, int, int, int, str], InteractionBucket] = field(default_factory=dict)
    preferences: dict[tuple[int, str | None], dict[str, int]] = field(default_factory=dict)
    deliveries: deque[DeliveryRecord] = field(default_factory=deque)
    last_data_update: date | None = None
    next_campaign_id: int = 1000
    # API keys have no token to expire; `expire_access` models the nearest real event (a key
    # revoked, then restored or rotated back): every key of the tenant answers 401 until this
    # monotonic time, or until `enable_keys` when it is infinite.
    keys_disabled_until: float | None = None

    def keys_disabled(self, now: float) -> bool:
        return self.keys_disabled_until is not None and now < self.keys_disabled_until


@dataclass(slots=True)
class TokenRecord:
    tenant_id: str
    last_used: float
    revoked: bool = False


class EmulatorState:
    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.tenants: dict[str, Tenant] = {}
        self.by_api_key: dict[str, Tenant] = {}
        self.by_username: dict[str, Tenant] = {}
        self.tokens: dict[str, TokenRecord] = {}
        self.limiters: dict[str, SlidingWindowCounter] = {}
        self.faults = FaultBook(config.seed)
        self.requests: deque[RequestRecord] = deque(maxlen=config.request_log_size or None)
        for spec in config.tenants:
            self.create_tenant(spec)

    # -- tenants ----------------------------------------------------------------------------

    def create_tenant(self, spec: TenantSpec) -> Tenant:
        tenant_id = spec.tenant_id or f"tenant-{len(self.tenants) + 1}"
        if tenant_id in self.tenants:
            raise ValueError(f"tenant {tenant_id!r} already exists")
        for key in spec.api_keys:
            if key in self.by_api_key:
                raise ValueError("that API key belongs to another tenant")
        if spec.username and spec.username.lower() in self.by_username:
            raise ValueError(f"username {spec.username!r} belongs to another tenant")
        if (spec.username is None) != (spec.password is None):
            raise ValueError("username and password go together")
        api_keys = set(spec.api_keys)
        if not api_keys and spec.username is None:
            api_keys = {secrets.token_hex(16)}  # a tenant nobody can call is useless
        tenant = Tenant(
            tenant_id=tenant_id,
            name=spec.name or tenant_id,
            api_keys=api_keys,
            username=spec.username,
            password=spec.password,
            channels=dict(spec.channels or SANDBOX_CHANNELS),
        )
        tenant.deliveries = deque(maxlen=self.config.delivery_log_size or None)
        self.tenants[tenant_id] = tenant
        for key in api_keys:
            self.by_api_key[key] = tenant
        if spec.username:
            self.by_username[spec.username.lower()] = tenant
        return tenant

    # -- tokens -----------------------------------------------------------------------------

    def issue_token(self, tenant: Tenant) -> str:
        now = self.clock.monotonic()
        ttl = self.config.token_ttl_s
        # Forget tokens idle far beyond expiry, so a long-lived emulator stays small.
        stale = [t for t, rec in self.tokens.items() if now - rec.last_used > 10 * ttl]
        for token in stale:
            del self.tokens[token]
        token = secrets.token_urlsafe(32)
        self.tokens[token] = TokenRecord(tenant.tenant_id, now)
        return token

    def expire_tokens(self, tenant_id: str) -> int:
        count = 0
        for rec in self.tokens.values():
            if rec.tenant_id == tenant_id and not rec.revoked:
                rec.revoked = True
                count += 1
        return count

    def expire_access(self, tenant_id: str, api_key_seconds: float | None) -> tuple[int, int]:
        """Expire the tenant's login tokens (403 Expired on their next use) and refuse its API keys
        (401) for `api_key_seconds`, or until `enable_keys` when None. Returns (tokens, keys)."""
        tokens = self.expire_tokens(tenant_id)
        tenant = self.tenants[tenant_id]
        if not tenant.api_keys or api_key_seconds == 0:
            return tokens, 0
        until = float("inf") if api_key_seconds is None else self.clock.monotonic() + api_key_seconds
        tenant.keys_disabled_until = until
        return tokens, len(tenant.api_keys)

    def enable_keys(self, tenant_id: str) -> bool:
        """Accept the tenant's API keys again; False if they were not refused."""
        tenant = self.tenants[tenant_id]
        was = tenant.keys_disabled(self.clock.monotonic())
        tenant.keys_disabled_until = None
        return was

    # -- campaigns --------------------------------------------------------------------------

    def create_campaign(self, tenant: Tenant, spec: CampaignSpec) -> Campaign:
        campaign_id = spec.campaign_id
        if campaign_id is None:
            while tenant.next_campaign_id in tenant.campaigns:  # bounded by campaign count
                tenant.next_campaign_id += 1
            campaign_id = tenant.next_campaign_id
        if campaign_id in tenant.campaigns:
            raise ValueError(f"campaign {campaign_id} already exists")
        seed = spec.seed if spec.seed is not None else self.config.seed * 1_000_003 + campaign_id
        now = self.clock.now()
        per_channel = self._campaign_templates(tenant, spec)
        unregistered = {
            ch: sorted({t.template_id for t in tpls} - set(tenant.templates.get(ch, {})))
            for ch, tpls in per_channel.items()
        }
        unregistered = {ch: ids for ch, ids in unregistered.items() if ids}
        if unregistered and self.config.strict_templates:
            listed = "; ".join(f"channel {ch}: {ids}" for ch, ids in sorted(unregistered.items()))
            raise ValueError(f"templates not registered (AddChannelTemplates) for the campaign: {listed}")
        first = spec.channel_ids[0]
        data = GeneratedCampaign(
            spec.model_copy(update={"templates": per_channel[first]}), campaign_id, seed, now
        )
        campaign = Campaign(data, tuple(spec.channel_ids), now.strftime("%Y-%m-%d %H:%M:%S"))
        campaign.unregistered_templates = unregistered
        for channel_id, tpls in per_channel.items():
            if tpls != per_channel[first]:
                campaign.by_channel[channel_id] = GeneratedCampaign(
                    spec.model_copy(update={"templates": tpls}), campaign_id, seed, now
                )
        tenant.campaigns[campaign_id] = campaign
        for channel_id in spec.channel_ids:
            tenant.channels.setdefault(channel_id, f"Channel {channel_id}")
        return campaign

    def _campaign_templates(self, tenant: Tenant, spec: CampaignSpec) -> dict[int, list[WeightedTemplate]]:
        """The templates each channel's rows carry.

        Explicit templates apply to every channel of the campaign. Without them each channel
        draws, with equal weights, from the templates registered for it, as a real campaign can
        only use a channel's registered templates; a channel with none falls back to template 1
        (refused later when strict_templates is on).
        """
        out: dict[int, list[WeightedTemplate]] = {}
        for channel_id in spec.channel_ids:
            if spec.templates is not None:
                out[channel_id] = list(spec.templates)
                continue
            registered = sorted(tenant.templates.get(channel_id, {}))
            out[channel_id] = [WeightedTemplate(template_id=t) for t in registered or [1]]
        return out

    # -- rate limits ------------------------------------------------------------------------

    def rate_limited(self, key: str, now: float, *, login: bool = False) -> float | None:
        """None if the request may proceed, else seconds until the window reopens."""
        cfg = self.config
        if not cfg.rate_limit_enabled:
            return None
        if login:
            limit, window, key = cfg.login_limit_requests, cfg.login_limit_window_s, "L" + key
        else:
            limit, window, key = cfg.rate_limit_requests, cfg.rate_limit_window_s, "R" + key
        counter = self.limiters.get(key)
        if counter is None or counter.limit != limit or counter.window_s != window:
            counter = self.limiters[key] = SlidingWindowCounter(limit, window)
        return counter.hit(now)

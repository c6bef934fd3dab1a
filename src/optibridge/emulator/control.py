"""The control API (`/emulator/...`): set up tenants and campaigns, fire notifications, inject
faults, and read back what the integration reported. Documented in the app's OpenAPI (/docs).

It has no authentication: the emulator is a local test and demo tool, bound to loopback.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Literal

import aiohttp
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from optibridge.emulator.config import TenantSpec
from optibridge.emulator.faults import FaultRule
from optibridge.emulator.generator import CampaignSpec, format_time
from optibridge.emulator.notifier import CAMPAIGN_EVENTS, CHANNEL_EVENT, plan_notifications
from optibridge.emulator.notifier import deliver as deliver_notifications
from optibridge.emulator.state import Campaign, DeliveryRecord, EmulatorState, Tenant

router = APIRouter(prefix="/emulator", tags=["emulator control"])

TIME_FMT = "%Y-%m-%d %H:%M:%S"


# -- models ---------------------------------------------------------------------------------


class TenantInfo(BaseModel):
    tenant_id: str
    name: str
    api_keys: list[str]
    username: str | None
    channels: dict[int, str]


class CampaignInfo(BaseModel):
    tenant_id: str
    campaign_id: int
    channel_ids: list[int]
    customer_count: int
    seed: int
    template_ids: list[int]
    channel_template_ids: dict[int, list[int]] = Field(
        description="the TemplateIDs each channel's rows carry"
    )
    unregistered_template_ids: dict[int, list[int]] = Field(
        description="per channel, TemplateIDs not registered (AddChannelTemplates) at creation: "
        "a real campaign could not use them (refused when strict_templates is on)"
    )
    scheduled_times: list[str]
    canceled_customers: int
    created_at: str
    notified: int


class NotifyRequest(BaseModel):
    event_type_ids: list[int] = Field(default_factory=lambda: [1], min_length=1)
    campaign_id: int | None = Field(None, description="required for events 1, 4, 5, 13")
    channel_ids: list[int] | None = Field(None, description="event 13: default all campaign's")
    clearance_required_by: str | None = Field(None, description='event 5, "YYYY-MM-DD HH:MM:SS"')
    timestamp: str | None = Field(None, description="TimeStamp; default: now (UTC)")
    duplicates: int = Field(1, ge=1, le=10, description="send each notification n times")
    shuffle: bool = Field(False, description="deliver in a seeded random order")
    casing: Literal["pascal", "camel"] | None = None
    id_key: Literal["ID", "Id"] | None = Field(None, description="default: notification_id_key")
    ids_as_strings: bool | None = Field(None, description="default: notification_ids_as_strings")
    wait: bool = Field(True, description="answer after delivery, with the listeners' statuses")


class DeliveryInfo(BaseModel):
    at: str
    url: str
    event_type_id: int
    campaign_id: int | None
    channel_id: int | None
    payload: dict[str, Any]
    status: int | None
    error: str | None
    duration_ms: float


class NotifyResult(BaseModel):
    planned: int
    deliveries: list[DeliveryInfo]


class CancelRequest(BaseModel):
    fraction: float = Field(1.0, ge=0.0, le=1.0, description="share of customers canceled")
    notify: bool = Field(True, description="fire event 4 to the registered listeners")
    duplicates: int = Field(1, ge=1, le=10)
    casing: Literal["pascal", "camel"] | None = None


class CancelResult(BaseModel):
    canceled_customers: int
    deliveries: list[DeliveryInfo]


class MetricInfo(BaseModel):
    campaign_id: int
    channel_id: int
    template_id: int
    metric_id: int
    value: float


class InteractionInfo(BaseModel):
    campaign_id: int
    channel_id: int
    template_id: int
    event_id: int
    date: str
    customer_ids: list[str]
    recipient_group_ids: list[int]
    app_ids: list[str]
    calls: int


class PreferenceInfo(BaseModel):
    channel_id: int
    app_id: str | None
    customer_id: str
    communication_mode: int


class ListenerInfo(BaseModel):
    event_type_id: int
    listener_url: str
    channel_id: int | None


class TemplateInfo(BaseModel):
    channel_id: int
    template_id: int
    template_name: str
    app_id: str | None


class AppInfo(BaseModel):
    channel_id: int
    app_id: str
    app_name: str


class RequestInfo(BaseModel):
    at: str
    method: str
    path: str
    function: str
    tenant_id: str | None
    status: int
    fault_ids: list[int]


class FaultCreate(BaseModel):
    function: str = Field("*", description='API function name (any case), or "*" for all')
    tenant_id: str | None = Field(None, description="only this tenant's requests")
    status_codes: list[int] = Field(
        default_factory=list, description="answer with one of these (seeded choice)"
    )
    error_rate: float = Field(1.0, ge=0.0, le=1.0, description="chance the rule fires")
    times: int | None = Field(None, ge=0, description="fire at most this often")
    duration_s: float | None = Field(None, gt=0, description="active this long")
    latency_ms: float = Field(0.0, ge=0, description="added before answering")
    hang_s: float = Field(0.0, ge=0, description="hold the request this long (beyond the client's timeout)")
    retry_after_s: float | None = Field(None, ge=0, description="Retry-After on injected 429")
    error_string: str | None = Field(
        None,
        description='answer 200 with this bare JSON string (e.g. "Error: ...") instead of the '
        "call's answer; ignored when status_codes are given",
    )


class StormCreate(BaseModel):
    seconds: float | None = Field(None, gt=0, description="answer 429 for this long")
    requests: int | None = Field(None, ge=1, description="...or to this many requests")
    function: str = "*"
    tenant_id: str | None = None
    retry_after_s: float | None = Field(1.0, ge=0)


class FaultInfo(BaseModel):
    fault_id: int
    function: str
    tenant_id: str | None
    status_codes: list[int]
    probability: float
    remaining: int | None
    active_for_s: float | None
    latency_s: float
    retry_after_s: float | None
    error_string: str | None
    fired: int


class PromotionStatusInfo(BaseModel):
    campaign_id: int
    customer_id: str
    status: bool


class SettingsPatch(BaseModel):
    rate_limit_enabled: bool | None = None
    rate_limit_requests: int | None = Field(None, ge=1)
    rate_limit_window_s: float | None = Field(None, gt=0)
    login_limit_requests: int | None = Field(None, ge=1)
    login_limit_window_s: float | None = Field(None, gt=0)
    send_retry_after: bool | None = None
    token_ttl_s: float | None = Field(None, gt=0)
    max_page_size: int | None = Field(None, ge=1)
    listener_payload_casing: Literal["pascal", "camel"] | None = None
    strict_templates: bool | None = None
    notification_id_key: Literal["ID", "Id"] | None = None
    notification_ids_as_strings: bool | None = None
    notification_time_format: Literal["seconds", "minutes", "iso"] | None = None
    scheduled_time_format: Literal["seconds", "minutes", "iso"] | None = None
    empty_list_body: Literal["array", "null", "empty"] | None = None
    retry_after_format: Literal["seconds", "http-date"] | None = None
    fault_seed: int | None = Field(None, description="reseed the fault generator")
    gcs_endpoint: str | None = Field(None, description="event 14: the GCS emulator for engagement files")


# -- helpers --------------------------------------------------------------------------------


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def _tenant(request: Request, tenant_id: str) -> Tenant:
    tenant = _state(request).tenants.get(tenant_id)
    if tenant is None:
        raise HTTPException(404, f"no tenant {tenant_id!r}")
    return tenant


def _campaign(tenant: Tenant, campaign_id: int) -> Campaign:
    campaign = tenant.campaigns.get(campaign_id)
    if campaign is None:
        raise HTTPException(404, f"no campaign {campaign_id} for tenant {tenant.tenant_id!r}")
    return campaign


def _tenant_info(tenant: Tenant) -> TenantInfo:
    return TenantInfo(
        tenant_id=tenant.tenant_id,
        name=tenant.name,
        api_keys=sorted(tenant.api_keys),
        username=tenant.username,
        channels=tenant.channels,
    )


def _campaign_info(tenant: Tenant, campaign: Campaign) -> CampaignInfo:
    data = campaign.data
    return CampaignInfo(
        tenant_id=tenant.tenant_id,
        campaign_id=campaign.campaign_id,
        channel_ids=list(campaign.channel_ids),
        customer_count=data.count,
        seed=data.seed,
        template_ids=data.template_ids,
        channel_template_ids={ch: campaign.audience(ch).template_ids for ch in campaign.channel_ids},
        unregistered_template_ids=campaign.unregistered_templates,
        scheduled_times=data.scheduled_times,
        canceled_customers=data.canceled_count if campaign.canceled_at is not None else 0,
        created_at=campaign.created_at,
        notified=campaign.notified,
    )


def _delivery_info(record: DeliveryRecord) -> DeliveryInfo:
    return DeliveryInfo(
        at=record.at,
        url=record.url,
        event_type_id=record.event_type_id,
        campaign_id=record.campaign_id,
        channel_id=record.channel_id,
        payload=record.payload,
        status=record.status,
        error=record.error,
        duration_ms=record.duration_ms,
    )


def _fault_info(rule: FaultRule, now: float) -> FaultInfo:
    return FaultInfo(
        fault_id=rule.fault_id,
        function=rule.function,
        tenant_id=rule.tenant_id,
        status_codes=list(rule.status_codes),
        probability=rule.probability,
        remaining=rule.remaining,
        active_for_s=None if rule.until is None else max(0.0, rule.until - now),
        latency_s=rule.latency_s,
        retry_after_s=rule.retry_after_s,
        error_string=rule.error_string,
        fired=rule.fired,
    )


async def _notify(request: Request, tenant: Tenant, body: NotifyRequest) -> NotifyResult:
    state = _state(request)
    campaign: Campaign | None = None
    if body.campaign_id is not None:
        campaign = _campaign(tenant, body.campaign_id)
    elif any(e in CAMPAIGN_EVENTS or e == CHANNEL_EVENT for e in body.event_type_ids):
        raise HTTPException(422, "campaign_id is required for campaign events (1, 4, 5, 13)")
    channel_ids: list[int] = []
    if campaign is not None:
        channel_ids = list(campaign.channel_ids)
        if body.channel_ids is not None:
            channel_ids = [ch for ch in body.channel_ids if ch in campaign.channel_ids]
    now_text = state.clock.now().strftime(TIME_FMT)
    cfg = state.config
    clearance = body.clearance_required_by
    if clearance is not None and len(clearance) == 19:
        clearance = format_time(clearance, cfg.notification_time_format)
    planned = plan_notifications(
        tenant.listeners,
        body.event_type_ids,
        timestamp=body.timestamp or format_time(now_text, cfg.notification_time_format),
        campaign_id=body.campaign_id,
        channel_ids=channel_ids,
        clearance_required_by=clearance,
        casing=body.casing or cfg.listener_payload_casing,
        id_key=body.id_key or cfg.notification_id_key,
        ids_as_strings=cfg.notification_ids_as_strings
        if body.ids_as_strings is None
        else body.ids_as_strings,
        duplicates=body.duplicates,
        shuffle=random.Random(state.config.seed + len(tenant.deliveries)) if body.shuffle else None,
    )
    if campaign is not None:
        campaign.notified += 1
    http: aiohttp.ClientSession = request.app.state.http

    async def run() -> list[DeliveryRecord]:
        records = await deliver_notifications(
            http, planned, timeout_s=state.config.notification_timeout_s, now_text=now_text
        )
        tenant.deliveries.extend(records)
        return records

    if not body.wait:
        task = asyncio.create_task(run())
        background: set[asyncio.Task[Any]] = request.app.state.background
        background.add(task)
        task.add_done_callback(background.discard)
        return NotifyResult(planned=len(planned), deliveries=[])
    records = await run()
    return NotifyResult(planned=len(planned), deliveries=[_delivery_info(r) for r in records])


# -- routes ---------------------------------------------------------------------------------


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    return {"status": "ok", "tenants": len(_state(request).tenants)}


@router.post("/tenants", status_code=201)
async def create_tenant(request: Request, spec: TenantSpec) -> TenantInfo:
    """Create an emulated Optimove client with an API key and/or username/password."""
    try:
        tenant = _state(request).create_tenant(spec)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    return _tenant_info(tenant)


@router.get("/tenants")
async def list_tenants(request: Request) -> list[TenantInfo]:
    return [_tenant_info(t) for t in _state(request).tenants.values()]


@router.get("/tenants/{tenant_id}")
async def get_tenant(request: Request, tenant_id: str) -> TenantInfo:
    return _tenant_info(_tenant(request, tenant_id))


class ExpireRequest(BaseModel):
    api_key_seconds: float | None = Field(
        5.0,
        ge=0,
        description="refuse the tenant's API keys (401) this long; null: until enable-keys; "
        "0: leave them alone",
    )


class ExpireResult(BaseModel):
    expired: int = Field(description="login tokens expired (403 Authorization-Token Expired next)")
    api_keys_disabled: int = Field(description="API keys refused (401 Unauthorized) from now")
    api_keys_disabled_for_s: float | None = Field(description="null: until enable-keys")


@router.post("/tenants/{tenant_id}/expire-tokens")
async def expire_tokens(request: Request, tenant_id: str, body: ExpireRequest | None = None) -> ExpireResult:
    """Expire the tenant's access now: every login token (the next call gets 403 Expired, the
    client logs in again) and its API keys, which answer 401 for `api_key_seconds` (default 5)."""
    _tenant(request, tenant_id)
    seconds = (body or ExpireRequest()).api_key_seconds
    tokens, keys = _state(request).expire_access(tenant_id, seconds)
    return ExpireResult(
        expired=tokens, api_keys_disabled=keys, api_keys_disabled_for_s=seconds if keys else 0
    )


@router.post("/tenants/{tenant_id}/enable-keys")
async def enable_keys(request: Request, tenant_id: str) -> dict[str, bool]:
    """Accept the tenant's API keys again (ends an expire-tokens refusal early)."""
    _tenant(request, tenant_id)
    return {"was_disabled": _state(request).enable_keys(tenant_id)}


@router.post("/tenants/{tenant_id}/campaigns", status_code=201)
async def create_campaign(request: Request, tenant_id: str, spec: CampaignSpec) -> CampaignInfo:
    """Create a campaign whose customers are generated lazily and deterministically."""
    tenant = _tenant(request, tenant_id)
    try:
        campaign = _state(request).create_campaign(tenant, spec)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    return _campaign_info(tenant, campaign)


@router.get("/tenants/{tenant_id}/campaigns")
async def list_campaigns(request: Request, tenant_id: str) -> list[CampaignInfo]:
    tenant = _tenant(request, tenant_id)
    return [_campaign_info(tenant, c) for c in tenant.campaigns.values()]


@router.get("/tenants/{tenant_id}/campaigns/{campaign_id}")
async def get_campaign(request: Request, tenant_id: str, campaign_id: int) -> CampaignInfo:
    tenant = _tenant(request, tenant_id)
    return _campaign_info(tenant, _campaign(tenant, campaign_id))


@router.post("/tenants/{tenant_id}/notifications")
async def notify(request: Request, tenant_id: str, body: NotifyRequest) -> NotifyResult:
    """Fire events (1, 13, 4, 5, 2, 3, ...) to the tenant's registered listeners."""
    return await _notify(request, _tenant(request, tenant_id), body)


@router.post("/tenants/{tenant_id}/campaigns/{campaign_id}/cancel")
async def cancel_campaign(
    request: Request, tenant_id: str, campaign_id: int, body: CancelRequest
) -> CancelResult:
    """Cancel all or a fraction of a campaign's customers; optionally fire event 4."""
    tenant = _tenant(request, tenant_id)
    campaign = _campaign(tenant, campaign_id)
    count = campaign.data.cancel(body.fraction)
    campaign.canceled_at = _state(request).clock.monotonic()
    deliveries: list[DeliveryInfo] = []
    if body.notify:
        result = await _notify(
            request,
            tenant,
            NotifyRequest(
                event_type_ids=[4],
                campaign_id=campaign_id,
                duplicates=body.duplicates,
                casing=body.casing,
            ),
        )
        deliveries = result.deliveries
    return CancelResult(canceled_customers=count, deliveries=deliveries)


@router.get("/tenants/{tenant_id}/metrics")
async def metrics(request: Request, tenant_id: str) -> list[MetricInfo]:
    """Metric values as last reported (MetricValue replaces per campaign/channel/template/metric)."""
    tenant = _tenant(request, tenant_id)
    return [
        MetricInfo(campaign_id=k[0], channel_id=k[1], template_id=k[2], metric_id=k[3], value=v)
        for k, v in sorted(tenant.metrics.items())
    ]


@router.get("/tenants/{tenant_id}/interactions")
async def interactions(request: Request, tenant_id: str) -> list[InteractionInfo]:
    """Interactions, accumulated and de-duplicated per campaign/channel/template/event/date."""
    tenant = _tenant(request, tenant_id)
    return [
        InteractionInfo(
            campaign_id=k[0],
            channel_id=k[1],
            template_id=k[2],
            event_id=k[3],
            date=k[4],
            customer_ids=sorted(b.customers),
            recipient_group_ids=sorted(b.recipient_groups),
            app_ids=sorted(b.app_ids),
            calls=b.calls,
        )
        for k, b in sorted(tenant.interactions.items())
    ]


@router.get("/tenants/{tenant_id}/preferences")
async def preferences(request: Request, tenant_id: str) -> list[PreferenceInfo]:
    tenant = _tenant(request, tenant_id)
    return [
        PreferenceInfo(channel_id=ch, app_id=app, customer_id=cid, communication_mode=mode)
        for (ch, app), modes in sorted(tenant.preferences.items(), key=lambda kv: str(kv[0]))
        for cid, mode in sorted(modes.items())
    ]


@router.get("/tenants/{tenant_id}/promotion-statuses")
async def promotion_statuses(request: Request, tenant_id: str) -> list[PromotionStatusInfo]:
    """What UpdateCustomerPromotionStatus reported, last status per campaign and customer."""
    tenant = _tenant(request, tenant_id)
    return [
        PromotionStatusInfo(campaign_id=cid, customer_id=customer, status=status)
        for cid, campaign in sorted(tenant.campaigns.items())
        for customer, status in sorted(campaign.promotion_statuses.items())
    ]


@router.get("/tenants/{tenant_id}/listeners")
async def listeners(request: Request, tenant_id: str) -> list[ListenerInfo]:
    tenant = _tenant(request, tenant_id)
    return [
        ListenerInfo(event_type_id=event, listener_url=url, channel_id=channel)
        for (event, channel), url in sorted(
            tenant.listeners.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)
        )
    ]


@router.get("/tenants/{tenant_id}/templates")
async def templates(request: Request, tenant_id: str) -> list[TemplateInfo]:
    tenant = _tenant(request, tenant_id)
    return [
        TemplateInfo(
            channel_id=ch,
            template_id=tid,
            template_name=rec["TemplateName"],
            app_id=rec.get("AppID"),
        )
        for ch, recs in sorted(tenant.templates.items())
        for tid, rec in sorted(recs.items())
    ]


@router.get("/tenants/{tenant_id}/apps")
async def apps(request: Request, tenant_id: str) -> list[AppInfo]:
    tenant = _tenant(request, tenant_id)
    return [
        AppInfo(channel_id=ch, app_id=app_id, app_name=name)
        for ch, recs in sorted(tenant.apps.items())
        for app_id, name in sorted(recs.items())
    ]


@router.get("/tenants/{tenant_id}/deliveries")
async def deliveries(request: Request, tenant_id: str) -> list[DeliveryInfo]:
    """The log of listener notifications and the status each listener answered."""
    return [_delivery_info(r) for r in _tenant(request, tenant_id).deliveries]


@router.get("/requests")
async def requests_log(
    request: Request, tenant_id: str | None = None, function: str | None = None
) -> list[RequestInfo]:
    """The log of API requests (most recent last), optionally filtered."""
    wanted = function.lower() if function else None
    return [
        RequestInfo(
            at=r.at,
            method=r.method,
            path=r.path,
            function=r.function,
            tenant_id=r.tenant_id,
            status=r.status,
            fault_ids=r.fault_ids,
        )
        for r in _state(request).requests
        if (tenant_id is None or r.tenant_id == tenant_id)
        and (wanted is None or r.function.lower() == wanted)
    ]


@router.delete("/requests", status_code=204)
async def clear_requests(request: Request) -> None:
    _state(request).requests.clear()


@router.post("/faults", status_code=201)
async def add_fault(request: Request, body: FaultCreate) -> FaultInfo:
    """Inject errors, latency or hangs into matching API requests."""
    state = _state(request)
    now = state.clock.monotonic()
    rule = state.faults.add(
        function=body.function,
        tenant_id=body.tenant_id,
        status_codes=tuple(body.status_codes),
        probability=body.error_rate,
        times=body.times,
        duration_s=body.duration_s,
        latency_s=body.latency_ms / 1000 + body.hang_s,
        retry_after_s=body.retry_after_s,
        error_string=body.error_string,
        now=now,
    )
    return _fault_info(rule, now)


@router.post("/faults/rate-limit-storm", status_code=201)
async def rate_limit_storm(request: Request, body: StormCreate) -> FaultInfo:
    """Answer 429 to every matching request for `seconds` and/or the next `requests` requests."""
    if body.seconds is None and body.requests is None:
        raise HTTPException(422, "give seconds and/or requests")
    state = _state(request)
    now = state.clock.monotonic()
    rule = state.faults.add(
        function=body.function,
        tenant_id=body.tenant_id,
        status_codes=(429,),
        times=body.requests,
        duration_s=body.seconds,
        retry_after_s=body.retry_after_s,
        now=now,
    )
    return _fault_info(rule, now)


@router.get("/faults")
async def list_faults(request: Request) -> list[FaultInfo]:
    state = _state(request)
    now = state.clock.monotonic()
    return [_fault_info(r, now) for r in state.faults.rules()]


@router.delete("/faults", status_code=204)
async def clear_faults(request: Request) -> None:
    _state(request).faults.clear()


@router.delete("/faults/{fault_id}", status_code=204)
async def delete_fault(request: Request, fault_id: int) -> None:
    if not _state(request).faults.remove(fault_id):
        raise HTTPException(404, f"no fault {fault_id}")


@router.get("/settings")
async def get_settings(request: Request) -> dict[str, Any]:
    return _state(request).config.model_dump(exclude={"tenants"})


@router.patch("/settings")
async def patch_settings(request: Request, body: SettingsPatch) -> dict[str, Any]:
    """Change limits at run time (e.g. turn the rate limit on for one test)."""
    state = _state(request)
    changes = body.model_dump(exclude_none=True)
    seed = changes.pop("fault_seed", None)
    if seed is not None:
        state.faults.reseed(seed)
    state.config = state.config.model_copy(update=changes)
    return state.config.model_dump(exclude={"tenants"})

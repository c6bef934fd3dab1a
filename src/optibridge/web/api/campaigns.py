"""Campaigns: list with filters, detail with progress, and pause / resume / cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from optibridge import campaigns as ops
from optibridge.campaigns.story import with_purged_progress, with_purged_totals
from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.core.logs import get_logger
from optibridge.optimove.errors import OptimoveError
from optibridge.reporting.ondemand import ChannelPush, push_now
from optibridge.runtime import Runtime
from optibridge.store import engagements as engagement_store
from optibridge.web.api.common import (
    CONFLICT,
    MAX_BIGINT,
    NAME_PATTERN,
    NOT_FOUND,
    TENANT_PATTERN,
    Auth,
    CampaignId,
    ChannelName,
    CursorParam,
    LimitParam,
    Page,
    SafeRoute,
    TenantId,
    decode_cursor,
    page_of,
    translate,
)
from optibridge.web.auth import ApiError, Principal

Status = Literal["awaiting", "ingesting", "ingested", "failed", "canceled"]
ChannelQ = Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only this channel (name)")]
StatusQ = Annotated[Status | None, Query(description="Only campaigns in this status")]
PausedQ = Annotated[bool | None, Query(description="Only paused (true) or running (false) campaigns")]
CampaignQ = Annotated[int | None, Query(ge=0, le=MAX_BIGINT, description="Only this CampaignID")]


class ProgressOut(BaseModel):
    counts: dict[str, int] = Field(description="Messages by state: pending, claimed, sent, failed, ...")
    total: int
    sent: int
    done: int = Field(description="Messages in a final state")
    failed: int
    remaining: int = Field(description="pending + claimed")
    percent_sent: float
    percent_done: float
    rate_per_s: float = Field(description="Messages sent per second over the last minute")
    eta_s: float | None = Field(
        description="Seconds until the remaining are sent at that rate; null: unknown"
    )

    @classmethod
    def of(cls, p: ops.Progress) -> ProgressOut:
        return cls(**p.__dict__)


class IngestOut(BaseModel):
    pages: int
    customers: int
    messages: int
    no_address: int
    finished: bool
    ingested_at: datetime | None
    notes: list[str] = Field(
        default_factory=list,
        description="What looked wrong while paging (a server page cap, repeated customers, ...)",
    )


class CampaignOut(BaseModel):
    tenant_id: str
    channel: str
    channel_id: int
    campaign_id: int
    status: str
    paused: bool
    cancel_pending: bool
    error: str | None
    created_at: datetime
    canceled_at: datetime | None
    updated_at: datetime
    ingest: IngestOut
    progress: ProgressOut

    @classmethod
    def of(cls, c: ops.Campaign) -> CampaignOut:
        return cls(
            tenant_id=c.tenant_id,
            channel=c.channel,
            channel_id=c.channel_id,
            campaign_id=c.campaign_id,
            status=c.status,
            paused=c.paused,
            cancel_pending=c.cancel_pending,
            error=c.error,
            created_at=c.created_at,
            canceled_at=c.canceled_at,
            updated_at=c.updated_at,
            ingest=IngestOut(
                pages=c.ingest_pages,
                customers=c.customers,
                messages=c.messages,
                no_address=c.no_address,
                finished=c.status in ("ingested", "canceled", "failed"),
                ingested_at=c.ingested_at,
                notes=list(c.ingest_notes),
            ),
            progress=ProgressOut.of(c.progress),
        )


class TemplateProgressOut(BaseModel):
    template_id: int
    progress: ProgressOut


class FailureOut(BaseModel):
    reason: str
    count: int


class EngagementOut(BaseModel):
    """Event 14 (docs/flows/event14.md): the engagement this campaign came from, as its metadata said."""

    engagement_id: int
    status: str
    template_id: str | None = Field(description="Exact, as text: Optimove's ids may exceed 2^53")
    scheduled_time: datetime | None
    duration_days: int | None = Field(description="The reporting window, in days")
    promotions: list[str]
    tags: list[str]
    number_of_files: int | None
    number_of_customers: int | None
    error: str | None


class CampaignDetailOut(CampaignOut):
    engagement: EngagementOut | None = Field(
        default=None, description="Set when the campaign came through event 14 (webhook + GCS files)"
    )
    templates: list[TemplateProgressOut]
    failures: list[FailureOut] = Field(description="Failed messages by reason, most frequent first")
    purged_at: datetime | None = Field(
        default=None,
        description="When the retention job summarized and deleted the campaign's message rows: "
        "progress is then from the per-state totals it kept, failures by reason are gone",
    )


class ActionOut(BaseModel):
    outcome: str
    campaign: CampaignDetailOut


def detail_out(d: ops.CampaignDetail, purged_at: datetime | None = None) -> CampaignDetailOut:
    base = CampaignOut.of(d.campaign)
    return CampaignDetailOut(
        **base.__dict__,
        templates=[
            TemplateProgressOut(template_id=t, progress=ProgressOut.of(p)) for t, p in d.templates.items()
        ],
        failures=[FailureOut(reason=r, count=n) for r, n in d.failures],
        purged_at=purged_at,
    )


def parse_after(cursor: str | None) -> tuple[datetime, str, int, int] | None:
    values = decode_cursor(cursor, (str, str, int, int))
    if values is None:
        return None
    try:
        created = datetime.fromisoformat(values[0])
    except ValueError:
        raise ApiError(
            422, "invalid request", "cursor: not a cursor returned by this list", extra={"field": "cursor"}
        ) from None
    return created, values[1], values[2], values[3]


log = get_logger(__name__)
# How long the API waits for an on-demand push before answering 202 (it goes on regardless).
REPORT_PUSH_WAIT_S = 5.0


class ReportPushOut(BaseModel):
    channel_id: int
    metrics_sent: int = Field(description="Metric totals sent (UpdateCampaignMetrics items)")
    interactions_sent: int = Field(description="Customers newly sent in interaction lists")
    complete: bool = Field(description="False if interactions were left for the schedule to send")


class ReportPushesOut(BaseModel):
    tenant_id: str
    campaign_id: int
    pushes: list[ReportPushOut]


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["campaigns"])

    async def listing(
        principal: Principal,
        tenant_id: str | None,
        channel: str | None,
        status: str | None,
        paused: bool | None,
        campaign_id: int | None,
        limit: int,
        cursor: str | None,
    ) -> Page[CampaignOut]:
        after = parse_after(cursor)
        if tenant_id is not None:
            principal.require_tenant(tenant_id)
        else:
            tenant_id = principal.tenant_id
        flt = ops.CampaignFilter(tenant_id, channel, status, paused, campaign_id)
        async with runtime.pool.connection() as conn:
            rows = await ops.list_campaigns(conn, flt, after=after, limit=limit + 1)
            rows = await with_purged_progress(conn, rows)  # purged: progress from the totals kept
        items = [CampaignOut.of(c) for c in rows]
        return page_of(
            items, limit, lambda c: [c.created_at.isoformat(), c.tenant_id, c.channel_id, c.campaign_id]
        )

    @api.get("/campaigns", summary="Campaigns of every tenant the key sees, newest first")
    async def list_all(
        principal: Auth,
        tenant_id: Annotated[
            str | None, Query(pattern=TENANT_PATTERN, description="Only this tenant")
        ] = None,
        channel: ChannelQ = None,
        status: StatusQ = None,
        paused: PausedQ = None,
        campaign_id: CampaignQ = None,
        limit: LimitParam = 50,
        cursor: CursorParam = None,
    ) -> Page[CampaignOut]:
        return await listing(principal, tenant_id, channel, status, paused, campaign_id, limit, cursor)

    @api.get("/tenants/{tenant_id}/campaigns", summary="A tenant's campaigns, newest first")
    async def list_tenant(
        principal: Auth,
        tenant_id: TenantId,
        channel: ChannelQ = None,
        status: StatusQ = None,
        paused: PausedQ = None,
        campaign_id: CampaignQ = None,
        limit: LimitParam = 50,
        cursor: CursorParam = None,
    ) -> Page[CampaignOut]:
        return await listing(principal, tenant_id, channel, status, paused, campaign_id, limit, cursor)

    base = "/tenants/{tenant_id}/channels/{channel}/campaigns/{campaign_id}"

    @api.get(
        base, summary="A campaign with its progress, per-template counts and failures", responses=NOT_FOUND
    )
    async def get_campaign(
        principal: Auth, tenant_id: TenantId, channel: ChannelName, campaign_id: CampaignId
    ) -> CampaignDetailOut:
        principal.require_tenant(tenant_id)
        async with runtime.pool.connection() as conn:
            try:
                d = await ops.get_campaign(conn, tenant_id, channel, campaign_id)
                out = detail_out(*await with_purged_totals(conn, d))
            except NotFoundError as exc:
                raise translate(exc) from None
            for e in await engagement_store.of_campaign(conn, tenant_id, campaign_id):
                if e.channel_id == out.channel_id and e.status != "duplicate":
                    out.engagement = EngagementOut(
                        engagement_id=e.engagement_id,
                        status=e.status,
                        template_id=str(e.template_id) if e.template_id is not None else None,
                        scheduled_time=e.scheduled_time,
                        duration_days=e.duration_days,
                        promotions=e.promotions,
                        tags=e.tags,
                        number_of_files=e.number_of_files,
                        number_of_customers=e.number_of_customers,
                        error=e.error,
                    )
            return out

    async def action(tenant_id: str, channel: str, campaign_id: int, what: ops.Action) -> ActionOut:
        async with runtime.pool.connection() as conn:
            try:
                outcome = await ops.act(conn, tenant_id, channel, campaign_id, what)
                detail = await ops.get_campaign(conn, tenant_id, channel, campaign_id)
            except (NotFoundError, ConflictError) as exc:
                raise translate(exc) from None
        return ActionOut(outcome=outcome, campaign=detail_out(detail))

    @api.post(
        base + "/pause",
        summary="Stop sending this campaign's messages until resumed",
        responses={**NOT_FOUND, **CONFLICT},
    )
    async def pause(
        principal: Auth, tenant_id: TenantId, channel: ChannelName, campaign_id: CampaignId
    ) -> ActionOut:
        principal.require_tenant(tenant_id)
        return await action(tenant_id, channel, campaign_id, "pause")

    @api.post(base + "/resume", summary="Send again after a pause", responses={**NOT_FOUND, **CONFLICT})
    async def resume(
        principal: Auth, tenant_id: TenantId, channel: ChannelName, campaign_id: CampaignId
    ) -> ActionOut:
        principal.require_tenant(tenant_id)
        return await action(tenant_id, channel, campaign_id, "resume")

    @api.post(
        base + "/cancel",
        summary="Cancel: status 'canceled', every pending message canceled (as a cancel from Optimove)",
        responses=NOT_FOUND,
    )
    async def cancel(
        principal: Auth, tenant_id: TenantId, channel: ChannelName, campaign_id: CampaignId
    ) -> ActionOut:
        principal.require_tenant(tenant_id)
        return await action(tenant_id, channel, campaign_id, "cancel")

    # Pushes that outlived their request: kept referenced until they end (asyncio holds only weak
    # references to tasks), their failures logged.
    running: set[asyncio.Task[list[ChannelPush]]] = set()

    def finished(task: asyncio.Task[list[ChannelPush]]) -> None:
        running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("on-demand report push failed", error=str(task.exception())[:300])

    @api.post(
        "/tenants/{tenant_id}/campaigns/{campaign_id}/report-push",
        summary="Push this campaign's results to Optimove now, outside the schedule (every channel)",
        response_model=ReportPushesOut,
        responses={
            **NOT_FOUND,
            **CONFLICT,
            202: {
                "description": "Still pushing (Optimove is slow or retrying); it goes on in the background"
            },
            502: {"description": "Optimove refused the push"},
        },
    )
    async def report_push(
        principal: Auth, tenant_id: TenantId, campaign_id: CampaignId
    ) -> ReportPushesOut | JSONResponse:
        principal.require_tenant(tenant_id)
        # The push is never cancelled with the request: cut between Optimove's acceptance of an
        # interaction list and our record of it, it would send those customers again next time.
        task = asyncio.create_task(push_now(runtime, campaign_id, tenant_id=tenant_id, now=datetime.now(UTC)))
        running.add(task)
        task.add_done_callback(finished)
        done, _ = await asyncio.wait({task}, timeout=REPORT_PUSH_WAIT_S)
        if not done:
            return JSONResponse(
                {"tenant_id": tenant_id, "campaign_id": campaign_id, "status": "running"}, status_code=202
            )
        try:
            pushed = task.result()
        except (NotFoundError, ConflictError) as exc:
            raise translate(exc) from None
        except OptimoveError as exc:
            # Our own summary only: an upstream body is never handed to an API caller.
            raise ApiError(
                502, "optimove error", f"Optimove did not accept the push ({type(exc).__name__})"
            ) from None
        return ReportPushesOut(
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            pushes=[
                ReportPushOut(
                    channel_id=p.channel_id,
                    metrics_sent=p.metrics_sent,
                    interactions_sent=p.interactions_sent,
                    complete=p.complete,
                )
                for p in pushed
            ],
        )

    return api

"""Campaign pages: the list (with a refreshed rows fragment), one campaign, pause/resume/cancel."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from optibridge import campaigns as campaign_store
from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.web.api.campaigns import parse_after
from optibridge.web.api.common import encode_cursor
from optibridge.web.auth import ApiError
from optibridge.web.dashboard.common import PAGE_SIZE, PREFIX, Dashboard, Loader, Viewer


def add_routes(api: APIRouter, ui: Dashboard) -> None:
    runtime = ui.runtime

    async def campaign_rows(viewer: Viewer, request: Request) -> dict[str, Any]:
        q = request.query_params
        tenant = q.get("tenant") or None
        if tenant is not None:
            viewer.principal.require_tenant(tenant)
        else:
            tenant = viewer.principal.tenant_id
        status = q.get("status") or None
        if status is not None and status not in campaign_store.CAMPAIGN_STATUSES:
            raise ApiError(422, "invalid request", f"unknown status {status!r}")
        flt = campaign_store.CampaignFilter(tenant_id=tenant, status=status)
        after = parse_after(q.get("cursor"))
        async with runtime.pool.connection() as conn:
            rows = await campaign_store.list_campaigns(conn, flt, after=after, limit=PAGE_SIZE + 1)
            failures = await campaign_store.failure_reasons(conn, [c.key for c in rows[:PAGE_SIZE]])
        next_cursor = None
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE]
            last = rows[-1]
            next_cursor = encode_cursor(
                [last.created_at.isoformat(), last.tenant_id, last.channel_id, last.campaign_id]
            )
        return {
            "campaigns": rows,
            "failures": failures,
            "next_cursor": next_cursor,
            "tenant": tenant,
            "status": status,
        }

    @api.get("/campaigns")
    async def campaigns_page(request: Request) -> Response:
        return await ui.view(
            request,
            lambda viewer: campaign_rows(viewer, request),
            "campaigns.html",
            nav="campaigns",
            query=request.url.query,
            statuses=campaign_store.CAMPAIGN_STATUSES,
        )

    @api.get("/campaigns/rows")
    async def campaigns_rows(request: Request) -> Response:
        return await ui.view(request, lambda viewer: campaign_rows(viewer, request), "_campaign_rows.html")

    async def campaign_detail(
        viewer: Viewer, tenant: str, channel: str, campaign_id: int
    ) -> campaign_store.CampaignDetail:
        viewer.principal.require_tenant(tenant)
        async with runtime.pool.connection() as conn:
            try:
                return await campaign_store.get_campaign(conn, tenant, channel, campaign_id)
            except NotFoundError as exc:
                raise ApiError(404, "not found", str(exc)) from None

    def detail_of(tenant: str, channel: str, campaign_id: int) -> Loader:
        async def load(viewer: Viewer) -> dict[str, Any]:
            return {"d": await campaign_detail(viewer, tenant, channel, campaign_id)}

        return load

    @api.get("/campaigns/{tenant}/{channel}/{campaign_id}")
    async def campaign_page(request: Request, tenant: str, channel: str, campaign_id: int) -> Response:
        outcome = request.query_params.get("outcome")
        load = detail_of(tenant, channel, campaign_id)
        return await ui.view(request, load, "campaign.html", nav="campaigns", outcome=outcome)

    @api.get("/campaigns/{tenant}/{channel}/{campaign_id}/progress")
    async def campaign_progress(request: Request, tenant: str, channel: str, campaign_id: int) -> Response:
        return await ui.view(request, detail_of(tenant, channel, campaign_id), "_campaign_progress.html")

    @api.post("/campaigns/{tenant}/{channel}/{campaign_id}/{action}")
    async def campaign_action(
        request: Request, tenant: str, channel: str, campaign_id: int, action: str
    ) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        if refused := await ui.csrf_refused(request, viewer):
            return refused
        what = next((a for a in campaign_store.ACTIONS if a == action), None)
        if what is None:
            return ui.error(request, viewer, ApiError(404, "not found", f"no action {action!r}"))
        try:
            viewer.principal.require_tenant(tenant)
            async with runtime.pool.connection() as conn:
                outcome = await campaign_store.act(conn, tenant, channel, campaign_id, what)
        except ApiError as exc:
            return ui.error(request, viewer, exc)
        except NotFoundError as exc:
            return ui.error(request, viewer, ApiError(404, "not found", str(exc)))
        except ConflictError as exc:
            return ui.error(request, viewer, ApiError(409, "conflict", str(exc)))
        target = f"{PREFIX}/campaigns/{quote(tenant)}/{quote(channel)}/{campaign_id}?outcome={quote(outcome)}"
        return RedirectResponse(target, status_code=303)

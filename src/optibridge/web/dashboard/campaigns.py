"""Campaign pages: the list (with a refreshed rows fragment), one campaign's whole life (stage,
progress, funnel counted vs received by Optimove, push history, charts), pause/resume/cancel and
"push now" (the on-demand report push).

Times are read from the dashboard clock: `app.state.dashboard_clock` if the app was given one (the
browser tests move it through a campaign's seven days), else the wall clock.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from optibridge import campaigns as campaign_store
from optibridge.campaigns import story as campaign_story
from optibridge.campaigns.actions import decide_push
from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.core.logs import get_logger
from optibridge.optimove.errors import OptimoveError
from optibridge.reporting.ondemand import push_now
from optibridge.reporting.show import campaign_overview
from optibridge.store import campaign_story as story_store
from optibridge.web.api.campaigns import parse_after
from optibridge.web.api.common import encode_cursor
from optibridge.web.auth import ApiError
from optibridge.web.dashboard import charts
from optibridge.web.dashboard.common import PAGE_SIZE, PREFIX, Dashboard, Loader, Viewer

log = get_logger(__name__)

# The funnel's metrics in Optimove's MetricID order, the order of `reports show` and the demo's table
# (names as reporting.show has them).
FUNNEL = ("sent", "delivered", "opened", "clicked", "unsubscribed", "dropped", "spam", "bounced")
EVENT_NAMES = {
    1: "delivered",
    2: "opened",
    3: "clicked",
    4: "unsubscribed",
    5: "dropped",
    6: "spam",
    9: "bounced",
}
# A dashboard push waits this long for Optimove, then goes on in the background (as the API's does).
PUSH_WAIT_S = 20.0
_pushes: set[asyncio.Task[Any]] = set()


# A campaign counts as late when it has messages due longer ago than this and still pending.
LATE_GRACE_S = 60.0


def late_reason(
    inputs: story_store.LatenessInputs, *, now: datetime, paused: bool, hold_until: datetime | None
) -> str | None:
    """Why a campaign's due messages wait, in one line; None when it is not late.

    From what the database already knows: the channel's options (rate_per_s, lanes), the send jobs
    running for it (their lane locks) and the workers' heartbeats. A provider benched by a worker is
    that worker's memory only: what shows from here is a channel sending below its limits with every
    lane busy or not, and the provider error counters say the rest.
    """
    if inputs.overdue == 0 or inputs.oldest_due is None:
        return None
    late_s = (now - inputs.oldest_due).total_seconds()
    more = "+" if inputs.overdue >= 100_000 else ""  # counted up to a cap
    head = f"late: {inputs.overdue:,}{more} messages overdue, oldest by {late_s:,.0f} s"
    if paused:
        return f"{head}: the campaign is paused"
    if hold_until is not None and hold_until > now:
        return f"{head}: on hold until {hold_until:%Y-%m-%d %H:%M} UTC"
    if inputs.workers == 0:
        return f"{head}: no worker is running (no heartbeat in 30 s)"
    lanes = int(inputs.channel_options.get("lanes", 2))
    rate = inputs.channel_options.get("rate_per_s")
    sent_per_s = inputs.sent_last_minute / 60.0
    if rate is not None and sent_per_s >= 0.8 * float(rate) * min(inputs.workers, lanes):
        limit = float(rate) * min(inputs.workers, lanes)
        return f"{head}: channel at its rate limit ({float(rate):g}/s per worker, {limit:g}/s now)"
    if inputs.lanes_busy >= lanes:
        return (
            f"{head}: all {lanes} lanes busy ({sent_per_s:,.0f}/s): the channel sends as fast as "
            "its lanes and providers allow (more lanes or workers, or a faster provider)"
        )
    if inputs.lanes_busy == 0:
        return f"{head}: no send job running for this channel (a tick is due every second; see /healthz)"
    return f"{head}: providers throttling or benched ({sent_per_s:,.0f}/s); see provider errors"


def clock_of(request: Request) -> datetime:
    """The dashboard's now: the app's `dashboard_clock` if one was installed (tests), else UTC now."""
    clock: object = getattr(request.app.state, "dashboard_clock", None)
    if callable(clock):
        found: object = clock()
        if isinstance(found, datetime):
            return found
    return datetime.now(UTC)


def funnel_rows(overview: list[dict[str, Any]], channel_id: int) -> list[dict[str, Any]]:
    """Per template of this channel: each metric as we count it now and as Optimove last accepted
    it (None: never pushed), and whether they differ. The same numbers `reports show` and the demo's
    table print (reporting.show.campaign_overview)."""
    rows = []
    for block in overview:
        if block["channel_id"] != channel_id:
            continue
        for t in block["templates"]:
            cells = []
            for name in FUNNEL:
                counted = int(t["counted"].get(name) or 0)
                reported = t["reported"].get(name)
                cells.append(
                    {
                        "metric": name,
                        "counted": counted,
                        "reported": reported,
                        "differs": reported is None or int(reported) != counted,
                    }
                )
            rows.append({"template_id": t["template_id"], "cells": cells})
    return rows


def _finished(task: asyncio.Task[Any]) -> None:
    _pushes.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("dashboard report push failed", error=str(task.exception())[:300])


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
            rows = await campaign_story.with_purged_progress(conn, rows)  # purged: totals kept
            failures = await campaign_store.failure_reasons(conn, [c.key for c in rows[:PAGE_SIZE]])
            stages = await campaign_story.stages_for(conn, rows[:PAGE_SIZE], clock_of(request))
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
            "stages": stages,
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
                d = await campaign_store.get_campaign(conn, tenant, channel, campaign_id)
                # A purged campaign's progress comes from the totals kept (its rows are gone).
                return (await campaign_story.with_purged_totals(conn, d))[0]
            except NotFoundError as exc:
                raise ApiError(404, "not found", str(exc)) from None

    def detail_of(request: Request, tenant: str, channel: str, campaign_id: int, *, full: bool) -> Loader:
        """The campaign with its story; `full` adds the funnel, push history and charts."""

        async def load(viewer: Viewer) -> dict[str, Any]:
            d = await campaign_detail(viewer, tenant, channel, campaign_id)
            now = clock_of(request)
            c = d.campaign
            async with runtime.pool.connection() as conn:
                s = await campaign_story.story(conn, c, now, charts=full)
                data: dict[str, Any] = {"d": d, "s": s, "now": now, "late_reason": None}
                if not full:
                    return data
                # With the story (its 15 s refresh), not the 2 s progress: it counts overdue rows.
                inputs = await story_store.lateness_inputs(conn, c.key, now=now, grace_s=LATE_GRACE_S)
                data["late_reason"] = late_reason(
                    inputs, now=now, paused=c.paused, hold_until=s.facts.hold_until
                )
                overview = await campaign_overview(
                    conn, campaign_id, tenant, now=now, channel_id=c.channel_id
                )
            minutes = charts.fill_minutes([(m.minute, m.sent, m.due) for m in s.minutes])
            end = now if s.schedule is None else min(now, s.schedule.final_at)
            start = s.schedule.finished_at if s.schedule else s.facts.first_sent_at
            hours = charts.fill_hours(
                [(h.hour, h.opened, h.clicked) for h in s.hours], start, end if start else None
            )
            data |= {
                "funnel": funnel_rows(overview, c.channel_id),
                "funnel_metrics": FUNNEL,
                "event_names": EVENT_NAMES,
                "sends_svg": charts.sends_chart(minutes),
                "send_minutes": len(minutes),
                "engagement_svg": charts.engagement_chart(hours),
            }
            return data

        return load

    @api.get("/campaigns/{tenant}/{channel}/{campaign_id}")
    async def campaign_page(request: Request, tenant: str, channel: str, campaign_id: int) -> Response:
        outcome = request.query_params.get("outcome")
        load = detail_of(request, tenant, channel, campaign_id, full=True)
        return await ui.view(request, load, "campaign.html", nav="campaigns", outcome=outcome)

    @api.get("/campaigns/{tenant}/{channel}/{campaign_id}/progress")
    async def campaign_progress(request: Request, tenant: str, channel: str, campaign_id: int) -> Response:
        load = detail_of(request, tenant, channel, campaign_id, full=False)
        return await ui.view(request, load, "_campaign_progress.html")

    @api.get("/campaigns/{tenant}/{channel}/{campaign_id}/story")
    async def campaign_story_part(request: Request, tenant: str, channel: str, campaign_id: int) -> Response:
        load = detail_of(request, tenant, channel, campaign_id, full=True)
        return await ui.view(request, load, "_campaign_story.html")

    async def push(request: Request, viewer: Viewer, tenant: str, channel: str, campaign_id: int) -> str:
        """The on-demand push, if the campaign's stage allows one (the rule the button follows)."""
        d = await campaign_detail(viewer, tenant, channel, campaign_id)
        now = clock_of(request)
        async with runtime.pool.connection() as conn:
            s = await campaign_story.story(conn, d.campaign, now, charts=False)
        closed = s.stage.word == "closed" or (s.schedule is not None and s.schedule.state != "active")
        step = decide_push(reportable=s.stage.reportable, closed=closed)
        if step != "push":
            raise ApiError(409, "conflict", f"campaign {campaign_id}: {step}; no push")
        # Never cancelled with the request: cut between Optimove's acceptance of an interaction
        # list and our record of it, it would send those customers again next time.
        task = asyncio.create_task(push_now(runtime, campaign_id, tenant_id=tenant, now=now))
        _pushes.add(task)
        task.add_done_callback(_finished)
        done, _ = await asyncio.wait({task}, timeout=PUSH_WAIT_S)
        if not done:
            return "push still running (Optimove is slow); it goes on in the background"
        try:
            pushed = task.result()
        except NotFoundError as exc:
            raise ApiError(404, "not found", str(exc)) from None
        except ConflictError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except OptimoveError as exc:
            # Our own summary only: an upstream body is never shown.
            raise ApiError(
                502, "optimove error", f"Optimove did not accept the push ({type(exc).__name__})"
            ) from None
        return "pushed: " + "; ".join(
            f"channel {p.channel_id}: {p.metrics_sent} metric value(s), "
            f"{p.interactions_sent} new interaction(s)"
            + ("" if p.complete else " (more left for the next push)")
            for p in pushed
        )

    @api.post("/campaigns/{tenant}/{channel}/{campaign_id}/{action}")
    async def campaign_action(
        request: Request, tenant: str, channel: str, campaign_id: int, action: str
    ) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        if refused := await ui.csrf_refused(request, viewer):
            return refused
        if action == "push":
            try:
                viewer.principal.require_tenant(tenant)
                outcome = await push(request, viewer, tenant, channel, campaign_id)
            except ApiError as exc:
                return ui.error(request, viewer, exc)
            target = (
                f"{PREFIX}/campaigns/{quote(tenant)}/{quote(channel)}/{campaign_id}?outcome={quote(outcome)}"
            )
            return RedirectResponse(target, status_code=303)
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

"""Channel health on the tenants page: per channel of the viewer's tenants (a tenant-scoped key sees
its own only), over the last 15 minutes: sends (and in the last minute), failures, error rate and
top reasons, messages in flight against what the channel's workers may hold at once, messages
waiting because every provider was benched, and the providers benched right now.

Counts come from the message rows, so they cover every worker process. A provider's bench is kept
in the memory of the worker that benched it (delivery/providers.py); this page sees the benches of
workers in its own process (`serve --workers 1`), and says so when it has none to look at.

The page is a fragment the tenants page includes (refreshed every 30 s), or a page of its own at
/ui/tenants/health (readable without JavaScript).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from optibridge.core.config import ChannelOptions
from optibridge.delivery.dispatcher import Dispatcher
from optibridge.delivery.providers import ChannelProviders
from optibridge.delivery.triage import BENCHED
from optibridge.store import campaign_story as store
from optibridge.web.dashboard.campaigns import clock_of
from optibridge.web.dashboard.common import Dashboard, Viewer

WINDOW_S = 15 * 60


@dataclass(frozen=True, slots=True)
class Bench:
    provider: str
    seconds_left: float
    failures: int  # batches in a row that came back mostly throttled or failing


@dataclass(frozen=True)
class ChannelHealth:
    tenant_id: str
    name: str
    kind: str
    channel_id: int
    sent: int
    sent_last_minute: int
    failed: int
    retried: int
    error_rate: float | None  # failed / (sent + failed) in the window; None: nothing happened
    reasons: list[tuple[str, int]]
    in_flight: int
    in_flight_limit: int  # lanes x claim_chunks x chunk per worker process, times the processes
    rate_limit_per_s: float | None
    waiting_for_provider: int
    benched: list[Bench] | None = field(default=None)  # None: no worker in this process to ask


def benches(providers: ChannelProviders, now: float) -> list[Bench]:
    """The providers of a channel benched at monotonic time `now`."""
    return [
        Bench(p.name, round(h.benched_until - now, 1), h.failures)
        for p, h in zip(providers.providers, providers.health, strict=True)
        if h.benched_until > now
    ]


def in_flight_limit(options: dict[str, Any], workers: int) -> tuple[int, float | None]:
    """What the channel's send jobs may hold claimed at once, and its rate limit, over all worker
    processes (`rate_per_s` and lanes are per process)."""
    try:
        opts = ChannelOptions.model_validate(options)
    except ValidationError:
        opts = ChannelOptions()
    processes = max(1, workers)
    rate = opts.rate_per_s * processes if opts.rate_per_s else None
    return opts.lanes * opts.claim_chunks * opts.chunk * processes, rate


def summarise(
    channel: store.ChannelLimits,
    activity: store.ChannelActivity | None,
    workers: int,
    benched: list[Bench] | None,
) -> ChannelHealth:
    limit, rate = in_flight_limit(channel.options, workers)
    a = activity or store.ChannelActivity(channel.tenant_id, channel.channel_id, 0, 0, 0, 0, 0, 0, [])
    done = a.sent + a.failed
    return ChannelHealth(
        tenant_id=channel.tenant_id,
        name=channel.name,
        kind=channel.kind,
        channel_id=channel.channel_id,
        sent=a.sent,
        sent_last_minute=a.sent_last_minute,
        failed=a.failed,
        retried=a.retried,
        error_rate=round(100.0 * a.failed / done, 1) if done else None,
        reasons=a.reasons,
        in_flight=a.in_flight,
        in_flight_limit=limit,
        rate_limit_per_s=rate,
        waiting_for_provider=a.waiting_for_provider,
        benched=benched,
    )


def add_routes(api: APIRouter, ui: Dashboard) -> None:
    runtime = ui.runtime

    def local_benches() -> dict[tuple[str, int], list[Bench]] | None:
        found = runtime.extras.get("dispatcher")
        if not isinstance(found, Dispatcher):
            return None
        now = time.monotonic()
        return {key: benches(ch.providers, now) for key, ch in found.registry.channels.items()}

    async def load(viewer: Viewer, now: datetime) -> dict[str, Any]:
        tenant = viewer.principal.tenant_id  # None for an admin key: every tenant
        async with runtime.pool.connection() as conn:
            channels = await store.channels_of(conn, tenant)
            activity = await store.channel_activity(
                conn, tenant, now=now, window_s=WINDOW_S, benched_reason=BENCHED
            )
        by_key = {(a.tenant_id, a.channel_id): a for a in activity}
        local = local_benches()
        workers = runtime.settings.workers
        health = [
            summarise(
                ch,
                by_key.get((ch.tenant_id, ch.channel_id)),
                workers,
                None if local is None else local.get((ch.tenant_id, ch.channel_id), []),
            )
            for ch in channels
        ]
        return {"health": health, "health_window_min": WINDOW_S // 60, "health_at": now, "workers": workers}

    @api.get("/tenants/health")
    async def channel_health(request: Request) -> Response:
        now = clock_of(request)
        fragment = request.headers.get("x-requested-with") == "fetch"
        return await ui.view(
            request,
            lambda viewer: load(viewer, now),
            "_channel_health.html" if fragment else "channel_health.html",
            nav="tenants",
        )

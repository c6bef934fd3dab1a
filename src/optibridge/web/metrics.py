"""Prometheus metrics: what the database says (at scrape time) and what this process counted.

From the database, cluster-wide, refreshed at most every `SNAPSHOT_TTL_S` seconds:

    optibridge_messages{tenant,channel,state}            messages by state (gauge)
    optibridge_campaigns{status}                         campaigns by status (gauge)
    optibridge_campaigns_paused                          paused campaigns (gauge)
    optibridge_jobs{queue,status}                        procrastinate jobs (gauge)
    optibridge_metrics_snapshot_age_seconds              age of those numbers

Counted by the process that does the work: optibridge.core.telemetry (the dispatcher and the
Optimove client feed it without loading this web module).

Several processes: `serve --workers N` (N > 1) keeps every process's counters in a fresh folder
of its own (PROMETHEUS_MULTIPROC_DIR, set for its children) and sums them at scrape time; with one
process (`--workers 0/1`) there is nothing to sum. A standalone `optibridge worker` (another
machine) serves its own counters on `metrics_port` (`worker_metrics_app` below): scrape each
machine. An operator's own PROMETHEUS_MULTIPROC_DIR is used as is. See docs/observability.md.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from aiohttp import web
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from optibridge.core.errors import ConfigError
from optibridge.core.logs import get_logger
from optibridge.core.telemetry import process_registry
from optibridge.runtime import Runtime
from optibridge.store import stats

log = get_logger(__name__)

SNAPSHOT_TTL_S = 5.0
QUERY_TIMEOUT_MS = 3000


# -- the database snapshot -------------------------------------------------------------------------


@dataclass
class Snapshot:
    taken: float = 0.0  # time.monotonic() of the last refresh; 0: never
    messages: list[tuple[str, str, str, int]] = field(default_factory=list)  # tenant, channel, state, n
    campaigns: dict[str, int] = field(default_factory=dict)
    paused: int = 0
    jobs: list[tuple[str, str, int]] = field(default_factory=list)
    errors: int = 0  # refreshes that failed so far (carried from snapshot to snapshot)


async def _take(conn: stats.Conn) -> Snapshot:
    snap = Snapshot()
    async with conn.transaction():
        await stats.set_statement_timeout(conn, QUERY_TIMEOUT_MS)
        # Every channel shows every state, 0 included, so rates and alerts see a series from the start.
        snap.messages = await stats.message_counts(conn)
        campaigns = await stats.campaign_counts(conn)
        snap.campaigns = campaigns.by_status
        snap.paused = campaigns.paused
        snap.jobs = await stats.job_counts(conn)
    snap.taken = time.monotonic()
    return snap


class DatabaseCollector(Collector):
    """Gauges from the last snapshot; `MetricsState.refresh` keeps it fresh before each scrape."""

    def __init__(self, state: MetricsState) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        snap = self._state.snapshot
        messages = GaugeMetricFamily(
            "optibridge_messages",
            "Messages by tenant, channel and state",
            labels=["tenant", "channel", "state"],
        )
        for tenant, channel, state, n in snap.messages:
            messages.add_metric([tenant, channel, state], n)
        yield messages
        campaigns = GaugeMetricFamily("optibridge_campaigns", "Campaigns by status", labels=["status"])
        for status, n in sorted(snap.campaigns.items()):
            campaigns.add_metric([status], n)
        yield campaigns
        yield GaugeMetricFamily("optibridge_campaigns_paused", "Paused campaigns", value=snap.paused)
        jobs = GaugeMetricFamily("optibridge_jobs", "Jobs by queue and status", labels=["queue", "status"])
        for queue, status, n in sorted(snap.jobs):
            jobs.add_metric([queue, status], n)
        yield jobs
        age = time.monotonic() - snap.taken if snap.taken else -1.0
        yield GaugeMetricFamily(
            "optibridge_metrics_snapshot_age_seconds",
            "Age of the database numbers above (-1: never read)",
            value=round(age, 3),
        )
        # Counted here, not in a process-wide Counter: it is the scraping process's own figure,
        # and in multiprocess mode only file-backed series would be exposed.
        errors = CounterMetricFamily(
            "optibridge_metrics_snapshot_errors", "Scrapes whose database numbers could not be refreshed"
        )
        errors.add_metric([], snap.errors)
        yield errors


class MetricsState:
    def __init__(self, runtime: Runtime, ttl_s: float = SNAPSHOT_TTL_S) -> None:
        self.runtime = runtime
        self.ttl_s = ttl_s
        self.snapshot = Snapshot()
        self._lock = asyncio.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DatabaseCollector(self))

    def fresh(self) -> bool:
        return bool(self.snapshot.taken) and time.monotonic() - self.snapshot.taken < self.ttl_s

    async def refresh(self) -> None:
        if self.fresh():
            return
        async with self._lock:  # one query for many concurrent scrapes
            if self.fresh():
                return
            try:
                async with self.runtime.pool.connection(timeout=QUERY_TIMEOUT_MS / 1000) as conn:
                    fresh = await _take(conn)
                fresh.errors = self.snapshot.errors
                self.snapshot = fresh
            except Exception as exc:  # a scrape must answer; the age gauge shows staleness
                self.snapshot.errors += 1
                log.warning("metrics: database numbers not refreshed", error=str(exc)[:300])

    async def exposition(self) -> bytes:
        await self.refresh()
        return generate_latest(process_registry()) + generate_latest(self.registry)


def metrics_allowed(client_host: str | None, authorization: str | None, token: str | None) -> bool:
    """Who may scrape: with a token, whoever presents it; without one, loopback clients only.

    /metrics is on the public port beside the listener and tracking endpoints, and names tenants
    and their volumes: the Internet must not read it.
    """
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    try:
        return client_host is not None and ipaddress.ip_address(client_host).is_loopback
    except ValueError:
        return False


def router(runtime: Runtime) -> APIRouter:
    state = MetricsState(runtime)
    api = APIRouter(tags=["operations"])
    secret = runtime.settings.metrics_token
    token = secret.get_secret_value() if secret is not None else None

    @api.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
    )
    async def metrics(request: Request) -> Response:
        client = request.client.host if request.client else None
        if not metrics_allowed(client, request.headers.get("authorization"), token):
            # 404, not 401: nothing on this port says the metrics exist to a stranger.
            return Response(b'{"error": "not found"}', status_code=404, media_type="application/json")
        return Response(await state.exposition(), media_type=CONTENT_TYPE_LATEST)

    return api


def metric_names() -> Iterator[str]:
    """The documented names (tests check that /metrics shows each)."""
    yield from (
        "optibridge_messages",
        "optibridge_campaigns",
        "optibridge_campaigns_paused",
        "optibridge_jobs",
        "optibridge_metrics_snapshot_age_seconds",
        "optibridge_send_lateness_seconds",
        "optibridge_worker_processes",
        "optibridge_provider_sends_total",
        "optibridge_provider_errors_total",
        "optibridge_optimove_requests_total",
        "optibridge_optimove_request_seconds",
    )


# -- a standalone worker's own /metrics ----------------------------------------------------------


async def start_worker_metrics(host: str, port: int, token: str | None) -> Callable[[], Awaitable[None]]:
    """Serve this process's counters on host:port (GET /metrics, the same access rule as serve's:
    the token, or loopback clients only); returns the coroutine function that stops it.

    For `optibridge worker` on a machine without `serve`: each such process is scraped on its own
    port (Prometheus sums across targets), since a multiprocess folder cannot span machines.
    A small aiohttp server, not the FastAPI app: a worker has no use for the rest of it.
    """

    async def metrics(request: web.Request) -> web.Response:
        if not metrics_allowed(request.remote, request.headers.get("authorization"), token):
            return web.Response(status=404, text='{"error": "not found"}', content_type="application/json")
        body = await asyncio.to_thread(generate_latest, process_registry())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=64)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {host}:{port} for metrics: {exc.strerror or exc}") from None
    log.info("worker metrics listening", host=host, port=port)
    return runner.cleanup

"""Prometheus metrics: what the database says (at scrape time) and what this process counted.

From the database, cluster-wide, refreshed at most every `SNAPSHOT_TTL_S` seconds:

    optibridge_messages{tenant,channel,state}            messages by state (gauge)
    optibridge_campaigns{status}                         campaigns by status (gauge)
    optibridge_campaigns_paused                          paused campaigns (gauge)
    optibridge_jobs{queue,status}                        procrastinate jobs (gauge)
    optibridge_metrics_snapshot_age_seconds              age of those numbers

Counted by the process that does the work: optibridge.core.telemetry (the dispatcher and the
Optimove client feed it without loading this web module).

Several processes: by default each process serves only its own counters (a `serve` process
shows what its in-process worker counted). With `PROMETHEUS_MULTIPROC_DIR` set (an empty folder,
the same for `serve` and the worker processes it starts, set before they start), counters of every
process on the machine are summed at scrape time (prometheus-client's multiprocess mode).
See docs/observability.md.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from optibridge.core.logs import get_logger
from optibridge.core.telemetry import process_registry
from optibridge.runtime import Runtime
from optibridge.store import stats

log = get_logger(__name__)

SNAPSHOT_TTL_S = 5.0
QUERY_TIMEOUT_MS = 3000

SNAPSHOT_ERRORS = Counter(
    "optibridge_metrics_snapshot_errors", "Scrapes whose database numbers could not be refreshed"
)


# -- the database snapshot -------------------------------------------------------------------------


@dataclass
class Snapshot:
    taken: float = 0.0  # time.monotonic() of the last refresh; 0: never
    messages: list[tuple[str, str, str, int]] = field(default_factory=list)  # tenant, channel, state, n
    campaigns: dict[str, int] = field(default_factory=dict)
    paused: int = 0
    jobs: list[tuple[str, str, int]] = field(default_factory=list)


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
                    self.snapshot = await _take(conn)
            except Exception as exc:  # a scrape must answer; the age gauge shows staleness
                SNAPSHOT_ERRORS.inc()
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
        "optibridge_send_delay_seconds",
        "optibridge_provider_sends_total",
        "optibridge_provider_errors_total",
        "optibridge_optimove_requests_total",
        "optibridge_optimove_request_seconds",
    )

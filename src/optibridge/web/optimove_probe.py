"""Is a tenant's Optimove reachable with its credentials? A cached GetLastDataUpdate, one attempt.

The probe uses a client of its own with no retries and a short timeout (the shared client would
retry for minutes), and keeps each answer for `ttl_s`, so a dashboard refreshing every few seconds
costs Optimove one call a minute per tenant. Error texts are scrubbed of the tenant's credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from optibridge.optimove import NO_RETRY, OptimoveClient, OptimoveError, Timeouts
from optibridge.optimove.clients import client_config
from optibridge.runtime import Runtime
from optibridge.store import tenants as tenant_store

PROBE_TIMEOUT_S = 5.0
DEFAULT_TTL_S = 60.0


@dataclass(frozen=True)
class Reachability:
    ok: bool
    detail: str
    checked_at: datetime
    latency_ms: float | None = None


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


@contextlib.asynccontextmanager
async def one_off_client(runtime: Runtime, tenant_id: str) -> AsyncIterator[tuple[OptimoveClient, list[str]]]:
    """A client for one quick call: one attempt, short timeout; and the secrets to scrub from errors."""
    async with runtime.pool.connection() as conn:
        tenant = await tenant_store.get(conn, tenant_id)
        creds = await tenant_store.credentials(conn, runtime.box, tenant_id)
    config = dataclasses.replace(
        client_config(runtime.settings, tenant.api_base_url, creds),
        retry=NO_RETRY,
        timeouts=Timeouts(total_s=PROBE_TIMEOUT_S, connect_s=min(3.0, PROBE_TIMEOUT_S)),
    )
    client = OptimoveClient(config)
    try:
        yield client, list(creds.values())
    finally:
        await client.aclose()


async def probe(runtime: Runtime, tenant_id: str) -> Reachability:
    now = datetime.now(UTC)
    start = time.perf_counter()
    secrets: list[str] = []
    try:
        async with (
            asyncio.timeout(PROBE_TIMEOUT_S + 1),
            one_off_client(runtime, tenant_id) as (client, secrets),
        ):
            last = await client.get_last_data_update()
    except OptimoveError as exc:
        return Reachability(False, scrub(str(exc), secrets)[:300], now)
    except (TimeoutError, OSError) as exc:
        return Reachability(False, f"no answer: {type(exc).__name__}", now)
    latency = round((time.perf_counter() - start) * 1000, 1)
    return Reachability(True, f"last data update {last.isoformat()}", now, latency)


class ProbeCache:
    """Answers per tenant, kept `ttl_s`; concurrent askers of one tenant share one probe."""

    def __init__(self, runtime: Runtime, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._runtime = runtime
        self._ttl = ttl_s
        self._items: dict[str, tuple[float, Reachability]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def cached(self, tenant_id: str) -> Reachability | None:
        item = self._items.get(tenant_id)
        if item is None or time.monotonic() - item[0] > self._ttl:
            return None
        return item[1]

    async def get(self, tenant_id: str) -> Reachability:
        hit = self.cached(tenant_id)
        if hit is not None:
            return hit
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            hit = self.cached(tenant_id)
            if hit is not None:
                return hit
            result = await probe(self._runtime, tenant_id)
            self._items[tenant_id] = (time.monotonic(), result)
            return result

"""Is a tenant's Optimove reachable with its credentials? A cached GetLastDataUpdate, one attempt.

The probe uses a client of its own with no retries and a short timeout (the shared client would
retry for minutes), and keeps each answer for `ttl_s`, so a dashboard refreshing every few seconds
costs Optimove one call a minute per tenant. Failures are described in our words (`describe`):
never Optimove's body, which the server at a tenant's base URL controls; and scrubbed of the
tenant's credentials.
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
from optibridge.optimove.errors import (
    OptimoveHTTPError,
    OptimoveRequestError,
    OptimoveResponseError,
    OptimoveTimeoutError,
    OptimoveTransportError,
    status_summary,
)
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


def describe(exc: BaseException, secrets: list[str]) -> str:
    """What went wrong calling Optimove, for an API answer: status and our summary only."""
    if isinstance(exc, OptimoveHTTPError) and exc.status is not None:
        text = f"Optimove answered {status_summary(exc.status)}"
    elif isinstance(exc, OptimoveResponseError):
        status = f"HTTP {exc.status} " if exc.status is not None else ""
        text = f"Optimove answered {status}with a body that is not what {exc.call} returns"
    elif isinstance(exc, OptimoveRequestError):
        text = str(exc)  # ours: the outbound policy's refusal or a bad argument
    elif isinstance(exc, OptimoveTimeoutError | TimeoutError):
        text = "Optimove did not answer in time"
    elif isinstance(exc, OptimoveTransportError | OSError):
        text = "Optimove did not answer (connection failed)"
    else:
        text = f"Optimove call failed ({type(exc).__name__})"
    return scrub(text, secrets)[:300]


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
    client = OptimoveClient(config, outbound=runtime.settings.outbound_policy)
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
    except (OptimoveError, TimeoutError, OSError) as exc:
        return Reachability(False, describe(exc, secrets), now)
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

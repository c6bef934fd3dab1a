"""One Optimove client per tenant per process, built from the tenant's stored credentials.

Clients are kept, not rebuilt per job: each holds its login token (legacy auth) and its HTTP
connections, and the client-side rate limit is shared, through PostgreSQL, by every client of the
same API key in every process and machine (optimove.shared_limit). `invalidate` drops a client
after its tenant's credentials change.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg_pool

from optibridge.core.config import Settings
from optibridge.core.errors import NotFoundError
from optibridge.core.secretbox import SecretBox
from optibridge.optimove import (
    ApiKeyAuth,
    Auth,
    LoginAuth,
    OptimoveClient,
    OptimoveClientConfig,
    RateLimit,
    Timeouts,
)
from optibridge.optimove.shared_limit import SharedLimiters
from optibridge.store import tenants as tenant_store


def client_config(settings: Settings, base_url: str, credentials: dict[str, str]) -> OptimoveClientConfig:
    auth: Auth
    if "api_key" in credentials:
        auth = ApiKeyAuth(credentials["api_key"])
    else:
        auth = LoginAuth(credentials["username"], credentials["password"])
    return OptimoveClientConfig(
        base_url=base_url,
        auth=auth,
        timeouts=Timeouts(total_s=settings.optimove_timeout_s),
        rate_limit=RateLimit(settings.optimove_rate_limit, 10.0) if settings.optimove_rate_limit else None,
        page_size=settings.optimove_page_size,
        stop_on_short_page=settings.optimove_page_end == "short",
    )


class OptimoveClients:
    def __init__(
        self, settings: Settings, pool: psycopg_pool.AsyncConnectionPool[Any], box: SecretBox
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._box = box
        # Every client of one credential, in every process, shares one budget (optimove-api §2).
        self._limiters = SharedLimiters(pool, margin_s=settings.optimove_rate_margin_s)
        self._clients: dict[str, OptimoveClient] = {}
        self._lock = asyncio.Lock()

    async def get(self, tenant_id: str) -> OptimoveClient:
        client = self._clients.get(tenant_id)
        if client is not None:
            return client
        async with self._lock:
            client = self._clients.get(tenant_id)
            if client is None:
                async with self._pool.connection() as conn:
                    tenant = await tenant_store.get(conn, tenant_id)
                    creds = await tenant_store.credentials(conn, self._box, tenant_id)
                client = OptimoveClient(
                    client_config(self._settings, tenant.api_base_url, creds),
                    limiters=self._limiters,
                    outbound=self._settings.outbound_policy,
                )
                self._clients[tenant_id] = client
            return client

    async def invalidate(self, tenant_id: str) -> None:
        client = self._clients.pop(tenant_id, None)
        if client is not None:
            await client.aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


__all__ = ["NotFoundError", "OptimoveClients", "client_config"]

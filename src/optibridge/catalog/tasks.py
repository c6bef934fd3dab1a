"""Catalog jobs: sync one channel after a change, and reconcile every channel periodically."""

from __future__ import annotations

import procrastinate
from procrastinate import JobContext

from optibridge.catalog import store
from optibridge.catalog.sync import SyncReport, sync_channel
from optibridge.core.logs import bind, unbind
from optibridge.engine.jobs import TransientRetry
from optibridge.runtime import Runtime, runtime_of
from optibridge.store import channels

RECONCILE_TASK = "optibridge.catalog.reconcile"
SYNC_RETRY = TransientRetry(max_attempts=12)


async def run_sync(
    runtime: Runtime, tenant_id: str, channel_name: str, *, delete_foreign: bool = False
) -> SyncReport:
    client = await runtime.clients.get(tenant_id)
    return await sync_channel(
        runtime.pool.connection, client, tenant_id, channel_name, delete_foreign=delete_foreign
    )


async def request_all(runtime: Runtime) -> int:
    """Queue a sync of every channel of every tenant (already-queued ones are not doubled)."""
    async with runtime.pool.connection() as conn:
        rows = await channels.all_names(conn)
        for tenant_id, channel_name in rows:
            await store.request_sync(conn, runtime.job_app, tenant_id, channel_name)
    return len(rows)


def register(app: procrastinate.App, reconcile_cron: str) -> None:
    @app.task(name=store.SYNC_TASK, queue="catalog", pass_context=True, retry=SYNC_RETRY)
    async def sync_task(context: JobContext, /, tenant_id: str, channel_name: str) -> None:
        bind(tenant=tenant_id, channel=channel_name)
        try:
            await run_sync(runtime_of(context), tenant_id, channel_name)
        finally:
            unbind("tenant", "channel")

    @app.periodic(cron=reconcile_cron, periodic_id="")
    @app.task(name=RECONCILE_TASK, queue="catalog", pass_context=True)
    async def reconcile_task(context: JobContext, /, timestamp: int) -> None:
        await request_all(runtime_of(context))

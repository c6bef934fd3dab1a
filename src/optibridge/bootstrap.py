"""Builds a process: the runtime and the job app with every flow's tasks registered.

This is the one module that imports every flow; `serve`, `worker`, the CLI, the demo and the tests
start here. `open_runtime` does the start-up they share, in the order that gives the clearest error
first: config, then the database, then the schema, then the secret key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import procrastinate
import psycopg_pool

from optibridge.catalog import tasks as catalog_tasks
from optibridge.channels.factory import validate_tenant
from optibridge.core.config import Settings
from optibridge.core.errors import ConfigError, DatabaseUnavailableError
from optibridge.core.logs import get_logger
from optibridge.core.secretbox import SecretBox, load_box
from optibridge.core.telemetry import record_optimove_request
from optibridge.delivery import dispatcher
from optibridge.delivery import tasks as delivery_tasks
from optibridge.engine import jobs
from optibridge.intake import aggregator_tasks, engagement_tasks
from optibridge.intake import tasks as intake_tasks
from optibridge.optimove.clients import OptimoveClients
from optibridge.optimove.observe import add_request_observer
from optibridge.reporting import tasks as reporting_tasks
from optibridge.retention import tasks as retention_tasks
from optibridge.runtime import Runtime
from optibridge.store import migrate, service_settings
from optibridge.store import tenants as tenant_store
from optibridge.store.database import Database, open_database

log = get_logger(__name__)

KEY_CHECK_SETTING = "secret_key_check"


def create_job_app(settings: Settings) -> procrastinate.App:
    """A procrastinate App with every task registered; open it with `open_async(pool=...)`."""
    app = jobs.create_engine_app(settings, lane_queues=[delivery_tasks.SEND_QUEUE])
    intake_tasks.register(app)
    engagement_tasks.register(app)
    aggregator_tasks.register(app)  # SMS aggregator handshake and delivery reports
    catalog_tasks.register(app, settings.catalog_reconcile_cron)
    reporting_tasks.register(app, settings.reporting)
    retention_tasks.register(app, settings)
    delivery_tasks.register(app, settings.dispatch_cron)
    jobs.register_task_modules(app, settings.task_modules)
    jobs.retry_periodic_by_default(app)
    return app


async def ensure_schema(db: Database, *, upgrade: bool) -> None:
    if upgrade:
        report = await migrate.upgrade(db)
        if report.applied:
            log.info("database schema upgraded", applied=report.applied)
        return
    state = await migrate.status(db)
    if state["pending"]:
        raise ConfigError(
            f"the database schema is not up to date (pending: {', '.join(state['pending'])}); "  # type: ignore[arg-type]
            "run: optibridge db upgrade"
        )


async def check_secret_key(db: Database, box: SecretBox) -> None:
    """Store a check value on first use; later, refuse to run with a key that does not match."""
    async with db.connect() as conn:
        stored = await service_settings.first_value(conn, KEY_CHECK_SETTING, box.check_value())
    box.verify_check_value(stored)


async def sync_config_tenants(runtime: Runtime) -> None:
    # The config file's tenants pass the same checks as the API's and the CLI's, under the
    # operator's outbound policy, before anything is stored (ConfigError: the process stops).
    for tenant in runtime.settings.tenants:
        try:
            validate_tenant(
                tenant, runtime.settings.outbound_policy, callback_base_url=runtime.settings.public_url
            )
        except ConfigError as exc:
            raise ConfigError(f"tenant {tenant.id!r} in the config file: {exc}") from None
    async with runtime.db.connect() as conn:
        for tenant in runtime.settings.tenants:
            outcome = await tenant_store.upsert_from_config(conn, runtime.box, tenant)
            if outcome != "unchanged":
                log.info("tenant from config", tenant=tenant.id, outcome=outcome)


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    upgrade: bool,
    sync_tenants: bool = False,
    pool_size: int | None = None,
) -> AsyncIterator[Runtime]:
    """Start everything a process needs; close it all on exit, embedded database last."""
    # Every Optimove HTTP attempt of this process feeds the Prometheus metrics.
    add_request_observer(record_optimove_request)
    db = await asyncio.to_thread(open_database, settings)
    try:
        await ensure_schema(db, upgrade=upgrade)
        box = load_box(
            settings.secret_key.get_secret_value() if settings.secret_key else None,
            settings.key_file,
            may_generate=settings.embedded,
        )
        await check_secret_key(db, box)
        pool = db.pool(max_size=pool_size or settings.db_pool_size)
        try:
            await pool.open(wait=True, timeout=30)
        except psycopg_pool.PoolTimeout:
            raise DatabaseUnavailableError("the database stopped answering during start-up") from None
        try:
            job_app = create_job_app(settings)
            async with job_app.open_async(pool=pool):
                clients = OptimoveClients(settings, pool, box)
                runtime = Runtime(
                    settings=settings, db=db, pool=pool, box=box, job_app=job_app, clients=clients
                )
                try:
                    if sync_tenants:
                        await sync_config_tenants(runtime)
                    yield runtime
                finally:
                    # Before the pool closes: the dispatcher may still write what an outage left.
                    await dispatcher.shut_down(runtime)
                    await clients.aclose()
        finally:
            await pool.close()
    finally:
        await asyncio.to_thread(db.close)

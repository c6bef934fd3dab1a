"""Delivery at dispatcher level: a tenant with a webhook channel on a loopback HTTP sink, a campaign
of pending messages, a runtime on the test's database, and fake workers (registered in
`procrastinate_workers`, with heartbeats) that call `run_send` the way a send job does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from optibridge.bootstrap import open_runtime
from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec
from optibridge.core.config import ChannelConfig, Settings, TenantConfig
from optibridge.delivery.tasks import run_send
from optibridge.runtime import Runtime
from optibridge.sinks.http_sink import HttpSink
from optibridge.store import tenants
from optibridge.testing.feedback import seed_campaign

TENANT = "acme"
CHANNEL = "hook"
CHANNEL_ID = 901
SECRET = "s" * 32


def settings(db_url: str, secret_key: str, data_dir: Path) -> Settings:
    extra: dict[str, Any] = {}
    if OPERATOR_POLICY:  # loopback sinks and lookups
        extra["allow_private_destinations"] = ["127.0.0.0/8"]
    return Settings(
        database_url=db_url, secret_key=secret_key, data_dir=data_dir, optimove_rate_limit=0, **extra
    )


@contextlib.asynccontextmanager
async def runtime(db_url: str, secret_key: str, data_dir: Path) -> AsyncIterator[Runtime]:
    async with open_runtime(settings(db_url, secret_key, data_dir), upgrade=False, pool_size=12) as rt:
        yield rt


# Loopback destinations: an operator setting (allow_private_destinations) where the outbound
# policy exists, else the webhook's own flag.
OPERATOR_POLICY = "allow_private_destinations" in Settings.model_fields


def channel_config(url: str, **options: Any) -> ChannelConfig:
    provider: dict[str, Any] = {"type": "webhook", "url": url, "signing_secret": SECRET}
    if not OPERATOR_POLICY:
        provider["allow_private"] = True
    return ChannelConfig.model_validate(
        {
            "name": CHANNEL,
            "kind": "webhook",
            "channel_id": CHANNEL_ID,
            "provider": provider,
            "options": options,
        }
    )


async def add_tenant(rt: Runtime, sink: HttpSink, path: str = "a", **options: Any) -> None:
    config = TenantConfig.model_validate(
        {
            "id": TENANT,
            "api_base_url": "http://127.0.0.1:9",
            "api_key": "k",
            "channels": [channel_config(f"{sink.base_url}/webhook/{path}", **options).model_dump()],
        }
    )
    async with rt.pool.connection() as conn:
        await tenants.add(conn, rt.box, config, "cli")
        spec = TemplateSpec(template_id=1, name="T", body='{"hello": "{{ customer_id }}"}')
        await catalog.upsert(conn, rt.job_app, TENANT, CHANNEL, spec, create=True)


async def change_channel(rt: Runtime, url: str, **options: Any) -> None:
    """As the admin API does: the tenant's channels replaced, in one transaction."""
    async with rt.pool.connection() as conn, conn.transaction():
        await tenants.replace_channels(
            conn, rt.box, TENANT, [channel_config(url, **options)], keep_absent_secrets=True
        )


async def add_campaign(rt: Runtime, campaign_id: int, count: int, first: int = 1) -> None:
    async with rt.pool.connection() as conn:
        await seed_campaign(
            conn,
            tenant_id=TENANT,
            channel_name=CHANNEL,
            channel_kind="webhook",
            channel_id=CHANNEL_ID,
            campaign_id=campaign_id,
            customers=count,
            sent_at=datetime.now(UTC) - timedelta(seconds=30),
            state="pending",
            first=first,
        )


async def states(rt: Runtime) -> dict[str, int]:
    async with rt.pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT state::text AS s, count(*) AS n FROM messages GROUP BY 1")
        ).fetchall()
    return {r["s"]: int(r["n"]) for r in rows}


def delivered(sink: HttpSink, path: str | None = None) -> Counter[str]:
    """Message ids the sink accepted (the webhook's Idempotency-Key), with how many times."""
    out: Counter[str] = Counter()
    for r in sink.of_kind("webhook", accepted_only=True):
        if path is not None and not r.path.endswith(f"/{path}"):
            continue
        key = {k.lower(): v for k, v in r.headers.items()}.get("idempotency-key")
        if key:
            out[key] += 1
    return out


async def send_until_all_sent(rt: Runtime, me: str, total: int, *, jobs: int, budget_s: float) -> None:
    """Run send jobs one after the other, as ticks queue them, until all `total` are sent (at
    most `jobs` of them); the caller asserts the end state."""
    for _ in range(jobs):
        await run_send(rt, TENANT, CHANNEL_ID, me, budget_s=budget_s)
        if await states(rt) == {"sent": total}:
            return


def assert_each_delivered_once(sink: HttpSink, total: int) -> None:
    per_id = delivered(sink)
    assert len(per_id) == total, f"{total - len(per_id)} message(s) lost"
    dupes = sum(n - 1 for n in per_id.values())
    assert dupes == 0, f"{dupes} duplicate(s)"


async def register_worker(rt: Runtime) -> str:
    async with rt.pool.connection() as conn:
        row = await (
            await conn.execute("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
        ).fetchone()
    assert row is not None
    return str(row["id"])


@contextlib.asynccontextmanager
async def heartbeats(rt: Runtime, *workers: str) -> AsyncIterator[None]:
    """Keep these fake workers alive (a heartbeat per second), as procrastinate does."""

    async def beat() -> None:
        while True:
            with contextlib.suppress(Exception):
                async with rt.pool.connection() as conn:
                    await conn.execute(
                        "UPDATE procrastinate_workers SET last_heartbeat = now() "
                        "WHERE id = ANY(%s::bigint[])",
                        ([int(w) for w in workers],),
                    )
            await asyncio.sleep(1.0)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s: {what}")

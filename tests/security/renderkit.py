"""Sending through the real dispatcher for the rendering attacks: a runtime on the test's database
that may reach loopback, a tenant with a webhook channel pointed at a loopback HTTP sink, templates
stored checked (the catalog) or unchecked (straight into the store, as before the limits existed),
and messages with chosen attributes, sent by `run_send` as a send job does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from optibridge.bootstrap import open_runtime
from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec
from optibridge.core.config import Settings, TenantConfig
from optibridge.runtime import Runtime
from optibridge.store import templates as template_store
from optibridge.store import tenants
from optibridge.testing.feedback import seed_campaign

TENANT = "acme"
CHANNEL = "hook"
CHANNEL_ID = 901
SECRET = "s" * 32


@contextlib.asynccontextmanager
async def runtime(db_url: str, secret_key: str, data_dir: Path, **extra: Any) -> AsyncIterator[Runtime]:
    """A runtime whose outbound policy lets the webhook reach the loopback sink (operator setting)."""
    settings = Settings(
        **extra,
        database_url=db_url,
        secret_key=secret_key,
        data_dir=data_dir,
        optimove_rate_limit=0,
        allow_private_destinations=["127.0.0.0/8"],
    )
    async with open_runtime(settings, upgrade=False, pool_size=6) as rt:
        yield rt


async def add_tenant(rt: Runtime, url: str) -> None:
    config = TenantConfig.model_validate(
        {
            "id": TENANT,
            "api_base_url": "http://127.0.0.1:9",
            "api_key": "k",
            "channels": [
                {
                    "name": CHANNEL,
                    "kind": "webhook",
                    "channel_id": CHANNEL_ID,
                    "provider": {"type": "webhook", "url": url, "signing_secret": SECRET},
                }
            ],
        }
    )
    async with rt.pool.connection() as conn:
        await tenants.add(conn, rt.box, config, "cli")


async def save_template(rt: Runtime, template_id: int, body: str) -> None:
    """Through the catalog: checked as every save path checks (ConfigError if refused)."""
    async with rt.pool.connection() as conn:
        spec = TemplateSpec(template_id=template_id, name=f"T{template_id}", body=body)
        await catalog.upsert(conn, rt.job_app, TENANT, CHANNEL, spec, create=True)


async def store_unchecked(rt: Runtime, template_id: int, body: str) -> None:
    """Straight into the store: a template saved before the limits existed."""
    content = template_store.TemplateContent(
        name=f"old {template_id}", subject=None, body=body, text_body=None, app_id=None, defaults={},
        attributes=[],
    )  # fmt: skip
    async with rt.pool.connection() as conn:
        await template_store.insert(conn, TENANT, CHANNEL, template_id, content)


async def add_messages(
    rt: Runtime, campaign_id: int, count: int, templates: Sequence[int], attrs: dict[str, Any]
) -> None:
    """`count` due messages, templates round-robin, every one with these attributes."""
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
            templates=tuple(templates),
            state="pending",
        )
        await conn.execute(
            "UPDATE messages SET attrs = %s WHERE tenant_id = %s AND campaign_id = %s",
            (Jsonb(attrs), TENANT, campaign_id),
        )


async def outcomes(rt: Runtime, campaign_id: int) -> dict[int, list[tuple[str, str | None]]]:
    """(state, reason) of every message of the campaign, by template id."""
    async with rt.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT template_id, state::text AS state, reason FROM messages "
                "WHERE tenant_id = %s AND campaign_id = %s ORDER BY customer_id",
                (TENANT, campaign_id),
            )
        ).fetchall()
    out: dict[int, list[tuple[str, str | None]]] = {}
    for r in rows:
        out.setdefault(int(r["template_id"]), []).append((r["state"], r["reason"]))
    return out


async def register_worker(rt: Runtime) -> str:
    """A worker row for the claims (`run_send`'s `me`), as procrastinate registers one."""
    async with rt.pool.connection() as conn:
        row = await (
            await conn.execute("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
        ).fetchone()
    assert row is not None
    return str(row["id"])


class LoopLag:
    """Measures how late the event loop wakes a 10 ms sleeper while the block runs (`max_s`)."""

    def __init__(self) -> None:
        self.max_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.01)
            self.max_s = max(self.max_s, time.monotonic() - started - 0.01)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

"""The template and app catalog: its operations (the SQL is in `optibridge.store.templates` and
`optibridge.store.apps`).

Every change is one transaction that also enqueues a sync of the channel's catalog with Optimove
(a job, so an Optimove outage delays the sync but never loses it). A deleted template stays as a
tombstone until Optimove has been told.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
import psycopg

from optibridge.catalog.models import RESERVED_TEMPLATE_ID, TemplateSpec, compile_spec
from optibridge.core.errors import ConfigError, ConflictError, NotFoundError
from optibridge.engine import jobs
from optibridge.rendering import (
    CompiledTemplate,
    RenderLimitError,
    TemplateRefusedError,
    check_limits,
    in_render_thread,
)
from optibridge.rendering.limits import DEFAULT_RENDER_TIMEOUT_S
from optibridge.store import apps, channels, templates
from optibridge.store.templates import StoredTemplate as StoredTemplate

Conn = psycopg.AsyncConnection[dict[str, Any]]
SYNC_TASK = "optibridge.catalog.sync"
FOLLOW_UP_DELAY = timedelta(seconds=1)


async def channel_kind(conn: Conn, tenant_id: str, channel_name: str) -> tuple[str, int]:
    """(kind, Optimove channel id) of the channel; NotFoundError if the tenant has none of that name."""
    return await channels.kind_and_id(conn, tenant_id, channel_name)


async def request_sync(conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str) -> None:
    """Enqueue a catalog sync in the caller's transaction, at most two waiting per channel.

    A sync already waiting cannot be relied on to see this change: a worker may start it before
    the caller's transaction commits, and it would read the catalog without the change (seen: a
    deleted template left at Optimove until the nightly reconcile). So a change that finds one
    waiting adds a follow-up, a second later, unless a follow-up is waiting too; syncs of one
    channel run one at a time (`lock`), and a burst of changes costs two syncs, not one each.
    """
    key = f"catalog:{tenant_id}:{channel_name}"
    for queueing_lock, delay in ((key, None), (f"{key}:follow-up", FOLLOW_UP_DELAY)):
        try:
            async with conn.transaction():
                await jobs.defer(
                    conn,
                    app,
                    SYNC_TASK,
                    schedule_at=None if delay is None else datetime.now(UTC) + delay,
                    lock=key,
                    queueing_lock=queueing_lock,
                    tenant_id=tenant_id,
                    channel_name=channel_name,
                )
            return
        except procrastinate.exceptions.AlreadyEnqueued:
            continue


async def check_saveable(
    kind: str, spec: TemplateSpec, *, timeout_s: float = DEFAULT_RENDER_TIMEOUT_S
) -> CompiledTemplate:
    """Compile and trial-render off the event loop; ConfigError if the template may not be saved."""

    def check() -> CompiledTemplate:
        compiled = compile_spec(kind, spec)
        try:
            check_limits(compiled, timeout_s=timeout_s)
        except TemplateRefusedError as exc:
            raise ConfigError(f"template {spec.template_id} refused: {exc}") from None
        return compiled

    try:
        return await in_render_thread(check, backstop_s=timeout_s * 2 + 5)
    except RenderLimitError as exc:
        raise ConfigError(f"template {spec.template_id} refused: {exc}") from None


async def upsert(
    conn: Conn,
    app: procrastinate.App,
    tenant_id: str,
    channel_name: str,
    spec: TemplateSpec,
    *,
    create: bool,
    render_timeout_s: float = DEFAULT_RENDER_TIMEOUT_S,
) -> str:
    """Add (create=True: refuse an existing id) or replace a template; returns what happened.

    ConfigError, nothing stored, if it does not parse or exceeds the render limits (a trial render
    with sample values, in a render thread under the deadline: `check_saveable`).
    """
    if spec.template_id == RESERVED_TEMPLATE_ID:
        raise ConfigError(
            f"template id {RESERVED_TEMPLATE_ID} is reserved (the SMS aggregator's built-in template)"
        )
    kind, _ = await channel_kind(conn, tenant_id, channel_name)
    compiled = await check_saveable(kind, spec, timeout_s=render_timeout_s)
    async with conn.transaction():
        row = await templates.lock(conn, tenant_id, channel_name, spec.template_id)
        content = templates.TemplateContent(
            name=spec.name,
            subject=spec.subject,
            body=spec.body,
            text_body=spec.text_body,
            app_id=spec.app_id,
            defaults=spec.defaults,
            attributes=list(compiled.attributes),
        )
        if row is None:
            await templates.insert(conn, tenant_id, channel_name, spec.template_id, content)
            outcome = "added"
        else:
            live = row.deleted_at is None
            if create and live:
                raise ConflictError(
                    f"template {spec.template_id} already exists on {tenant_id}/{channel_name}"
                )
            same = live and (
                row.name,
                row.subject,
                row.body,
                row.text_body,
                row.app_id,
                row.defaults,
            ) == (spec.name, spec.subject, spec.body, spec.text_body, spec.app_id, spec.defaults)
            if same:
                return "unchanged"
            if not create and not live:
                raise NotFoundError(f"template {spec.template_id} was deleted; add it again instead")
            await templates.replace(conn, tenant_id, channel_name, spec.template_id, content)
            outcome = "updated" if live else "added"
        await request_sync(conn, app, tenant_id, channel_name)
        return outcome


async def get(conn: Conn, tenant_id: str, channel_name: str, template_id: int) -> StoredTemplate:
    found = await templates.get(conn, tenant_id, channel_name, template_id)
    if found is None:
        raise NotFoundError(f"no template {template_id} on {tenant_id}/{channel_name}")
    return found


async def rename(
    conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str, template_id: int, name: str
) -> None:
    if not 1 <= len(name) <= 255:
        raise ConflictError("a template name is 1 to 255 characters")
    async with conn.transaction():
        if not await templates.rename(conn, tenant_id, channel_name, template_id, name):
            raise NotFoundError(f"no template {template_id} on {tenant_id}/{channel_name}")
        await request_sync(conn, app, tenant_id, channel_name)


async def delete(
    conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str, template_id: int
) -> None:
    async with conn.transaction():
        if not await templates.mark_deleted(conn, tenant_id, channel_name, template_id):
            raise NotFoundError(f"no template {template_id} on {tenant_id}/{channel_name}")
        await request_sync(conn, app, tenant_id, channel_name)


async def list_templates(conn: Conn, tenant_id: str, channel_name: str | None = None) -> list[StoredTemplate]:
    return await templates.list_live(conn, tenant_id, channel_name)


async def add_app(
    conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str, app_id: str, name: str
) -> None:
    async with conn.transaction():
        kind, _ = await channel_kind(conn, tenant_id, channel_name)
        if kind != "push":
            raise ConflictError(f"apps belong to push channels; {channel_name!r} is {kind}")
        await apps.upsert(conn, tenant_id, channel_name, app_id, name)
        await request_sync(conn, app, tenant_id, channel_name)


async def delete_app(
    conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str, app_id: str
) -> None:
    async with conn.transaction():
        if not await apps.mark_deleted(conn, tenant_id, channel_name, app_id):
            raise NotFoundError(f"no app {app_id!r} on {tenant_id}/{channel_name}")
        await request_sync(conn, app, tenant_id, channel_name)

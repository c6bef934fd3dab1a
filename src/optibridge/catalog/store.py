"""The template and app catalog in the database.

Every change is one transaction that also enqueues a sync of the channel's catalog with Optimove
(a job, so an Optimove outage delays the sync but never loses it). A deleted template stays as a
tombstone until Optimove has been told.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import procrastinate
import psycopg
from psycopg.types.json import Jsonb

from optibridge.catalog.models import TemplateSpec, compile_spec
from optibridge.core.errors import ConflictError, NotFoundError
from optibridge.engine import jobs

Conn = psycopg.AsyncConnection[dict[str, Any]]
SYNC_TASK = "optibridge.catalog.sync"


@dataclass(frozen=True)
class StoredTemplate:
    tenant_id: str
    channel_name: str
    template_id: int
    name: str
    subject: str | None
    body: str
    text_body: str | None
    app_id: str | None
    defaults: dict[str, str]
    attributes: list[str]
    version: int
    pushed_name: str | None
    updated_at: datetime


async def channel_kind(conn: Conn, tenant_id: str, channel_name: str) -> tuple[str, int]:
    row = await (
        await conn.execute(
            "SELECT kind, optimove_channel_id FROM channels WHERE tenant_id = %s AND name = %s",
            (tenant_id, channel_name),
        )
    ).fetchone()
    if row is None:
        raise NotFoundError(f"tenant {tenant_id!r} has no channel {channel_name!r}")
    return str(row["kind"]), int(row["optimove_channel_id"])


async def request_sync(conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str) -> None:
    """Enqueue a catalog sync unless one is already waiting (it will see this change too)."""
    try:
        async with conn.transaction():
            await jobs.defer(
                conn,
                app,
                SYNC_TASK,
                queueing_lock=f"catalog:{tenant_id}:{channel_name}",
                tenant_id=tenant_id,
                channel_name=channel_name,
            )
    except procrastinate.exceptions.AlreadyEnqueued:
        pass


async def upsert(
    conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str, spec: TemplateSpec, *, create: bool
) -> str:
    """Add (create=True: refuse an existing id) or replace a template; returns what happened."""
    async with conn.transaction():
        kind, _ = await channel_kind(conn, tenant_id, channel_name)
        compiled = compile_spec(kind, spec)
        row = await (
            await conn.execute(
                "SELECT name, subject, body, text_body, app_id, defaults, deleted_at FROM templates "
                "WHERE tenant_id = %s AND channel_name = %s AND template_id = %s FOR UPDATE",
                (tenant_id, channel_name, spec.template_id),
            )
        ).fetchone()
        values = (
            spec.name,
            spec.subject,
            spec.body,
            spec.text_body,
            spec.app_id,
            Jsonb(spec.defaults),
            list(compiled.attributes),
        )
        if row is None:
            await conn.execute(
                """INSERT INTO templates (tenant_id, channel_name, template_id, name, subject, body,
                                          text_body, app_id, defaults, attributes)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (tenant_id, channel_name, spec.template_id, *values),
            )
            outcome = "added"
        else:
            live = row["deleted_at"] is None
            if create and live:
                raise ConflictError(
                    f"template {spec.template_id} already exists on {tenant_id}/{channel_name}"
                )
            same = live and (
                row["name"],
                row["subject"],
                row["body"],
                row["text_body"],
                row["app_id"],
                row["defaults"],
            ) == (spec.name, spec.subject, spec.body, spec.text_body, spec.app_id, spec.defaults)
            if same:
                return "unchanged"
            if not create and not live:
                raise NotFoundError(f"template {spec.template_id} was deleted; add it again instead")
            await conn.execute(
                """UPDATE templates SET name = %s, subject = %s, body = %s, text_body = %s, app_id = %s,
                          defaults = %s, attributes = %s, version = version + 1, deleted_at = NULL,
                          updated_at = now()
                   WHERE tenant_id = %s AND channel_name = %s AND template_id = %s""",
                (*values, tenant_id, channel_name, spec.template_id),
            )
            outcome = "updated" if live else "added"
        await request_sync(conn, app, tenant_id, channel_name)
        return outcome


async def get(conn: Conn, tenant_id: str, channel_name: str, template_id: int) -> StoredTemplate:
    row = await (
        await conn.execute(
            "SELECT * FROM templates WHERE tenant_id = %s AND channel_name = %s AND template_id = %s "
            "AND deleted_at IS NULL",
            (tenant_id, channel_name, template_id),
        )
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no template {template_id} on {tenant_id}/{channel_name}")
    return _stored(row)


def _stored(row: dict[str, Any]) -> StoredTemplate:
    return StoredTemplate(**{k: row[k] for k in StoredTemplate.__dataclass_fields__})


async def rename(
    conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str, template_id: int, name: str
) -> None:
    if not 1 <= len(name) <= 255:
        raise ConflictError("a template name is 1 to 255 characters")
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE templates SET name = %s, updated_at = now() WHERE tenant_id = %s AND channel_name = %s "
            "AND template_id = %s AND deleted_at IS NULL",
            (name, tenant_id, channel_name, template_id),
        )
        if cur.rowcount == 0:
            raise NotFoundError(f"no template {template_id} on {tenant_id}/{channel_name}")
        await request_sync(conn, app, tenant_id, channel_name)


async def delete(
    conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str, template_id: int
) -> None:
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE templates SET deleted_at = now(), updated_at = now() WHERE tenant_id = %s "
            "AND channel_name = %s AND template_id = %s AND deleted_at IS NULL",
            (tenant_id, channel_name, template_id),
        )
        if cur.rowcount == 0:
            raise NotFoundError(f"no template {template_id} on {tenant_id}/{channel_name}")
        await request_sync(conn, app, tenant_id, channel_name)


async def list_templates(conn: Conn, tenant_id: str, channel_name: str | None = None) -> list[StoredTemplate]:
    rows = await (
        await conn.execute(
            "SELECT * FROM templates WHERE tenant_id = %(t)s AND deleted_at IS NULL "
            "AND (%(c)s::text IS NULL OR channel_name = %(c)s) ORDER BY channel_name, template_id",
            {"t": tenant_id, "c": channel_name},
        )
    ).fetchall()
    return [_stored(r) for r in rows]


async def add_app(
    conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str, app_id: str, name: str
) -> None:
    async with conn.transaction():
        kind, _ = await channel_kind(conn, tenant_id, channel_name)
        if kind != "push":
            raise ConflictError(f"apps belong to push channels; {channel_name!r} is {kind}")
        await conn.execute(
            """INSERT INTO push_apps (tenant_id, channel_name, app_id, name) VALUES (%s, %s, %s, %s)
               ON CONFLICT (tenant_id, channel_name, app_id)
               DO UPDATE SET name = EXCLUDED.name, deleted_at = NULL, updated_at = now()""",
            (tenant_id, channel_name, app_id, name),
        )
        await request_sync(conn, app, tenant_id, channel_name)


async def delete_app(
    conn: Conn, app: procrastinate.App, tenant_id: str, channel_name: str, app_id: str
) -> None:
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE push_apps SET deleted_at = now(), updated_at = now() WHERE tenant_id = %s "
            "AND channel_name = %s AND app_id = %s AND deleted_at IS NULL",
            (tenant_id, channel_name, app_id),
        )
        if cur.rowcount == 0:
            raise NotFoundError(f"no app {app_id!r} on {tenant_id}/{channel_name}")
        await request_sync(conn, app, tenant_id, channel_name)

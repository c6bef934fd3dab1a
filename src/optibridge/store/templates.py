"""The template catalog: a row per (tenant, channel, template id), kept as a tombstone
(`deleted_at`) after a delete until Optimove has been told, and what we last told Optimove
(`pushed_name`, `pushed_at`).

Every function runs in the caller's transaction; `optibridge.catalog.store` makes each change one
transaction together with the job that syncs the channel with Optimove.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.AsyncConnection[dict[str, Any]]


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


def _stored(row: dict[str, Any]) -> StoredTemplate:
    return StoredTemplate(**{k: row[k] for k in StoredTemplate.__dataclass_fields__})


@dataclass(frozen=True)
class TemplateContent:
    """What an operator writes; `attributes` are those the compiled template uses."""

    name: str
    subject: str | None
    body: str
    text_body: str | None
    app_id: str | None
    defaults: dict[str, str]
    attributes: list[str]

    def _values(self) -> tuple[object, ...]:
        return (
            self.name,
            self.subject,
            self.body,
            self.text_body,
            self.app_id,
            Jsonb(self.defaults),
            self.attributes,
        )


@dataclass(frozen=True)
class LockedTemplate:
    """A row as `lock` found it (live or a tombstone)."""

    name: str
    subject: str | None
    body: str
    text_body: str | None
    app_id: str | None
    defaults: dict[str, str]
    deleted_at: datetime | None


async def lock(conn: Conn, tenant_id: str, channel_name: str, template_id: int) -> LockedTemplate | None:
    """The row, live or deleted, locked (FOR UPDATE) until the transaction ends; None if none."""
    row = await (
        await conn.execute(
            "SELECT name, subject, body, text_body, app_id, defaults, deleted_at FROM templates "
            "WHERE tenant_id = %s AND channel_name = %s AND template_id = %s FOR UPDATE",
            (tenant_id, channel_name, template_id),
        )
    ).fetchone()
    return None if row is None else LockedTemplate(**row)


async def insert(
    conn: Conn, tenant_id: str, channel_name: str, template_id: int, content: TemplateContent
) -> None:
    await conn.execute(
        """INSERT INTO templates (tenant_id, channel_name, template_id, name, subject, body,
                                  text_body, app_id, defaults, attributes)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (tenant_id, channel_name, template_id, *content._values()),
    )


async def replace(
    conn: Conn, tenant_id: str, channel_name: str, template_id: int, content: TemplateContent
) -> None:
    """Overwrite a row (reviving a tombstone) as a new version."""
    await conn.execute(
        """UPDATE templates SET name = %s, subject = %s, body = %s, text_body = %s, app_id = %s,
                  defaults = %s, attributes = %s, version = version + 1, deleted_at = NULL,
                  updated_at = now()
           WHERE tenant_id = %s AND channel_name = %s AND template_id = %s""",
        (*content._values(), tenant_id, channel_name, template_id),
    )


async def get(conn: Conn, tenant_id: str, channel_name: str, template_id: int) -> StoredTemplate | None:
    """A live template; None if there is none (or only its tombstone)."""
    row = await (
        await conn.execute(
            "SELECT * FROM templates WHERE tenant_id = %s AND channel_name = %s AND template_id = %s "
            "AND deleted_at IS NULL",
            (tenant_id, channel_name, template_id),
        )
    ).fetchone()
    return None if row is None else _stored(row)


async def list_live(conn: Conn, tenant_id: str, channel_name: str | None = None) -> list[StoredTemplate]:
    """The live templates of a tenant (of one channel, if named), by channel and id."""
    rows = await (
        await conn.execute(
            "SELECT * FROM templates WHERE tenant_id = %(t)s AND deleted_at IS NULL "
            "AND (%(c)s::text IS NULL OR channel_name = %(c)s) ORDER BY channel_name, template_id",
            {"t": tenant_id, "c": channel_name},
        )
    ).fetchall()
    return [_stored(r) for r in rows]


async def rename(conn: Conn, tenant_id: str, channel_name: str, template_id: int, name: str) -> bool:
    """False if there is no such live template."""
    cur = await conn.execute(
        "UPDATE templates SET name = %s, updated_at = now() WHERE tenant_id = %s AND channel_name = %s "
        "AND template_id = %s AND deleted_at IS NULL",
        (name, tenant_id, channel_name, template_id),
    )
    return cur.rowcount > 0


async def mark_deleted(conn: Conn, tenant_id: str, channel_name: str, template_id: int) -> bool:
    """Turn a live template into a tombstone; False if there is no such live template."""
    cur = await conn.execute(
        "UPDATE templates SET deleted_at = now(), updated_at = now() WHERE tenant_id = %s "
        "AND channel_name = %s AND template_id = %s AND deleted_at IS NULL",
        (tenant_id, channel_name, template_id),
    )
    return cur.rowcount > 0


async def live_attributes(conn: Conn, tenant_id: str, channel_name: str) -> list[str]:
    """Every attribute the channel's live templates use, template by template (repeats kept)."""
    rows = await (
        await conn.execute(
            "SELECT attributes FROM templates WHERE tenant_id = %s AND channel_name = %s "
            "AND deleted_at IS NULL ORDER BY template_id",
            (tenant_id, channel_name),
        )
    ).fetchall()
    return [a for t in rows for a in t["attributes"]]


# --- sync with Optimove (optibridge.catalog.sync) --------------------------------------------


@dataclass(frozen=True)
class SyncRow:
    template_id: int
    name: str
    deleted_at: datetime | None
    pushed_name: str | None
    updated_at: datetime


async def sync_rows(conn: Conn, tenant_id: str, channel_name: str) -> list[SyncRow]:
    """Every row of the channel, tombstones included."""
    rows = await (
        await conn.execute(
            "SELECT template_id, name, deleted_at, pushed_name, updated_at FROM templates "
            "WHERE tenant_id = %s AND channel_name = %s",
            (tenant_id, channel_name),
        )
    ).fetchall()
    return [SyncRow(**r) for r in rows]


async def mark_pushed(
    conn: Conn, tenant_id: str, channel_name: str, template_id: int, name: str, seen_at: datetime
) -> None:
    """Record what Optimove now holds, but only if nobody changed the row since `seen_at`: a row
    changed meanwhile keeps its pending state for the next sync to push."""
    await conn.execute(
        "UPDATE templates SET pushed_name = %s, pushed_at = now() WHERE tenant_id = %s "
        "AND channel_name = %s AND template_id = %s AND updated_at = %s",
        (name, tenant_id, channel_name, template_id, seen_at),
    )


async def purge_tombstones(
    conn: Conn, tenant_id: str, channel_name: str, template_ids: Sequence[int], seen_until: datetime
) -> None:
    """Drop tombstones Optimove has been told about (none changed after `seen_until`)."""
    await conn.execute(
        "DELETE FROM templates WHERE tenant_id = %s AND channel_name = %s "
        "AND template_id = ANY(%s) AND deleted_at IS NOT NULL AND updated_at <= %s",
        (tenant_id, channel_name, list(template_ids), seen_until),
    )

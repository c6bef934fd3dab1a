"""Make Optimove's template (and app) list for a channel match ours.

`plan_templates` is the pure decision; `sync_channel` does the I/O. The sync reads
GetChannelTemplates every time, so it also repairs drift in both directions: a template of ours
missing or renamed on Optimove's side is added again (AddChannelTemplates is an upsert, see
docs/optimove-api-notes.md), and a template we deleted is deleted there. Templates on Optimove
that were never ours are left alone unless `delete_foreign` is asked for.

Push apps have no "get" call in the API, so they are pushed from what we last told Optimove.

No database connection is held while Optimove is asked: a call may take minutes (its client
retries with backoff and waits out rate limits), and a reconcile queues a sync of every channel of
every tenant at once - each one holding a pooled connection through its tenant's slow Optimove
would starve the send jobs of every other tenant. The sync reads, releases, calls, then writes,
with a fresh connection each time (`Connect`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from optibridge.catalog.models import RESERVED_TEMPLATE_ID
from optibridge.catalog.store import channel_kind
from optibridge.core.logs import get_logger
from optibridge.optimove import ChannelApp, ChannelTemplate, OptimoveClient
from optibridge.store import apps, templates

log = get_logger(__name__)
Conn = psycopg.AsyncConnection[dict[str, Any]]
Connect = Callable[[], AbstractAsyncContextManager[Conn]]  # e.g. runtime.pool.connection


@dataclass(frozen=True)
class TemplatePlan:
    add: dict[int, str] = field(default_factory=dict)  # id -> name, for AddChannelTemplates (upsert)
    delete: list[int] = field(default_factory=list)
    foreign: list[int] = field(default_factory=list)  # on Optimove, never ours, left alone

    @property
    def empty(self) -> bool:
        return not self.add and not self.delete


def plan_templates(
    ours: Mapping[int, str],
    tombstones: set[int],
    remote: Mapping[int, str],
    *,
    delete_foreign: bool = False,
) -> TemplatePlan:
    # The reserved built-in template (models.RESERVED_TEMPLATE_ID) is never pushed nor deleted.
    ours = {tid: name for tid, name in ours.items() if tid != RESERVED_TEMPLATE_ID}
    add = {tid: name for tid, name in ours.items() if remote.get(tid) != name}
    delete = sorted(
        tid for tid in tombstones if tid in remote and tid not in ours and tid != RESERVED_TEMPLATE_ID
    )
    foreign = sorted(tid for tid in remote if tid not in ours and tid not in tombstones)
    if delete_foreign:
        delete = sorted({*delete, *foreign})
        foreign = []
    return TemplatePlan(add=add, delete=delete, foreign=foreign)


@dataclass(frozen=True)
class SyncReport:
    added: list[int]
    deleted: list[int]
    foreign: list[int]
    apps_added: list[str]
    apps_deleted: list[str]


async def sync_channel(
    connect: Connect,
    client: OptimoveClient,
    tenant_id: str,
    channel_name: str,
    *,
    delete_foreign: bool = False,
) -> SyncReport:
    async with connect() as conn:
        kind, channel_id = await channel_kind(conn, tenant_id, channel_name)
        rows = await templates.sync_rows(conn, tenant_id, channel_name)
    ours = {r.template_id: r.name for r in rows if r.deleted_at is None}
    tombstones = {r.template_id for r in rows if r.deleted_at is not None}
    seen_at = {r.template_id: r.updated_at for r in rows}
    remote = {t.template_id: t.template_name for t in await client.get_channel_templates(channel_id)}
    plan = plan_templates(ours, tombstones, remote, delete_foreign=delete_foreign)

    if plan.add:
        await client.add_channel_templates(
            channel_id, [ChannelTemplate(tid, name) for tid, name in sorted(plan.add.items())]
        )
    if plan.delete:
        await client.delete_channel_templates(channel_id, plan.delete)
    async with connect() as conn, conn.transaction():
        # Record what Optimove now holds, but only for rows nobody changed while we were talking to
        # Optimove: a row changed meanwhile keeps its pending state for the next sync to push.
        for tid, name in ours.items():
            await templates.mark_pushed(conn, tenant_id, channel_name, tid, name, seen_at[tid])
        gone = sorted(tombstones)
        if gone:
            await templates.purge_tombstones(
                conn, tenant_id, channel_name, gone, max(seen_at[t] for t in gone)
            )
    apps_added, apps_deleted = (
        ([], []) if kind != "push" else await _sync_apps(connect, client, tenant_id, channel_name, channel_id)
    )
    if not plan.empty or apps_added or apps_deleted:
        log.info(
            "catalog synced",
            tenant=tenant_id,
            channel=channel_name,
            added=sorted(plan.add),
            deleted=plan.delete,
            foreign=plan.foreign,
            apps_added=apps_added,
            apps_deleted=apps_deleted,
        )
    return SyncReport(sorted(plan.add), plan.delete, plan.foreign, apps_added, apps_deleted)


async def _sync_apps(
    connect: Connect, client: OptimoveClient, tenant_id: str, channel_name: str, channel_id: int
) -> tuple[list[str], list[str]]:
    async with connect() as conn:
        rows = await apps.sync_rows(conn, tenant_id, channel_name)
    to_add = [r for r in rows if r.deleted_at is None and r.pushed_name != r.name]
    to_delete = [r for r in rows if r.deleted_at is not None]
    if to_add:
        await client.add_channel_apps(channel_id, [ChannelApp(r.app_id, r.name) for r in to_add])
    if to_delete:
        await client.delete_channel_apps(channel_id, [r.app_id for r in to_delete])
    async with connect() as conn, conn.transaction():
        for r in to_add:
            await apps.mark_pushed(conn, tenant_id, channel_name, r.app_id, r.name, r.updated_at)
        for r in to_delete:
            await apps.purge(conn, tenant_id, channel_name, r.app_id, r.updated_at)
    return [r.app_id for r in to_add], [r.app_id for r in to_delete]

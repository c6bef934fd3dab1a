"""What a valid notification does to our state, in the listener's one transaction.

- 1 / 13 (processed / executed on a channel): a campaign row per target channel; the first time,
  an ingest job. Repeats, and 1 and 13 for the same campaign, find the row and do nothing.
- 4 (canceled): hold back sending at once (`cancel_pending`) and let the cancel job find out whether
  the whole campaign or only some customers were canceled.
- 5 (on hold): nothing of the campaign is sent before ClearanceRequiredBy; for a tenant with
  promotions enabled, a promotions run and its job (optibridge.intake.promotions).
- 2 / 3 (daily process milestones): recorded only.

The raw notification is stored with what it did, and every job is enqueued on the same connection
inside the same transaction, so a crash never leaves a row without its job or a job without its row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import procrastinate
import psycopg

from optibridge.engine import jobs
from optibridge.intake import promotions
from optibridge.intake.notifications import EventType, Notification
from optibridge.store import campaigns as campaign_store
from optibridge.store import channels, notifications
from optibridge.store import promotions as promotion_store

Conn = psycopg.AsyncConnection[dict[str, Any]]

INGEST_TASK = "optibridge.intake.ingest"
CANCEL_TASK = "optibridge.intake.cancel"


@dataclass(frozen=True)
class Target:
    channel_id: int
    channel_name: str


def ingest_lock(tenant_id: str, channel_id: int, campaign_id: int) -> str:
    return f"ingest:{tenant_id}:{channel_id}:{campaign_id}"


async def _targets(
    conn: Conn, tenant_id: str, url_channel: int | None, n: Notification
) -> tuple[list[Target], str | None]:
    """The channels a notification concerns, or a reason why it concerns none of ours."""
    ours = await channels.names_by_id(conn, tenant_id)
    if url_channel is not None:
        if n.channel_id is not None and n.channel_id != url_channel:
            return [], f"ChannelID {n.channel_id} is not this listener's channel {url_channel}"
        return [Target(url_channel, ours[url_channel])], None
    if n.channel_id is not None:
        if n.channel_id not in ours:
            return [], f"ChannelID {n.channel_id} is not a channel of this tenant"
        return [Target(n.channel_id, ours[n.channel_id])], None
    if not ours:
        return [], "the tenant has no channels"
    # A general listener heard of a campaign without a channel: every channel of ours may be in
    # it; channels that are not simply ingest zero customers.
    return [Target(cid, name) for cid, name in ours.items()], None


async def _processed(
    conn: Conn, app: procrastinate.App, tenant_id: str, target: Target, n: Notification
) -> str:
    assert n.campaign_id is not None
    added = await campaign_store.add_processed(
        conn, tenant_id, target.channel_id, n.campaign_id, target.channel_name, int(n.event_type)
    )
    # Known already: start it only if nothing has started it yet (it was known only from a
    # cancel or hold) or its ingest failed and this repeat is the chance to resume it.
    if not added and not await campaign_store.restart_ingest(
        conn, tenant_id, target.channel_id, n.campaign_id
    ):
        return f"channel {target.channel_id}: duplicate"
    lock = ingest_lock(tenant_id, target.channel_id, n.campaign_id)
    try:
        # In a savepoint: a refused duplicate must not abort the listener's transaction.
        async with conn.transaction():
            await jobs.defer(
                conn,
                app,
                INGEST_TASK,
                lock=lock,
                queueing_lock=lock,
                tenant_id=tenant_id,
                channel_id=target.channel_id,
                campaign_id=n.campaign_id,
            )
    except procrastinate.exceptions.AlreadyEnqueued:
        return f"channel {target.channel_id}: ingest already queued"
    return f"channel {target.channel_id}: ingest queued"


async def _canceled(
    conn: Conn, app: procrastinate.App, tenant_id: str, targets: list[Target], n: Notification
) -> str:
    assert n.campaign_id is not None
    for target in targets:
        await campaign_store.flag_cancel_pending(
            conn, tenant_id, target.channel_id, n.campaign_id, target.channel_name
        )
    try:
        async with conn.transaction():
            await jobs.defer(
                conn,
                app,
                CANCEL_TASK,
                queueing_lock=f"cancel:{tenant_id}:{n.campaign_id}",
                tenant_id=tenant_id,
                campaign_id=n.campaign_id,
            )
    except procrastinate.exceptions.AlreadyEnqueued:
        return "cancel already queued"
    return "cancel queued"


async def _on_hold(conn: Conn, app: procrastinate.App, tenant_id: str, n: Notification) -> str:
    assert n.campaign_id is not None
    assert n.clearance_required_by is not None
    await campaign_store.hold(conn, tenant_id, n.campaign_id, n.clearance_required_by)
    held = f"held until {n.clearance_required_by.isoformat()}"
    # Promotions (docs/flows/promotions.md): the run and its job, in this same transaction.
    if not await promotion_store.is_enabled(conn, tenant_id):
        return held
    if not await promotion_store.start_run(conn, tenant_id, n.campaign_id, n.clearance_required_by):
        return f"{held}; promotions already started"
    lock = promotions.job_lock(tenant_id, n.campaign_id)
    try:
        async with conn.transaction():
            await jobs.defer(
                conn, app, promotions.PROMOTIONS_TASK, lock=lock, queueing_lock=lock,
                tenant_id=tenant_id, campaign_id=n.campaign_id,
            )  # fmt: skip
    except procrastinate.exceptions.AlreadyEnqueued:
        return f"{held}; promotions already queued"
    return f"{held}; promotions queued"


async def accept(
    conn: Conn,
    app: procrastinate.App,
    tenant_id: str,
    url_channel: int | None,
    n: Notification,
    raw: dict[str, Any],
) -> list[str]:
    """Apply a notification; returns what it did, one line per effect (also stored with it)."""
    async with conn.transaction():
        outcomes: list[str] = []
        if n.event_type in (EventType.CAMPAIGN_PROCESSED, EventType.CHANNEL_EXECUTED):
            targets, why_not = await _targets(conn, tenant_id, url_channel, n)
            if why_not:
                outcomes.append(f"ignored: {why_not}")
            for target in targets:
                outcomes.append(await _processed(conn, app, tenant_id, target, n))
        elif n.event_type is EventType.CAMPAIGN_CANCELED:
            targets, why_not = await _targets(conn, tenant_id, url_channel, n)
            outcomes.append(
                f"ignored: {why_not}" if why_not else await _canceled(conn, app, tenant_id, targets, n)
            )
        elif n.event_type is EventType.CAMPAIGN_ON_HOLD:
            outcomes.append(await _on_hold(conn, app, tenant_id, n))
        else:
            outcomes.append("recorded")
        await notifications.record(
            conn,
            tenant_id,
            n.channel_id if n.channel_id is not None else url_channel,
            int(n.event_type),
            n.campaign_id,
            raw,
            "; ".join(outcomes),
        )
    return outcomes

"""What an accepted event-14 webhook does to our state, in one transaction.

The engagement row (keyed by tenant, channel and EngagementID), the campaign row and the ingest
job are written together: a crash never leaves one without the others, and a repeated POST finds
the engagement and does nothing.

Our campaign is keyed (tenant, channel, CampaignID), as in the classic flow: the messages get the
same ids (UUIDv5 of tenant, channel, campaign, customer, template) whichever flow brought them, and
delivery, tracking and reporting find them unchanged. A second engagement of a campaign already
known on that channel (a classic event 1/13 for it, or another EngagementID) is recorded as a
`duplicate` and ingests nothing: its messages would have the same keys.
"""

from __future__ import annotations

from typing import Any

import procrastinate
import psycopg

from optibridge.core.secretbox import SecretBox
from optibridge.engine import jobs
from optibridge.intake.engagement_payload import EVENT_TYPE, EngagementEvent
from optibridge.store import campaigns as campaign_store
from optibridge.store import engagements

Conn = psycopg.AsyncConnection[dict[str, Any]]

ENGAGEMENT_TASK = "optibridge.intake.engagement"


def engagement_lock(tenant_id: str, channel_id: int, campaign_id: int) -> str:
    # The classic ingest's lock name: the two flows never write one campaign's pages at once.
    return f"ingest:{tenant_id}:{channel_id}:{campaign_id}"


async def accept_engagement(
    conn: Conn,
    app: procrastinate.App,
    box: SecretBox,
    tenant_id: str,
    channel_id: int,
    channel_name: str,
    event: EngagementEvent,
    body: dict[str, Any],
) -> str:
    """Record the engagement and queue its ingest; returns what it did."""
    async with conn.transaction():
        added = await engagements.record(
            conn,
            tenant_id=tenant_id,
            channel_id=channel_id,
            engagement_id=event.engagement_id,
            campaign_id=event.campaign_id,
            bucket_name=event.bucket_name,
            customers_folder=event.customers_folder,
            metadata_path=event.metadata_path,
            encrypted_key=box.encrypt(event.decryption_key) if event.decryption_key else None,
            payload=event.stored_payload(body),
        )
        if not added:
            # As in the classic flow, a repeat is the chance to resume an ingest that failed (files
            # missing or GCS refusing at the time); anything else about a known engagement is done.
            known = await engagements.get(conn, tenant_id, channel_id, event.engagement_id)
            if (
                known is None
                or known.status != "failed"
                or not await campaign_store.restart_ingest(conn, tenant_id, channel_id, known.campaign_id)
            ):
                return "duplicate engagement"
            await engagements.restart_failed(conn, tenant_id, channel_id, event.engagement_id)
            fresh = False
        else:
            fresh = await campaign_store.add_processed(
                conn, tenant_id, channel_id, event.campaign_id, channel_name, EVENT_TYPE
            )
        if (
            added
            and not fresh
            and not await campaign_store.restart_ingest(conn, tenant_id, channel_id, event.campaign_id)
        ):
            await engagements.set_status(
                conn,
                tenant_id,
                channel_id,
                event.engagement_id,
                "duplicate",
                f"campaign {event.campaign_id} is already known on channel {channel_id}",
            )
            return "duplicate campaign"
        lock = engagement_lock(tenant_id, channel_id, event.campaign_id)
        try:
            async with conn.transaction():  # a savepoint: a refused duplicate keeps the rest
                await jobs.defer(
                    conn,
                    app,
                    ENGAGEMENT_TASK,
                    lock=lock,
                    queueing_lock=f"engagement:{tenant_id}:{channel_id}:{event.engagement_id}",
                    tenant_id=tenant_id,
                    channel_id=channel_id,
                    engagement_id=event.engagement_id,
                )
        except procrastinate.exceptions.AlreadyEnqueued:
            return "ingest already queued"
    return "ingest queued" if added else "ingest restarted"

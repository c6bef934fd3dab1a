"""One-click unsubscribe for a message whose row was purged.

The purge keeps each sent message's recipient (`unsubscribe_keys`: message id, tenant, channel,
customer id, address) for `unsubscribe_keep_days` after sending, because an opt-out must be
honoured for at least 30 days after sending (CAN-SPAM) and the one-click link must keep working
(Gmail/Yahoo bulk-sender rules), while the message row goes about 10 days after sending. When the
tracking endpoint finds no message row, this writes the same suppression an unsubscribe event
would (customer and address) and queues the opt-out for Optimove where the channel reports them.
No event or interaction is recorded: the campaign's reporting is over and its counts are final.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from optibridge.core.feedback_settings import channel_feedback_options
from optibridge.feedback import suppression
from optibridge.runtime import Pool
from optibridge.store import preferences as preference_store
from optibridge.store import retention as store


async def unsubscribe_purged(pool: Pool, message_id: uuid.UUID, now: datetime, keep: timedelta) -> bool:
    """Suppress the recipient of a purged message sent within `keep` of `now`; False if there is no
    such kept recipient (unknown, not purged, expired or forgotten). True also when the
    suppression existed already (a repeated click): the person is unsubscribed either way."""
    async with pool.connection() as conn, conn.transaction():
        kept = await store.kept_recipient(conn, message_id, now - keep)
        if kept is None:
            return False
        new = await suppression.add(
            conn,
            kept.tenant_id,
            kept.channel_name,
            addresses=[kept.address] if kept.address else [],
            customer_ids=[kept.customer_id],
            reason="unsubscribed",
            source="feedback",
            message_id=message_id,  # no foreign key: it names the purged message
            note="unsubscribe link of a purged message",
        )
        options = channel_feedback_options(kept.channel_options)
        if new and options.report_preferences:
            await preference_store.queue(
                conn,
                [
                    preference_store.OptOut(
                        kept.tenant_id,
                        kept.channel_id,
                        kept.customer_id,
                        options.opt_out_mode,
                        "unsubscribed",
                    )
                ],
            )
    return True

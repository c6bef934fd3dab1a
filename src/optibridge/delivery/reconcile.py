"""Crash reconcile: after a crash, messages stay `claimed` by a dead worker. `reconcile` settles them
before anything is sent again: where the channel has a delivery lookup (a provider API that says
whether it took a message id) it asks; otherwise the channel's `uncertain` policy decides
(`resend`: at least once; `assume_sent`: at most once). docs/delivery.md explains the choice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from optibridge.core.logs import get_logger
from optibridge.core.states import MessageState
from optibridge.delivery.lookup import delivered_ids
from optibridge.delivery.registry import Channel
from optibridge.store import messages as message_store
from optibridge.store.messages import Conn

log = get_logger(__name__)

DEAD_WORKER_AFTER = timedelta(seconds=20)


async def reconcile(conn: Conn, ch: Channel, now: datetime) -> dict[str, int]:
    """Settle messages claimed by dead workers (or past their lease) before anything else is sent."""
    counts = {MessageState.SENT.value: 0, MessageState.PENDING.value: 0}
    async with conn.transaction():
        rows = await message_store.lock_stale_claims(
            conn, ch.tenant_id, ch.channel_id, now, dead_after=DEAD_WORKER_AFTER
        )
        if not rows:
            return counts
        ids = [str(r.id) for r in rows]
        if ch.lookup_url:
            accepted = await delivered_ids(ch.lookup_url, ids)
            how = "provider lookup"
        elif ch.uncertain == "assume_sent":
            accepted = set(ids)
            how = "assumed sent (uncertain policy)"
        else:
            accepted = set()
            how = "re-sent (uncertain policy)"
        states = [MessageState.SENT if mid in accepted else MessageState.PENDING for mid in ids]
        for state in states:
            counts[state.value] += 1
        await message_store.settle_stale_claims(conn, ids, states, now, f"reconciled after a crash: {how}")
    log.warning(
        "reconciled claims of a dead worker", tenant=ch.tenant_id, channel=ch.channel_id, how=how, **counts
    )
    return counts

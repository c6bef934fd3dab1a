"""Crash reconcile: after a crash, messages stay `claimed` by a dead worker. `reconcile` settles them
before anything is sent again: where the channel has a delivery lookup (a provider API that says
whether it took a message id) it asks; otherwise the channel's `uncertain` policy decides
(`resend`: at least once; `assume_sent`: at most once). docs/delivery.md explains the choice.

No row lock is held while the lookup is asked (it may take seconds): the stale claims are read,
the lookup is asked with a timeout, then one statement settles only the rows still claimed by the
worker seen stale. A lookup that fails or times out settles nothing: the claims wait for the next
pass, which asks again after a backoff (per channel and process), and sending of the channel's
other messages goes on meanwhile. Falling back to `resend` would turn a lookup outage into
duplicates on exactly the channels that configured a lookup to have none.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import aiohttp

from optibridge.core.logs import get_logger
from optibridge.core.states import MessageState
from optibridge.delivery.lookup import delivered_ids
from optibridge.delivery.registry import Channel
from optibridge.delivery.results import DEAD_AFTER
from optibridge.store import messages as message_store
from optibridge.store.messages import Conn

log = get_logger(__name__)

DEAD_WORKER_AFTER = DEAD_AFTER
LOOKUP_TIMEOUT_S = 5.0  # a send job waits at most this for the lookup before it sends
LOOKUP_BACKOFF_S = 5.0  # after a failed lookup; doubles up to LOOKUP_BACKOFF_MAX_S
LOOKUP_BACKOFF_MAX_S = 300.0


def lookup_backoff_s(failures: int) -> float:
    return float(min(LOOKUP_BACKOFF_MAX_S, LOOKUP_BACKOFF_S * 2 ** max(0, failures - 1)))


async def reconcile(conn: Conn, ch: Channel, now: datetime) -> dict[str, int]:
    """Settle messages claimed by dead workers (or past their lease) before anything else is sent."""
    counts = {MessageState.SENT.value: 0, MessageState.PENDING.value: 0}
    if ch.lookup_url and time.monotonic() < ch.lookup_after:
        return counts  # the lookup failed lately: these claims wait, the rest of the channel sends
    claims = await message_store.stale_claims(conn, ch.tenant_id, ch.channel_id, now, dead_after=DEAD_AFTER)
    if not claims:
        return counts
    ids = [str(c.id) for c in claims]
    if ch.lookup_url:
        try:
            accepted = await asyncio.wait_for(delivered_ids(ch.lookup_url, ids), LOOKUP_TIMEOUT_S)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            ch.lookup_failures += 1
            wait = lookup_backoff_s(ch.lookup_failures)
            ch.lookup_after = time.monotonic() + wait
            log.warning(
                "delivery lookup failed: claims of a dead worker wait for it",
                tenant=ch.tenant_id,
                channel=ch.channel_id,
                claims=len(ids),
                error=f"{type(exc).__name__}: {exc}"[:300],
                retry_in_s=wait,
            )
            return counts
        ch.lookup_failures = 0
        ch.lookup_after = 0.0
        how = "provider lookup"
    elif ch.uncertain == "assume_sent":
        accepted = set(ids)
        how = "assumed sent (uncertain policy)"
    else:
        accepted = set()
        how = "re-sent (uncertain policy)"
    states = [MessageState.SENT if mid in accepted else MessageState.PENDING for mid in ids]
    async with conn.transaction():
        settled = await message_store.settle_stale_claims(
            conn, claims, states, now, f"reconciled after a crash: {how}", dead_after=DEAD_AFTER
        )
    for state in states:
        counts[state.value] += 1
    log.warning(
        "reconciled claims of a dead worker",
        tenant=ch.tenant_id,
        channel=ch.channel_id,
        how=how,
        settled=settled,
        **counts,
    )
    return counts

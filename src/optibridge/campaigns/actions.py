"""The operator actions on a campaign: pause, resume, cancel.

Pause/resume set `paused` (the dispatcher honours it). Cancel is what a full cancel from
Optimove does: status 'canceled' and every pending message canceled, in one transaction.
`decide` is the pure part: what an action does to a campaign in a given state.
"""

from __future__ import annotations

from typing import Literal

from optibridge.campaigns.progress import campaign_row
from optibridge.core.errors import ConflictError
from optibridge.store import campaigns as store
from optibridge.store.campaigns import Conn

Action = Literal["pause", "resume", "cancel"]
ACTIONS: tuple[Action, ...] = ("pause", "resume", "cancel")
OPERATOR_CANCEL_REASON = "canceled by operator"

# What to do: cancel (first time), recancel (cancel pending rows of a canceled campaign),
# set the paused flag, nothing (already so), or refuse (a canceled campaign cannot pause/resume).
Step = Literal["cancel", "recancel", "pause", "resume", "already paused", "not paused", "conflict"]


def decide(action: Action, *, status: str, paused: bool) -> Step:
    if action == "cancel":
        return "recancel" if status == "canceled" else "cancel"
    if status == "canceled":
        return "conflict"
    if action == "pause":
        return "already paused" if paused else "pause"
    return "resume" if paused else "not paused"


async def act(conn: Conn, tenant_id: str, channel: str, campaign_id: int, action: Action) -> str:
    """Returns what happened; ConflictError for pause/resume of a canceled campaign."""
    async with conn.transaction():
        row = await campaign_row(conn, tenant_id, channel, campaign_id, lock=True)
        key = (tenant_id, row.channel_id, campaign_id)
        step = decide(action, status=row.status, paused=row.paused)
        if step == "recancel":
            # Pending rows written after an earlier cancel cannot exist (ingest stops on it),
            # but canceling them again is harmless and makes the answer true.
            n = await store.cancel_pending_messages(conn, key, OPERATOR_CANCEL_REASON)
            return f"already canceled; {n} pending message(s) canceled"
        if step == "cancel":
            await store.mark_canceled(conn, key)
            n = await store.cancel_pending_messages(conn, key, OPERATOR_CANCEL_REASON)
            return f"canceled; {n} pending message(s) canceled"
        if step == "conflict":
            raise ConflictError(f"campaign {campaign_id} on {tenant_id}/{channel} is canceled")
        if step in ("pause", "resume"):
            await store.set_paused(conn, key, step == "pause")
            return "paused" if step == "pause" else "resumed"
        return step

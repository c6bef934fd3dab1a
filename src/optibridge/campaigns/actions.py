"""The operator actions on a campaign: pause, resume, cancel.

Pause/resume set `paused` (the dispatcher honours it). Cancel is what a full cancel from
Optimove does: status 'canceled' and every pending message canceled, in one transaction.
`decide` is the pure part: what an action does to a campaign in a given state.
"""

from __future__ import annotations

from typing import Literal

from optibridge.campaigns.progress import campaign_row
from optibridge.core.errors import ConflictError
from optibridge.core.states import OPEN_STATES
from optibridge.store import campaigns as store
from optibridge.store.campaigns import Conn

Action = Literal["pause", "resume", "cancel"]
ACTIONS: tuple[Action, ...] = ("pause", "resume", "cancel")
OPERATOR_CANCEL_REASON = "canceled by operator"

# What to do: cancel (first time), recancel (cancel pending rows of a canceled campaign),
# set the paused flag, nothing (already so), or refuse (a canceled campaign cannot pause/resume;
# a finished one has nothing left to cancel).
Step = Literal[
    "cancel", "recancel", "pause", "resume", "already paused", "not paused", "conflict", "finished"
]


def decide(action: Action, *, status: str, paused: bool, open_messages: int | None = None) -> Step:
    """`open_messages`: the campaign's pending and claimed messages (None: not counted)."""
    if action == "cancel":
        if status == "canceled":
            return "recancel"
        # Every message sent or settled: a cancel would only relabel a campaign that is over.
        return "finished" if status == "ingested" and open_messages == 0 else "cancel"
    if status == "canceled":
        return "conflict"
    if action == "pause":
        return "already paused" if paused else "pause"
    return "resume" if paused else "not paused"


async def act(conn: Conn, tenant_id: str, channel: str, campaign_id: int, action: Action) -> str:
    """Returns what happened; ConflictError for pause/resume of a canceled campaign, and for a
    cancel of a finished one (nothing is changed)."""
    async with conn.transaction():
        row = await campaign_row(conn, tenant_id, channel, campaign_id, lock=True)
        key = (tenant_id, row.channel_id, campaign_id)
        open_messages = None
        if action == "cancel" and row.status == "ingested":
            counts = (await store.state_counts(conn, [key], 0.0))[key].counts
            open_messages = sum(counts.get(s, 0) for s in OPEN_STATES)
        step = decide(action, status=row.status, paused=row.paused, open_messages=open_messages)
        if step == "finished":
            raise ConflictError(
                f"campaign {campaign_id} on {tenant_id}/{channel} is finished: every message was sent "
                "or settled; nothing to cancel"
            )
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

"""The operator actions on a campaign: pause, resume, cancel, and "push now" (the on-demand report
push, which lives in reporting/; here only whether it applies).

Pause/resume set `paused` (the dispatcher honours it). Cancel is what a full cancel from
Optimove does: status 'canceled' and every pending message canceled, in one transaction.
`decide` and `decide_push` are the pure part: what an action does to a campaign in a given state.
`offered` is what the dashboard shows as buttons: exactly the actions `decide` would carry out,
so a button is never offered that the POST behind it would refuse.
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
# Steps that change something an operator asked for; "recancel" only sweeps rows that cannot exist
# (see act), so it is not offered as a button although the API still accepts it.
OFFERED_STEPS: frozenset[Step] = frozenset({"cancel", "pause", "resume"})
PushStep = Literal["push", "nothing to report", "closed"]


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
        if paused:
            return "already paused"
        # Nothing left to send: pausing would only set a flag nobody reads.
        return "finished" if status == "ingested" and open_messages == 0 else "pause"
    return "resume" if paused else "not paused"


def decide_push(*, reportable: int, closed: bool) -> PushStep:
    """`reportable`: messages that left the queue other than canceled (sent, failed, expired,
    suppressed): what a push reports on. `closed`: the reporting window is over (or given up)."""
    if closed:
        return "closed"
    return "push" if reportable > 0 else "nothing to report"


def offered(
    *, status: str, paused: bool, open_messages: int, reportable: int, closed: bool
) -> tuple[str, ...]:
    """The actions to show for a campaign, in display order ("push" is the on-demand push)."""
    out: list[str] = [
        a
        for a in ACTIONS
        if decide(a, status=status, paused=paused, open_messages=open_messages) in OFFERED_STEPS
    ]
    if decide_push(reportable=reportable, closed=closed) == "push":
        out.append("push")
    return tuple(out)


async def act(conn: Conn, tenant_id: str, channel: str, campaign_id: int, action: Action) -> str:
    """Returns what happened; ConflictError for pause/resume of a canceled campaign, and for a
    cancel of a finished one (nothing is changed)."""
    async with conn.transaction():
        row = await campaign_row(conn, tenant_id, channel, campaign_id, lock=True)
        key = (tenant_id, row.channel_id, campaign_id)
        open_messages = None
        if action in ("cancel", "pause") and row.status == "ingested":
            counts = (await store.state_counts(conn, [key], 0.0))[key].counts
            open_messages = sum(counts.get(s, 0) for s in OPEN_STATES)
        step = decide(action, status=row.status, paused=row.paused, open_messages=open_messages)
        if step == "finished":
            raise ConflictError(
                f"campaign {campaign_id} on {tenant_id}/{channel} is finished: every message was sent "
                f"or settled; nothing to {action}"
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

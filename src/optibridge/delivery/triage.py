"""What to do with each claimed message before (and between) sends: pure decisions, no I/O.

Before a slice is sent, each claimed message is, in this order of precedence:
suppressed (its address or customer is on the suppression list), expired (too late to send),
failed (its template is not in the catalog), or to be sent. Between chunks, a message whose
campaign was canceled meanwhile is canceled, one whose campaign was paused goes back to pending
(its attempt given back). When every provider is benched, the rest go back to pending, unharmed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from optibridge.core.states import MessageState
from optibridge.delivery.transitions import RetryPolicy, Transition, too_late
from optibridge.store.messages import ClaimedMessage, Hold

T = TypeVar("T")

SUPPRESSED = "on the suppression list"
CANCELED = "campaign canceled"
PAUSED = "campaign paused"
BENCHED = "all providers benched"


def expired_reason(policy: RetryPolicy) -> str:
    return f"not sent within {policy.max_lateness}"


def missing_template_reason(template_id: int) -> str:
    return f"template {template_id} is not in the catalog"


@dataclass(frozen=True, slots=True)
class Decision:
    """A claimed message settled without a send."""

    message: ClaimedMessage
    transition: Transition


@dataclass(frozen=True, slots=True)
class ToSend(Generic[T]):
    message: ClaimedMessage
    template: T


@dataclass
class Triage(Generic[T]):
    send: list[ToSend[T]] = field(default_factory=list)
    settle: list[Decision] = field(default_factory=list)


def triage(
    rows: Iterable[ClaimedMessage],
    *,
    now: datetime,
    policy: RetryPolicy,
    suppressed: Collection[str],
    templates: Mapping[int, T],
) -> Triage[T]:
    """Split a claimed slice into messages to send (with their template) and messages settled now.

    `suppressed` holds the suppressed addresses and customer ids among the slice's (as given);
    `templates` the usable templates by id (a missing id fails its messages).
    """
    out: Triage[T] = Triage()
    for row in rows:
        if row.address in suppressed or row.customer_id in suppressed:
            out.settle.append(Decision(row, Transition(MessageState.SUPPRESSED, reason=SUPPRESSED)))
        elif too_late(row.send_at, now, policy):
            out.settle.append(Decision(row, Transition(MessageState.EXPIRED, reason=expired_reason(policy))))
        elif (template := templates.get(row.template_id)) is None:
            reason = missing_template_reason(row.template_id)
            out.settle.append(Decision(row, Transition(MessageState.FAILED, reason=reason)))
        else:
            out.send.append(ToSend(row, template))
    return out


def render_failed(row: ClaimedMessage, error: Exception) -> Decision:
    return Decision(row, Transition(MessageState.FAILED, reason=f"render: {error}"))


def hold_back(
    rows: Sequence[ClaimedMessage], held: Mapping[int, Hold]
) -> tuple[list[Decision], list[ClaimedMessage]]:
    """Between chunks: settle the messages of held campaigns; returns them and the ones still to send."""
    settled: list[Decision] = []
    remaining: list[ClaimedMessage] = []
    for row in rows:
        why = held.get(row.campaign_id)
        if why is None:
            remaining.append(row)
        elif why == "canceled":
            settled.append(Decision(row, Transition(MessageState.CANCELED, reason=CANCELED)))
        else:
            settled.append(Decision(row, Transition(MessageState.PENDING, reason=PAUSED, attempts_delta=-1)))
    return settled, remaining


def give_back(rows: Iterable[ClaimedMessage], retry_at: datetime) -> list[Decision]:
    """No provider can take messages now: back to pending at `retry_at`, their attempt given back."""
    return [
        Decision(row, Transition(MessageState.PENDING, reason=BENCHED, send_at=retry_at, attempts_delta=-1))
        for row in rows
    ]

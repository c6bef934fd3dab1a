"""The states of a message: the one list of them (the migration's `message_state` enum is checked
against it by tests/unit/test_states.py).

    pending -> claimed -> sent | failed | suppressed | canceled | expired

Only `pending` and `claimed` ever change; a final state never does. The provider is called only
for a `claimed` message.
"""

from __future__ import annotations

from enum import StrEnum


class MessageState(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CANCELED = "canceled"
    EXPIRED = "expired"


# Declaration order above is the order reports and dashboards list them in.
ALL_STATES: tuple[MessageState, ...] = tuple(MessageState)
OPEN_STATES = frozenset({MessageState.PENDING, MessageState.CLAIMED})
FINAL_STATES = frozenset(set(MessageState) - OPEN_STATES)

"""What happens to a claimed message after a send attempt: pure decisions, no I/O.

States: pending -> claimed -> sent | failed | suppressed | canceled | expired. Only `pending` and
`claimed` ever change; a final state never does. From `claimed` a message goes back to `pending`
only to be retried (throttled, transient failure, no provider available).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from optibridge.channels.base import Outcome, SendResult
from optibridge.core.states import MessageState


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8  # transient failures; throttling does not count
    base_delay_s: float = 5.0
    max_delay_s: float = 600.0
    max_lateness: timedelta = timedelta(hours=24)  # after this past its time, a message expires
    # The channel's `uncertain` policy for a send whose answer was lost (the request went out):
    # True (`assume_sent`): at most once; False (`resend`): retried like any transient failure.
    assume_sent_when_uncertain: bool = False

    def backoff(self, attempts: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * 2.0 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class Transition:
    state: MessageState  # the new state
    reason: str | None = None
    send_at: datetime | None = None  # for a retry: when to try again
    attempts_delta: int = 0  # -1 gives back the attempt taken at claim time (throttling)
    provider_message_id: str | None = None


def too_late(send_at: datetime, now: datetime, policy: RetryPolicy) -> bool:
    return now - send_at > policy.max_lateness


def after_send(
    result: SendResult, *, attempts: int, send_at: datetime, now: datetime, policy: RetryPolicy
) -> Transition:
    """`attempts` counts this one. Throttling is back-pressure, never a failure: the message waits
    and its attempt is given back; transient failures retry with backoff until attempts or
    lateness run out; permanent failures are final."""
    if result.outcome is Outcome.SENT:
        return Transition(MessageState.SENT, provider_message_id=result.provider_message_id)
    if result.outcome is Outcome.PERMANENT:
        return Transition(MessageState.FAILED, reason=result.reason or "permanent failure")
    if result.uncertain and policy.assume_sent_when_uncertain:
        return Transition(MessageState.SENT, reason=f"assumed sent (uncertain policy): {result.reason}")
    if too_late(send_at, now, policy):
        return Transition(
            MessageState.EXPIRED, reason=f"could not be sent within {policy.max_lateness} ({result.reason})"
        )
    if result.outcome is Outcome.THROTTLED:
        wait = result.retry_after if result.retry_after is not None else policy.base_delay_s
        return Transition(
            MessageState.PENDING,
            reason=result.reason,
            send_at=now + timedelta(seconds=wait),
            attempts_delta=-1,
        )
    if attempts >= policy.max_attempts:
        return Transition(MessageState.FAILED, reason=f"gave up after {attempts} attempts: {result.reason}")
    wait = max(policy.backoff(attempts), result.retry_after or 0.0)
    return Transition(MessageState.PENDING, reason=result.reason, send_at=now + timedelta(seconds=wait))

"""The one interface between the dispatcher and every provider adapter.

The dispatcher hands over `OutboundMessage`s (already rendered) and gets back a `SendResult` per
message. Adapters never raise for provider or network trouble: they classify it, so the caller
decides between mark-sent, retry-later (THROTTLED/TRANSIENT) and fail/suppress (PERMANENT).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

_EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    # One shared read-only mapping: most messages carry no extra headers or data, and the
    # dispatcher builds hundreds of thousands of them.
    return _EMPTY


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One rendered message for one recipient."""

    message_id: str  # deterministic (uuid5): Message-ID, idempotency key, callback metadata
    tenant_id: str
    campaign_id: int
    customer_id: str
    template_id: int
    to: str  # email address | E.164 phone | device token | '' for webhook
    body: str  # email: HTML; sms/push: text; webhook: JSON text
    subject: str | None = None  # email subject / push title
    text_body: str | None = None  # email plain-text alternative
    from_address: str | None = None
    headers: Mapping[str, str] = field(default_factory=_empty)  # extra email headers (List-Unsubscribe, ...)
    app_id: str | None = None  # push app
    data: Mapping[str, str] = field(default_factory=_empty)  # push data / metadata echoed in callbacks


class Outcome(enum.Enum):
    SENT = "sent"
    THROTTLED = "throttled"  # back-pressure: slow down and retry, never a failure
    TRANSIENT = "transient"  # retry later (5xx, timeouts, dropped connections, auth trouble)
    PERMANENT = "permanent"  # retrying cannot help


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    provider_message_id: str | None = None
    retry_after: float | None = None  # seconds, for THROTTLED (and TRANSIENT when the provider said)
    reason: str | None = None  # human-readable, e.g. "550 5.1.1 <x@y>: user unknown"
    bounce: bool = False  # PERMANENT because the recipient is bad (-> suppression list)
    unregistered: bool = False  # push token no longer valid (-> suppression)
    # TRANSIENT after the request went out with no (usable) answer: the provider may have taken
    # the message. The channel's `uncertain` policy decides, as for a crash (docs/delivery.md).
    uncertain: bool = False


SENT = SendResult(Outcome.SENT)  # shared instance for providers that return no id


@runtime_checkable
class Provider(Protocol):
    kind: str  # "email" | "sms" | "push" | "webhook"
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message; provider and network errors come back classified, never raised."""
        ...

    async def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send concurrently up to the provider's connection limit; results in input order."""
        ...


async def send_bounded(
    send: Callable[[OutboundMessage], Awaitable[SendResult]],
    messages: Sequence[OutboundMessage],
    limit: int,
) -> list[SendResult]:
    """Run `send` over `messages` with at most `limit` in flight, results in input order.

    A fixed set of workers pulls from one shared iterator, so a slice of thousands costs `limit`
    tasks, not one task (and one future) per message.
    """
    count = len(messages)
    if count == 0:
        return []
    results: list[SendResult | None] = [None] * count
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:  # the iterator is shared: each index is taken by exactly one worker
            results[index] = await send(messages[index])

    workers = min(max(limit, 1), count)
    if workers == 1:
        await worker()
        return results  # type: ignore[return-value]  # every slot was filled
    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # Adapters classify provider errors; an exception here is a bug or a cancellation, and
        # the other workers must not keep sending behind the caller's back.
        for task in tasks:
            task.cancel()
        raise
    return results  # type: ignore[return-value]  # every slot was filled by a worker

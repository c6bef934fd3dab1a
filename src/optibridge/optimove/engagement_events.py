"""Optimove's External Vendors Campaign Engagement Metrics (`POST metric-<tenant>.optimove.net/api/saveEvent`,
optimove-api §9.3): the events, their signature, and a small client.

Each request body is a JSON array of events, signed as sent: the header
`x-optimove-signature-content` is the hex HMAC-SHA256 of the exact body bytes, keyed with the
tenant's engagement token (stdlib `hmac`; signing the bytes we send, never a re-serialisation, is
what makes the signature verifiable). Optimove refuses events older than 7 days, so the caller
drops those before sending (`too_old`); one that ages past the limit in flight would be refused
with the whole request, hence the safety margin.

Event names and context fields are UNCONFIRMED (the documentation page was cut off): the names
below follow our metrics (docs/flows/engagement-events.md), and can be renamed by setting.

Retries follow the classic client (optimove.retry): 408, 429, 5xx, timeouts and connection
errors are retried with jittered backoff; any other 4xx (a refused signature: 401/403; a refused
event: 400) is raised at once, since sending the same bytes again cannot succeed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Final

import aiohttp

from optibridge.core.logs import get_logger
from optibridge.core.outbound import OutboundPolicy
from optibridge.optimove.batching import chunked
from optibridge.optimove.clock import SYSTEM_CLOCK, Clock
from optibridge.optimove.config import Timeouts
from optibridge.optimove.errors import (
    OptimoveError,
    OptimoveRequestError,
    error_for_status,
)
from optibridge.optimove.exchange import exchange
from optibridge.optimove.retry import RetryPolicy, backoff_delay, parse_retry_after

CALL: Final = "saveEvent"
SIGNATURE_VERSION_HEADER: Final = "X-Optimove-Signature-Version"
SIGNATURE_HEADER: Final = "x-optimove-signature-content"
SIGNATURE_VERSION: Final = "1"
CATEGORY: Final = "metric"
MAX_EVENT_AGE: Final = timedelta(days=7)
# An event this close to the limit is not sent: it could cross it before Optimove checks.
AGE_MARGIN: Final = timedelta(minutes=10)

# MetricID (optimove.models.MetricID) -> event name. UNCONFIRMED names; plain snake_case past
# participles, the vocabulary of the classic metric table (optimove-api §9.1).
DEFAULT_EVENT_NAMES: Final[Mapping[int, str]] = {
    0: "sent",
    1: "delivered",
    2: "opened",
    3: "clicked",
    4: "unsubscribed",
    5: "dropped",
    6: "spam_reported",
    9: "bounced",
}

log = get_logger(__name__)


def sign(body: bytes, token: str) -> str:
    """The signature of these exact body bytes: lower-case hex HMAC-SHA256 keyed with the token."""
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(body: bytes, token: str, signature: str) -> bool:
    """Constant-time check of a received signature (hex, either case)."""
    return hmac.compare_digest(sign(body, token), signature.strip().lower())


def format_timestamp(when: datetime) -> str:
    """UTC, ISO 8601 with milliseconds and `Z` (e.g. 2026-11-29T21:14:06.123Z)."""
    utc = when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def too_old(occurred: datetime, now: datetime, *, max_age: timedelta = MAX_EVENT_AGE) -> bool:
    """Whether an event that happened at `occurred` must not be sent at `now` (Optimove would
    refuse it: older than 7 days, less a safety margin for the time in flight)."""
    return now - occurred > max_age - AGE_MARGIN


@dataclass(frozen=True, slots=True)
class EngagementEvent:
    """One customer's interaction with one message, as one saveEvent event."""

    metric_id: int
    customer_id: str
    occurred_at: datetime
    campaign_id: int
    channel_id: int
    template_id: int
    message_id: str

    def to_json(self, names: Mapping[int, str] = DEFAULT_EVENT_NAMES) -> dict[str, object]:
        when = format_timestamp(self.occurred_at)
        return {
            "event": names.get(self.metric_id, f"metric_{self.metric_id}"),
            "category": CATEGORY,
            "timestamp": when,
            "customer": self.customer_id,
            "context": {
                "campaign_id": self.campaign_id,
                "channel_id": self.channel_id,
                "template_id": self.template_id,
                "metric_id": self.metric_id,
                "event_time": when,
                "message_id": self.message_id,
            },
        }


def encode_events(events: Sequence[EngagementEvent], names: Mapping[int, str] = DEFAULT_EVENT_NAMES) -> bytes:
    """The body of one request: a compact JSON array (the bytes that get signed)."""
    return json.dumps([e.to_json(names) for e in events], separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class EngagementClientConfig:
    base_url: str  # e.g. https://metric-123.optimove.net; `/api/saveEvent` is appended
    token: str = field(repr=False)
    events_per_request: int = 100
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    event_names: Mapping[int, str] = field(default_factory=lambda: dict(DEFAULT_EVENT_NAMES))

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if not 1 <= self.events_per_request <= 1000:
            raise ValueError("events_per_request must be 1..1000")
        if not self.token:
            raise ValueError("the engagement token must not be empty")


class EngagementClient:
    """Posts signed events for one tenant. `async with EngagementClient(config) as c: ...`.

    `outbound` is the operator's outbound policy: the base URL is judged before anything is sent
    and every connection resolves through the guard (a tenant can set the URL).
    """

    def __init__(
        self,
        config: EngagementClientConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        outbound: OutboundPolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._url = config.base_url.rstrip("/") + "/api/saveEvent"
        self._outbound = outbound
        self._refused = outbound.check_url(self._url) if outbound is not None else None
        self._session = session
        self._owns_session = session is None
        self._clock = clock or SYSTEM_CLOCK
        self._rng = rng or random.Random()
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeouts.total_s, sock_connect=config.timeouts.connect_s
        )
        self.requests_sent = 0
        self.retries = 0

    async def __aenter__(self) -> EngagementClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=4, resolver=self._outbound.resolver() if self._outbound is not None else None
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def save_events(self, events: Sequence[EngagementEvent]) -> int:
        """Send all events, `events_per_request` a request; returns how many were accepted.

        Raises the first refusal (OptimoveError): requests before it were accepted, none after
        it was sent. The caller records accepted events per request through `save_batch`."""
        sent = 0
        for batch in chunked(list(events), self.config.events_per_request):
            await self.save_batch(batch)
            sent += len(batch)
        return sent

    async def save_batch(self, events: Sequence[EngagementEvent]) -> None:
        """One request (at most `events_per_request` events), retried as the policy allows."""
        if not events:
            return
        if len(events) > self.config.events_per_request:
            raise OptimoveRequestError(
                f"{len(events)} events in one request; at most {self.config.events_per_request}",
                call=CALL,
            )
        if self._refused is not None:
            raise OptimoveRequestError(
                f"Optimove {CALL} not sent: the metric base URL is refused ({self._refused})",
                call=CALL,
                retryable=False,
            )
        body = encode_events(events, self.config.event_names)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_VERSION_HEADER: SIGNATURE_VERSION,
            SIGNATURE_HEADER: sign(body, self.config.token),
        }
        policy = self.config.retry
        attempt = 0
        while True:  # bounded: `attempt` grows to policy.max_attempts
            attempt += 1
            retry_after: float | None = None
            error: OptimoveError
            self.requests_sent += 1
            answer = await exchange(
                self._http(), "POST", self._url, call=CALL, attempt=attempt, limits=self._timeout,
                total_s=self.config.timeouts.total_s, data=body, headers=headers,
            )  # fmt: skip
            if isinstance(answer, OptimoveError):
                error = answer
            else:
                if 200 <= answer.status < 300:
                    return
                error = error_for_status(CALL, answer.status, answer.payload, attempt)
                retry_after = parse_retry_after(answer.retry_after, self._clock.now())
            if not error.retryable or attempt >= policy.max_attempts:
                raise error
            delay = backoff_delay(policy, attempt, self._rng.random(), retry_after)
            self.retries += 1
            log.warning(
                "optimove.retry", call=CALL, attempt=attempt, status=error.status, delay_s=round(delay, 3)
            )
            await self._clock.sleep(delay)

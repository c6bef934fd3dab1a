"""Retry policy and backoff arithmetic (pure: the client supplies time and randomness)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures (429, 5xx, timeouts, resets).

    `max_attempts` counts the first try. The delay before retry n (1-based) is drawn from
    [base/2, base] with base = min(max_delay_s, initial_delay_s * multiplier**(n-1)): half
    fixed so a retry never comes back at once, half random so many clients do not retry in
    step. A `Retry-After` from the server is honoured (capped by `max_retry_after_s`).
    """

    max_attempts: int = 6
    initial_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay_s < 0 or self.max_delay_s < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and multiplier >= 1")


NO_RETRY = RetryPolicy(max_attempts=1)


def backoff_delay(
    policy: RetryPolicy, retry_number: int, jitter: float, retry_after_s: float | None = None
) -> float:
    """Seconds to wait before retry `retry_number` (1 for the first retry).

    `jitter` is a uniform random number in [0, 1). With `retry_after_s` the wait is at least
    that long (the server knows when its window reopens), plus a little jitter to spread a
    crowd of waiting tasks.
    """
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    jitter = min(max(jitter, 0.0), 1.0)
    exponent = min(retry_number - 1, 64)  # 2**64 already exceeds any sane cap
    base = min(policy.max_delay_s, policy.initial_delay_s * policy.multiplier**exponent)
    delay = base / 2 + base / 2 * jitter
    if retry_after_s is not None and retry_after_s > 0:
        honoured = min(retry_after_s, policy.max_retry_after_s)
        delay = max(delay, honoured + policy.initial_delay_s * jitter / 2)
    return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())

from datetime import UTC, datetime

import pytest

from optibridge.optimove.errors import (
    OptimoveAuthError,
    OptimoveBadRequestError,
    OptimoveClientError,
    OptimoveRateLimitedError,
    OptimoveServerError,
    error_for_status,
    is_retryable_status,
)
from optibridge.optimove.retry import RetryPolicy, backoff_delay, parse_retry_after

POLICY = RetryPolicy(initial_delay_s=1.0, multiplier=2.0, max_delay_s=10.0, max_retry_after_s=60.0)


def test_backoff_doubles_per_retry_and_stops_at_the_cap() -> None:
    top = [backoff_delay(POLICY, n, jitter=1.0) for n in range(1, 7)]
    assert top == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_keeps_delay_between_half_and_full_backoff() -> None:
    assert backoff_delay(POLICY, 3, jitter=0.0) == 2.0
    assert backoff_delay(POLICY, 3, jitter=0.5) == 3.0
    assert backoff_delay(POLICY, 3, jitter=7.0) == 4.0  # out-of-range jitter is clamped


def test_retry_after_is_honoured_and_capped() -> None:
    assert backoff_delay(POLICY, 1, jitter=0.0, retry_after_s=30.0) == 30.0
    assert backoff_delay(POLICY, 1, jitter=0.0, retry_after_s=500.0) == 60.0
    # A Retry-After shorter than the backoff does not shorten the backoff.
    assert backoff_delay(POLICY, 4, jitter=1.0, retry_after_s=1.0) == 8.0


def test_huge_retry_numbers_do_not_overflow() -> None:
    assert backoff_delay(POLICY, 10_000, jitter=1.0) == 10.0


def test_policy_and_retry_number_are_validated() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="starts at 1"):
        backoff_delay(POLICY, 0, jitter=0.0)


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("-3", now) == 0.0


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (403, False), (404, False), (405, False), (408, True),
     (429, True), (500, True), (502, True), (503, True)],
)  # fmt: skip
def test_only_throttling_timeouts_and_server_errors_are_retryable(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable
    assert error_for_status("X", status, b"", 1).retryable is retryable


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, OptimoveBadRequestError), (401, OptimoveAuthError), (403, OptimoveAuthError),
     (405, OptimoveClientError), (429, OptimoveRateLimitedError), (503, OptimoveServerError)],
)  # fmt: skip
def test_status_maps_to_a_typed_error_naming_call_status_and_body(status: int, cls: type) -> None:
    error = error_for_status("GetChannelTemplates", status, b'{"message": "nope"}' * 50, 3)
    assert type(error) is cls
    assert error.call == "GetChannelTemplates"
    assert error.status == status
    assert error.attempts == 3
    assert str(error).startswith(f"Optimove GetChannelTemplates failed: HTTP {status} (")
    assert str(error).endswith("after 3 attempts")
    assert "nope" not in str(error)  # the body never reaches messages (API answers, logs)
    assert "nope" in error.body_excerpt
    assert len(error.body_excerpt) <= 301  # long bodies are cut

"""Typed failures of Optimove API calls.

Each error says which call failed (`call`), why (`status`, message) and whether trying again
later may help (`retryable`). The client has already retried retryable failures as its policy
allows when one of these reaches the caller.

Messages are our own words (call, status, its class): never Optimove's body, because messages
reach API answers, stored campaign errors and logs, and a body can carry anything the server at
the tenant's base URL chose to say. `body_excerpt` keeps the start of the body for debugging in
process; nothing shows it.
"""

from __future__ import annotations

from optibridge.core.errors import OptibridgeError

BODY_EXCERPT_CHARS = 300


def excerpt(body: bytes | str, limit: int = BODY_EXCERPT_CHARS) -> str:
    """The first `limit` characters of a response body, decoded leniently, for messages."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class OptimoveError(OptibridgeError):
    """An Optimove API call failed."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        call: str,
        status: int | None = None,
        body_excerpt: str = "",
        attempts: int = 1,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.call = call
        self.status = status
        self.body_excerpt = body_excerpt
        self.attempts = attempts
        if retryable is not None:
            self.retryable = retryable


class OptimoveRequestError(OptimoveError):
    """The arguments given to the client are invalid; nothing was sent."""


class OptimoveHTTPError(OptimoveError):
    """Optimove answered with a non-2xx status."""


class OptimoveClientError(OptimoveHTTPError):
    """A 4xx answer: the request itself is wrong and repeating it will not help."""


class OptimoveBadRequestError(OptimoveClientError):
    """400: Optimove rejected the parameters or the body."""


class OptimoveAuthError(OptimoveClientError):
    """401/403: bad credentials, a revoked or under-permissioned key, or an unrenewable token."""


class OptimoveRateLimitedError(OptimoveHTTPError):
    """429: still rate limited after the retries the policy allows."""

    retryable = True


class OptimoveServerError(OptimoveHTTPError):
    """5xx: Optimove failed; still failing after the retries the policy allows."""

    retryable = True


class OptimoveTransportError(OptimoveError):
    """No HTTP answer: connection refused or reset, DNS failure, truncated body."""

    retryable = True


class OptimoveTimeoutError(OptimoveTransportError):
    """No complete answer within the configured timeout."""


class OptimoveResponseError(OptimoveError):
    """A 2xx answer whose body is not what the call returns (malformed JSON, wrong shape)."""


def status_summary(status: int) -> str:
    """Our words for an HTTP status, e.g. "500 (server error)"."""
    if status == 429:
        label = "rate limited"
    elif status in (401, 403):
        label = "credentials refused"
    elif status >= 500:
        label = "server error"
    elif 400 <= status < 500:
        label = "request refused"
    elif 300 <= status < 400:
        label = "redirect, not followed"
    else:
        label = "unexpected status"
    return f"{status} ({label})"


def error_for_status(call: str, status: int, body: bytes, attempts: int) -> OptimoveHTTPError:
    """The typed error for a non-2xx answer."""
    text = excerpt(body)
    cls: type[OptimoveHTTPError]
    if status == 400:
        cls = OptimoveBadRequestError
    elif status in (401, 403):
        cls = OptimoveAuthError
    elif status == 429:
        cls = OptimoveRateLimitedError
    elif status >= 500:
        cls = OptimoveServerError
    elif 400 <= status < 500:
        cls = OptimoveClientError
    else:  # 1xx/3xx: redirects are not followed (they could lead past the outbound guard)
        cls = OptimoveHTTPError
    retryable = is_retryable_status(status)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    message = f"Optimove {call} failed: HTTP {status_summary(status)}{tries}"
    return cls(
        message,
        call=call,
        status=status,
        body_excerpt=text,
        attempts=attempts,
        retryable=retryable,
    )


def is_retryable_status(status: int) -> bool:
    """429, 408 and 5xx are transient; any other 4xx would fail the same way again."""
    return status in (408, 429) or status >= 500

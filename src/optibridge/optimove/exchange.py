"""One HTTP exchange with an Optimove endpoint: the answer, or the error it ended in.

Shared by the classic client (client.py) and the engagement-events client (engagement_events.py):
both retry by the same policy around this, and both must count, time and classify an exchange the
same way (metrics per call, a timeout vs a transport error, the outbound guard's refusal)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from optibridge.core.outbound import DestinationRefusedError
from optibridge.optimove.errors import (
    OptimoveError,
    OptimoveRequestError,
    OptimoveTimeoutError,
    OptimoveTransportError,
)
from optibridge.optimove.observe import request_done


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    payload: bytes
    retry_after: str | None  # the Retry-After header as sent


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    call: str,
    attempt: int,
    limits: aiohttp.ClientTimeout,
    total_s: float,
    params: dict[str, str] | None = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer | OptimoveError:
    """Send once. A timeout or transport failure comes back as an error for the caller's retry
    decision; a destination the outbound guard refused raises OptimoveRequestError at once
    (asking again would get the same answer)."""
    started = time.perf_counter()
    try:
        async with session.request(
            method, url, params=params, data=data, headers=headers, timeout=limits, allow_redirects=False
        ) as response:
            answer = Answer(response.status, await response.read(), response.headers.get("Retry-After"))
        request_done(call, answer.status, time.perf_counter() - started)
        return answer
    except TimeoutError:
        request_done(call, "timeout", time.perf_counter() - started)
        return OptimoveTimeoutError(
            f"Optimove {call} timed out after {total_s:g} s (attempt {attempt})", call=call, attempts=attempt
        )
    except aiohttp.ClientError as exc:
        request_done(call, "transport", time.perf_counter() - started)
        refused = refusal(exc)
        if refused is not None:
            raise OptimoveRequestError(
                f"Optimove {call} not sent: {refused}", call=call, retryable=False
            ) from None
        return OptimoveTransportError(
            f"Optimove {call} failed: {type(exc).__name__}: {exc} (attempt {attempt})",
            call=call,
            attempts=attempt,
        )


def refusal(exc: BaseException) -> str | None:
    """The outbound guard's refusal inside an aiohttp connection error, if that is what it is."""
    cause: BaseException | None = exc
    for _ in range(5):  # aiohttp wraps the resolver's OSError; walk a bounded chain
        if cause is None:
            return None
        if isinstance(cause, DestinationRefusedError):
            return str(cause)
        cause = getattr(cause, "os_error", None) or cause.__cause__
    return None

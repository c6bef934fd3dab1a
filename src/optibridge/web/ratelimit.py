"""Failed-authentication throttling: per client IP, in memory, per process.

A client IP that fails `limit` API key checks (admin API or dashboard login) within `window_s`
seconds is answered 429 with Retry-After for the rest of that window, without the key being looked
up in the database: a storm of guesses then costs a dictionary lookup each, not a query.

What is counted is failures only. Once an IP is over the limit, a key that already authenticated in
this process (its SHA-256 is remembered, bounded) is still checked and served, so an operator behind
the same NAT as an attacker keeps working; any other key from that IP gets 429 until the window ends.
A valid key never used since the process started is refused too for that window: telling it apart
from a guess would need the very database lookup the limit exists to avoid.

Memory is bounded: at most `max_entries` IPs and `max_known` key hashes, the oldest evicted first.
Behind a reverse proxy the IP is the one uvicorn derives from X-Forwarded-For for proxies in
`forwarded_allow_ips` (service.py); otherwise every client would share the proxy's address.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from starlette.datastructures import State

Clock = Callable[[], float]
MAX_ENTRIES = 10_000
MAX_KNOWN_KEYS = 10_000


@dataclass
class _Window:
    started: float
    failures: int


class FailureLimiter:
    """Counts failures per client in fixed windows that start at a client's first failure."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        max_entries: int = MAX_ENTRIES,
        max_known: int = MAX_KNOWN_KEYS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_entries = max_entries
        self.max_known = max_known
        self._clock = clock
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._known: OrderedDict[bytes, None] = OrderedDict()

    def _current(self, client: str) -> _Window | None:
        window = self._windows.get(client)
        if window is not None and self._clock() - window.started >= self.window_s:
            del self._windows[client]
            return None
        return window

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None if it is not over the limit."""
        if self.limit <= 0:
            return None
        window = self._current(client)
        if window is None or window.failures < self.limit:
            return None
        return max(1, math.ceil(window.started + self.window_s - self._clock()))

    def failed(self, client: str) -> None:
        if self.limit <= 0:
            return
        window = self._current(client)
        if window is None:
            window = self._windows[client] = _Window(self._clock(), 0)
            while len(self._windows) > self.max_entries:
                self._windows.popitem(last=False)  # the oldest window: its client waited longest
        window.failures += 1

    def succeeded(self, key_hash: bytes) -> None:
        """Remember a key that authenticated: it is still checked while its IP is blocked."""
        self._known[key_hash] = None
        self._known.move_to_end(key_hash)
        while len(self._known) > self.max_known:
            self._known.popitem(last=False)

    def known(self, key_hash: bytes) -> bool:
        return key_hash in self._known

    def refuse(self, client: str, key_hash: bytes | None) -> int | None:
        """Retry-After seconds if this attempt is to be refused unchecked, else None."""
        wait = self.retry_after(client)
        if wait is None or (key_hash is not None and self.known(key_hash)):
            return None
        return wait

    def __len__(self) -> int:
        return len(self._windows)


class _LimitSettings(Protocol):
    auth_failure_limit: int
    auth_failure_window_s: float


def limiter_of(state: State, settings: _LimitSettings) -> FailureLimiter:
    """The app's one limiter (`app.state`), shared by the admin API and the dashboard login."""
    found = getattr(state, "auth_limiter", None)
    if isinstance(found, FailureLimiter):
        return found
    limiter = FailureLimiter(settings.auth_failure_limit, settings.auth_failure_window_s)
    state.auth_limiter = limiter
    return limiter


def client_ip(scope_client: tuple[str, int] | list[object] | None) -> str:
    """The ASGI scope's client host (already rewritten by uvicorn's proxy headers when trusted)."""
    if not scope_client:
        return "unknown"
    return str(scope_client[0])

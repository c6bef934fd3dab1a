"""The two ways to authenticate, and the legacy login token's life cycle (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ApiKeyAuth:
    """The current scheme: `X-API-KEY` on every call, no login (optimove-api.md §2.2)."""

    api_key: str = field(repr=False)

    def limiter_key(self, base_url: str) -> str:
        # Optimove counts per key, whatever host the key is used against.
        return f"key:{self.api_key}"


@dataclass(frozen=True, slots=True)
class LoginAuth:
    """The legacy scheme: `POST general/login` gives a token sent as `Authorization-Token`.

    Optimove ended it on 1 Feb 2024, but the emulator and older deployments still speak it.
    """

    username: str
    password: str = field(repr=False)

    def limiter_key(self, base_url: str) -> str:
        return f"user:{base_url.rstrip('/').lower()}:{self.username.lower()}"


Auth = ApiKeyAuth | LoginAuth


def is_token_expired_answer(status: int, body: bytes) -> bool:
    """Whether an answer is Optimove's 403 "Authorization-Token Expired" (any casing)."""
    return status == 403 and b"expired" in body.lower()


@dataclass(slots=True)
class TokenState:
    """The current login token and when it was last used (its 20-minute expiry slides).

    The client logs in only when there is no token or it has been idle for nearly the TTL;
    `margin_s` renews a little early so a call is not sent with a token about to lapse.
    """

    ttl_s: float = 1200.0
    margin_s: float = 30.0
    token: str | None = None
    last_used: float = 0.0

    def usable(self, now: float) -> bool:
        return self.token is not None and now - self.last_used < self.ttl_s - self.margin_s

    def set(self, token: str, now: float) -> None:
        self.token = token
        self.last_used = now

    def touch(self, token: str, now: float) -> None:
        """Record a successful use of `token` (a stale token's use moves nothing)."""
        if token == self.token and now > self.last_used:
            self.last_used = now

    def invalidate(self, token: str) -> None:
        """Drop `token` if it is still current; a newer token from another task survives."""
        if token == self.token:
            self.token = None

"""Configuration of one Optimove client (one tenant)."""

from __future__ import annotations

from dataclasses import dataclass, field

from optibridge.optimove.auth import Auth
from optibridge.optimove.ratelimit import RateLimit
from optibridge.optimove.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `total_s` bounds one HTTP attempt (connect, send, full body), not the retries."""

    total_s: float = 60.0
    connect_s: float = 10.0


@dataclass(frozen=True, slots=True)
class OptimoveClientConfig:
    base_url: str
    auth: Auth
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # None turns client-side limiting off (the emulator in benchmarks has no limit either).
    rate_limit: RateLimit | None = field(default_factory=RateLimit)
    login_rate_limit: RateLimit = field(default_factory=lambda: RateLimit(1, 1.0))
    page_size: int = 10_000
    # Page to the empty page: a server that caps pages below `$top` must never truncate an
    # audience. True saves one request per campaign, and is safe only against a known page size.
    stop_on_short_page: bool = False
    prefetch_pages: bool = True
    max_pages: int = 100_000
    token_ttl_s: float = 1200.0
    token_refresh_margin_s: float = 30.0
    path_prefix: str = "/current"
    max_connections: int = 16

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL: {self.base_url!r}")
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1")

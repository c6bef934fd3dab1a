"""The providers of each channel in this process: built once, kept open, chosen by health.

A channel's provider settings are one provider (`{"type": "smtp", ...}`) or an ordered failover
list (`{"providers": [{...}, {...}]}`). Traffic goes to the first healthy one. A provider whose
batch comes back mostly throttled or transient-failed is benched for a while (doubling, capped),
and traffic moves to the next; when the bench time is over it gets traffic again, and one good
batch restores it fully. Health is per process: each worker learns on its own, within a batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from optibridge.channels import base
from optibridge.channels.factory import STRICT, build_provider
from optibridge.channels.http_transport import HttpChannel
from optibridge.core.errors import ConfigError
from optibridge.core.outbound import OutboundPolicy

BENCH_BASE_S = 2.0
BENCH_MAX_S = 60.0


@dataclass
class Health:
    failures: int = 0
    benched_until: float = 0.0
    # Its last batch went well: the dispatcher pipelines chunks to it. Until then (and after a
    # troubled batch) one chunk at a time, so a failing provider is benched after one chunk, not
    # after every chunk already in flight to it.
    proven: bool = False

    def usable(self, now: float) -> bool:
        return now >= self.benched_until


@dataclass
class ChannelProviders:
    providers: list[base.Provider]
    health: list[Health] = field(default_factory=list)
    # Back-pressure on sends in flight (the dispatcher's pipeline): a batch with throttles (429,
    # SMTP 421/454) halves it, a clean batch opens it again by one chunk. None: not limited yet.
    window: int | None = None

    def __post_init__(self) -> None:
        self.health = [Health() for _ in self.providers]

    def proven(self, index: int) -> bool:
        return self.health[index].proven

    def in_flight(self, limit: int, chunk: int) -> int:
        """Sends to keep in flight now: the channel's limit, narrowed after throttling."""
        return limit if self.window is None else max(chunk, min(limit, self.window))

    def pace(self, results: Sequence[base.SendResult], limit: int, chunk: int) -> None:
        """Adjust the window after a batch (additive increase, multiplicative decrease)."""
        throttled = any(r.outcome is base.Outcome.THROTTLED for r in results)
        current = self.in_flight(limit, chunk)
        if throttled:
            self.window = max(chunk, current // 2)
        elif self.window is not None:
            self.window = None if current + chunk >= limit else current + chunk

    def pick(self, now: float | None = None) -> tuple[int, base.Provider] | None:
        now = time.monotonic() if now is None else now
        for index, (provider, health) in enumerate(zip(self.providers, self.health, strict=True)):
            if health.usable(now):
                return index, provider
        return None

    def seconds_until_usable(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return max(0.0, min(h.benched_until for h in self.health) - now)

    def report(self, index: int, results: Sequence[base.SendResult], now: float | None = None) -> bool:
        """Record a batch's outcome; True if the provider was benched by it."""
        now = time.monotonic() if now is None else now
        if not results:
            return False
        troubled = sum(r.outcome in (base.Outcome.THROTTLED, base.Outcome.TRANSIENT) for r in results)
        health = self.health[index]
        if troubled * 2 <= len(results):
            health.failures = 0
            health.benched_until = 0.0
            health.proven = True
            return False
        health.proven = False
        health.failures += 1
        # Not the providers' retry hints: those pace each message's retry (and SMTP gives none, so
        # the adapter's default would bench a recovered server for long); benching only routes.
        bench = min(BENCH_MAX_S, BENCH_BASE_S * 2 ** (health.failures - 1))
        health.benched_until = now + bench
        return True

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()


def provider_list(settings: dict[str, Any]) -> list[dict[str, Any]]:
    listed = settings.get("providers")
    if listed is None:
        return [settings]
    if not isinstance(listed, list) or not listed or not all(isinstance(p, dict) for p in listed):
        raise ConfigError("provider.providers must be a non-empty list of provider tables")
    return listed


async def build_channel_providers(
    kind: str,
    settings: dict[str, Any],
    callback_base_url: str | None,
    *,
    policy: OutboundPolicy = STRICT,
    proxy_from_env: bool = True,
) -> ChannelProviders:
    built: list[base.Provider] = []
    try:
        for one in provider_list(settings):
            provider = build_provider(kind, one, callback_base_url=callback_base_url, policy=policy)
            if isinstance(provider, HttpChannel):
                provider.set_proxy_from_env(proxy_from_env)  # the operator's choice, before any send
            await provider.open()
            built.append(provider)
    except BaseException:
        for provider in built:
            await provider.close()
        raise
    return ChannelProviders(built)


class TokenBucket:
    """At most `rate` messages per second (bursts up to one second's worth), for one process."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    async def take(self, count: int) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= count or (self.tokens >= self.rate and count > self.rate):
                self.tokens -= count
                return
            await asyncio.sleep(min(1.0, (count - self.tokens) / self.rate))

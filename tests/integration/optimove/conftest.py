"""Fixtures: an emulator on loopback, and clients for it that never sleep for long."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from optibridge.emulator import EmulatorConfig
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.optimove import (
    ApiKeyAuth,
    Auth,
    Clock,
    LoginAuth,
    OptimoveClient,
    OptimoveClientConfig,
    RateLimiterRegistry,
    RetryPolicy,
    Timeouts,
)

# Retries in tests wait milliseconds, not seconds.
FAST_RETRY = RetryPolicy(max_attempts=4, initial_delay_s=0.01, max_delay_s=0.05)

MakeClient = Callable[..., OptimoveClient]


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator(EmulatorConfig(rate_limit_enabled=False)) as emu:
        await emu.control.create_tenant("t1", api_key="key-1", username="user-1", password="pw-1")
        yield emu


@pytest.fixture
async def make_client(emulator: RunningEmulator) -> AsyncIterator[MakeClient]:
    """Build clients for the fixture emulator (key auth by default); all closed at teardown."""
    clients: list[OptimoveClient] = []

    def make(
        auth: Auth | None = None,
        *,
        clock: Clock | None = None,
        limiters: RateLimiterRegistry | None = None,
        **config: Any,
    ) -> OptimoveClient:
        config.setdefault("retry", FAST_RETRY)
        config.setdefault("rate_limit", None)
        config.setdefault("timeouts", Timeouts(total_s=5, connect_s=2))
        client = OptimoveClient(
            OptimoveClientConfig(emulator.base_url, auth or ApiKeyAuth("key-1"), **config),
            clock=clock,
            rng=random.Random(0),
            limiters=limiters or RateLimiterRegistry(),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def login_auth() -> LoginAuth:
    return LoginAuth("user-1", "pw-1")

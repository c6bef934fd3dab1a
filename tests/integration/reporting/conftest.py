"""Fixtures: the Optimove emulator, a tenant pointing at it, our feedback routes on loopback, and a
simulated audience that opens, clicks, unsubscribes and bounces through the real endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from reporting_helpers import API_KEY, T0, TENANT

from optibridge.core.config import Settings
from optibridge.emulator import EmulatorConfig
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.testing.feedback import MutableClock


@pytest.fixture
def settings(db_url: str, test_secret_key: str, tmp_path: Path) -> Settings:
    # No client-side rate limit: the emulator's is off too, and a test must never wait for it.
    return Settings(
        database_url=db_url,
        secret_key=test_secret_key,
        data_dir=tmp_path,
        optimove_rate_limit=0,
        allow_private_destinations=["127.0.0.0/8", "::1/128"],  # the emulator is on loopback
    )


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator(EmulatorConfig(rate_limit_enabled=False)) as emu:
        await emu.control.create_tenant(TENANT, api_key=API_KEY)
        yield emu


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock(T0)

"""Fixtures: an emulator on a loopback socket, a raw HTTP session, a recording listener."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from optibridge.emulator import EmulatorConfig
from optibridge.emulator.testing import RunningEmulator, running_emulator
from optibridge.optimove.clock import ManualClock

API_KEY = "key-1"
TENANT = "t1"


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator(EmulatorConfig(rate_limit_enabled=False)) as emu:
        await emu.control.create_tenant(TENANT, api_key=API_KEY, username="user-1", password="pw-1")
        yield emu


@dataclass
class Clocked:
    emu: RunningEmulator
    clock: ManualClock


@pytest.fixture
async def clocked() -> AsyncIterator[Clocked]:
    """An emulator on virtual time with small limits: 3 requests / 10 s, tokens idle 60 s."""
    clock = ManualClock()
    config = EmulatorConfig(rate_limit_requests=3, rate_limit_window_s=10, token_ttl_s=60)
    async with running_emulator(config, clock=clock) as emu:
        await emu.control.create_tenant(TENANT, api_key=API_KEY, username="user-1", password="pw-1")
        yield Clocked(emu, clock)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class Listener:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    """A loopback HTTP listener that records every JSON POST and answers `status`."""
    box: list[Listener] = []

    async def receive(request: web.Request) -> web.Response:
        box[0].received.append(json.loads(await request.read()))
        return web.Response(status=box[0].status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    box.append(Listener(f"http://127.0.0.1:{port}/optimove/events"))
    yield box[0]
    await runner.cleanup()

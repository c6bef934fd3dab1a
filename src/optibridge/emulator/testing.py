"""Run the emulator on a real loopback socket inside the current event loop (for tests).

    async with running_emulator(EmulatorConfig(rate_limit_enabled=False)) as emu:
        tenant = await emu.control.create_tenant("t1", api_key="k1")
        client = OptimoveClient(OptimoveClientConfig(emu.base_url, ApiKeyAuth("k1")))

`emu.state` is the live `EmulatorState`, for assertions that the control API does not expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from optibridge.emulator.app import create_app
from optibridge.emulator.config import EmulatorConfig
from optibridge.emulator.control_client import EmulatorControl
from optibridge.emulator.state import EmulatorState
from optibridge.optimove.clock import Clock


class _QuickServer(uvicorn.Server):
    """Checks for shutdown every 10 ms instead of 100 ms: tests start and stop many servers."""

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:  # ends when the test sets should_exit
            counter = (counter + 1) % 864_000
            await asyncio.sleep(0.01)
            should_exit = await self.on_tick(counter)


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    base_url: str
    control: EmulatorControl
    app: FastAPI
    state: EmulatorState


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 (a free port) in this event loop; yields its base URL.

    The app's lifespan runs, so routers' shutdown work (a buffer's last flush) happens before the
    block exits.
    """
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP,
    # and without it each small response waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = _QuickServer(
        uvicorn.Config(
            app,
            log_level=logging.WARNING,
            access_log=False,
            lifespan="on",
            # Hanging requests (fault injection) must not hold up the end of a test.
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):  # bounded: start-up takes milliseconds
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            if task.done():
                task.result()
            raise RuntimeError("the test server did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


@contextlib.asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None, *, clock: Clock | None = None
) -> AsyncIterator[RunningEmulator]:
    """Serve a fresh emulator on 127.0.0.1 (a free port) until the block exits."""
    app = create_app(config, clock=clock)
    async with serving(app) as base_url, EmulatorControl(base_url) as control:
        yield RunningEmulator(base_url, control, app, app.state.emulator)

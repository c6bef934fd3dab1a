"""The service (HTTP app + one worker) running inside the test's event loop, on a real socket.

async with running_service(db_url, secret_key) as svc:
    svc.base_url, svc.runtime ...
    await svc.wait_idle()   # until no job is waiting or running
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from optibridge.bootstrap import open_runtime
from optibridge.core.config import Settings
from optibridge.runtime import Runtime
from optibridge.service import listen_socket
from optibridge.web.app import create_app

# The emulator, sinks and receivers of these tests run on loopback: the operator opens exactly
# that (the default policy refuses it; tests/security checks the default).
LOOPBACK = ["127.0.0.0/8", "::1/128"]


@dataclass
class Service:
    runtime: Runtime
    base_url: str

    async def wait_idle(
        self, timeout: float = 60.0, queues: tuple[str, ...] = ("intake", "catalog"), horizon_s: float = 3.0
    ) -> None:
        """Wait until no job of these queues is running or due within `horizon_s`.

        The horizon covers the catalog's follow-up sync, deferred a second ahead
        (catalog.store.FOLLOW_UP_DELAY): a burst of template changes can leave the last of them to
        that follow-up, and "idle" before it runs is not idle (seen in CI: a campaign drawn from
        template 1 only, template 2 still waiting for its follow-up sync). Retries further out
        (30 s and more) are not waited for.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with self.runtime.pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT count(*) AS n FROM procrastinate_jobs WHERE queue_name = ANY(%s) "
                        "AND (status = 'doing' OR (status = 'todo' AND "
                        "(scheduled_at IS NULL OR scheduled_at <= now() + make_interval(secs => %s))))",
                        (list(queues), horizon_s),
                    )
                ).fetchone()
            if row is not None and row["n"] == 0:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"jobs still pending after {timeout}s")

    async def failed_jobs(self) -> list[dict[str, Any]]:
        async with self.runtime.pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT task_name, args FROM procrastinate_jobs WHERE status = 'failed'")
            ).fetchall()
        return list(rows)


@contextlib.asynccontextmanager
async def running_service(
    db_url: str,
    secret_key: str,
    *,
    worker: bool = True,
    configure_app: Callable[[FastAPI], None] | None = None,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """`configure_app` is called with the app before it serves (e.g. to mount more routers)."""
    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    settings = Settings(
        database_url=db_url,
        secret_key=secret_key,
        public_url=f"http://127.0.0.1:{port}",
        optimove_rate_limit=0,
        **({"allow_private_destinations": LOOPBACK} | overrides),
    )
    async with open_runtime(settings, upgrade=False, pool_size=12) as rt:
        app = create_app(rt)
        if configure_app is not None:
            configure_app(app)
        server = uvicorn.Server(
            uvicorn.Config(app, log_level=logging.WARNING, lifespan="on", access_log=False)
        )
        http = asyncio.create_task(server.serve(sockets=[sock]))
        jobs = asyncio.create_task(
            rt.job_app.run_worker_async(
                concurrency=4,
                install_signal_handlers=False,
                additional_context={"runtime": rt},
                fetch_job_polling_interval=0.2,
                name="test-worker",
            )
            if worker
            else asyncio.sleep(0)
        )
        try:
            for _ in range(500):
                if server.started:
                    break
                if http.done():
                    http.result()
                await asyncio.sleep(0.01)
            yield Service(rt, f"http://127.0.0.1:{port}")
        finally:
            jobs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await jobs
            server.should_exit = True
            await http

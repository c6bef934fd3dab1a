"""What a running process holds, as every flow sees it: settings, database, pool, secret box, job
app and the Optimove clients. `optibridge.bootstrap.open_runtime` builds it; flows receive it
(jobs find it in their context with `runtime_of`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import procrastinate
import psycopg
import psycopg_pool
from procrastinate import JobContext

from optibridge.core.config import Settings
from optibridge.core.secretbox import SecretBox
from optibridge.optimove.clients import OptimoveClients
from optibridge.store.database import Database

Pool = psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]


@dataclass
class Runtime:
    settings: Settings
    db: Database
    pool: Pool
    box: SecretBox
    job_app: procrastinate.App
    clients: OptimoveClients
    # Per-process state that flows attach lazily (the dispatcher, with its providers and compiled
    # templates). `object`, not Any: a reader must check the type it gets back.
    extras: dict[str, object] = field(default_factory=dict)
    # Set when the process is asked to stop (SIGTERM/SIGINT): jobs stop taking new work, finish
    # what they hold and return, so the worker can exit within shutdown_timeout_s.
    draining: asyncio.Event = field(default_factory=asyncio.Event)


def runtime_of(context: JobContext) -> Runtime:
    """The Runtime a worker passes to its jobs."""
    runtime = (context.additional_context or {}).get("runtime")
    if not isinstance(runtime, Runtime):
        raise RuntimeError("this worker was started without a runtime in its job context")
    return runtime

"""Health of the database and the job engine, as one JSON document and a status code.

`probe` does the I/O with a short timeout; `assess` is the pure judgement, tested without sockets.
The job engine is healthy when at least one worker has sent a heartbeat within the stall timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from optibridge import __version__
from optibridge.store import stats

STALLED_WORKER_S = 30.0
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Probe:
    db_ok: bool
    db_error: str | None = None
    db_latency_ms: float | None = None
    server_version: str | None = None
    engine_schema: bool = False
    live_workers: int = 0
    jobs_todo: int = 0
    jobs_doing: int = 0
    jobs_failed: int = 0
    last_tick: datetime | None = None


def assess(p: Probe, *, embedded: bool, expect_workers: bool) -> tuple[int, dict[str, Any]]:
    engine_ok = p.db_ok and p.engine_schema and (p.live_workers > 0 or not expect_workers)
    engine: dict[str, Any] = {
        "ok": engine_ok,
        "workers": p.live_workers,
        "jobs": {"todo": p.jobs_todo, "doing": p.jobs_doing, "failed": p.jobs_failed},
        "last_tick": p.last_tick.isoformat() if p.last_tick else None,
    }
    if not p.db_ok:
        engine["error"] = "database unreachable"
    elif not p.engine_schema:
        engine["error"] = "job tables missing: run optibridge db upgrade"
    elif expect_workers and p.live_workers == 0:
        engine["error"] = f"no worker heartbeat in the last {STALLED_WORKER_S:.0f}s"
    database: dict[str, Any] = {"ok": p.db_ok, "embedded": embedded}
    if p.db_ok:
        database |= {"latency_ms": p.db_latency_ms, "server_version": p.server_version}
    else:
        database["error"] = p.db_error
    ok = p.db_ok and engine_ok
    body = {
        "status": "ok" if ok else "unavailable",
        "version": __version__,
        "database": database,
        "job_engine": engine,
    }
    return (200 if ok else 503), body


async def _query(conn: stats.Conn) -> Probe:
    start = time.perf_counter()
    version = await stats.server_version(conn)
    latency = (time.perf_counter() - start) * 1000
    if not await stats.table_exists(conn, "procrastinate_workers"):
        return Probe(db_ok=True, db_latency_ms=round(latency, 2), server_version=version)
    engine = await stats.engine_stats(conn, stall_s=STALLED_WORKER_S)
    return Probe(
        db_ok=True,
        db_latency_ms=round(latency, 2),
        server_version=version,
        engine_schema=True,
        live_workers=engine.live_workers,
        jobs_todo=engine.jobs_todo,
        jobs_doing=engine.jobs_doing,
        jobs_failed=engine.jobs_failed,
        last_tick=engine.last_tick,
    )


async def probe(url: str) -> Probe:
    """A fresh connection (not the pool): a pool can hide a dead server behind idle connections."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            conn = await psycopg.AsyncConnection.connect(
                url, autocommit=True, row_factory=psycopg.rows.dict_row, connect_timeout=3
            )
            async with conn:
                return await _query(conn)
    except (psycopg.Error, OSError, TimeoutError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return Probe(db_ok=False, db_error=reason[:300])

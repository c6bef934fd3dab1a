"""Load-balancer probes: /livez (the process answers) and /readyz (it can serve traffic).

Ready means: the database answers within the timeout (a fresh connection, as /healthz does: a pool
can hide a dead server behind idle connections) and its schema is the one this version expects,
ours and procrastinate's. /healthz stays the detailed report that also judges the workers.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import procrastinate
import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from optibridge.runtime import Runtime
from optibridge.store import stats
from optibridge.store.migrate import our_migrations

PROBE_TIMEOUT_S = 3.0


@functools.cache
def expected_versions() -> frozenset[int]:
    return frozenset(m.version for m in our_migrations())


def judge(applied: set[int], procrastinate_version: str | None) -> list[str]:
    """What keeps the schema from being current (empty: it is). Pure, for tests."""
    problems = []
    pending = sorted(expected_versions() - applied)
    if pending:
        problems.append(
            f"migrations pending: {', '.join(f'{v:04d}' for v in pending)}; run optibridge db upgrade"
        )
    if procrastinate_version != procrastinate.__version__:
        problems.append(
            f"job engine schema {procrastinate_version or 'missing'} but procrastinate "
            f"{procrastinate.__version__} is installed; run optibridge db upgrade"
        )
    return problems


async def readiness(url: str) -> tuple[bool, dict[str, Any]]:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            conn = await psycopg.AsyncConnection.connect(
                url, autocommit=True, row_factory=psycopg.rows.dict_row, connect_timeout=3
            )
            async with conn:
                schema = await stats.schema_state(conn)
    except (psycopg.Error, OSError, TimeoutError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return False, {"status": "unavailable", "database": False, "error": f"database: {reason[:300]}"}
    applied = schema.applied
    problems = judge(applied, schema.procrastinate)
    if problems:
        return False, {"status": "unavailable", "database": True, "error": "; ".join(problems)}
    return True, {"status": "ready", "database": True, "schema_version": max(applied, default=0)}


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(tags=["operations"])

    @api.get("/livez", summary="Liveness: the process answers (no dependencies checked)")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @api.get(
        "/readyz",
        summary="Readiness: database reachable and schema current (503 otherwise)",
        responses={503: {"description": "Not ready, with the reason"}},
    )
    async def readyz() -> JSONResponse:
        ok, body = await readiness(runtime.db.url)
        return JSONResponse(body, status_code=200 if ok else 503)

    return api

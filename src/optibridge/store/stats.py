"""Counts for operators: messages and campaigns by state, the job queue, schema and server facts.

Read-only queries behind /healthz, /readyz, /metrics, the jobs page and the system API.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from optibridge.core.states import ALL_STATES

Conn = psycopg.AsyncConnection[dict[str, Any]]


# -- server and schema -----------------------------------------------------------------------------


async def server_version(conn: Conn) -> str | None:
    row = await (await conn.execute("SELECT current_setting('server_version') AS v")).fetchone()
    return str(row["v"]) if row else None


async def table_exists(conn: Conn, name: str) -> bool:
    row = await (await conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (name,))).fetchone()
    return bool(row and row["ok"])


@dataclass(frozen=True)
class SchemaState:
    applied: set[int]  # our migrations applied (empty: no migrations table)
    procrastinate: str | None  # the job engine's schema version; None: not installed


async def schema_state(conn: Conn) -> SchemaState:
    exists = await (
        await conn.execute(
            "SELECT to_regclass('schema_migrations') IS NOT NULL AS m, "
            "to_regclass('schema_components') IS NOT NULL AS c"
        )
    ).fetchone()
    applied: set[int] = set()
    engine: str | None = None
    if exists and exists["m"]:
        rows = await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()
        applied = {int(r["version"]) for r in rows}
    if exists and exists["c"]:
        row = await (
            await conn.execute("SELECT version FROM schema_components WHERE component = 'procrastinate'")
        ).fetchone()
        engine = str(row["version"]) if row else None
    return SchemaState(applied, engine)


async def set_statement_timeout(conn: Conn, ms: int) -> None:
    """For the rest of the current transaction."""
    await conn.execute(f"SET LOCAL statement_timeout = {int(ms)}")


# -- the job engine --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineStats:
    live_workers: int
    jobs_todo: int
    jobs_doing: int
    jobs_failed: int
    last_tick: datetime | None


async def engine_stats(conn: Conn, *, stall_s: float) -> EngineStats:
    """Workers with a heartbeat within `stall_s`, jobs by status, the last engine tick."""
    stats = await (
        await conn.execute(
            """SELECT
                 (SELECT count(*) FROM procrastinate_workers
                   WHERE last_heartbeat > now() - make_interval(secs => %s)) AS workers,
                 (SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo') AS todo,
                 (SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing') AS doing,
                 (SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed') AS failed,
                 (SELECT max(ran_at) FROM engine_ticks) AS last_tick""",
            (stall_s,),
        )
    ).fetchone()
    assert stats is not None
    return EngineStats(
        live_workers=int(stats["workers"]),
        jobs_todo=int(stats["todo"]),
        jobs_doing=int(stats["doing"]),
        jobs_failed=int(stats["failed"]),
        last_tick=stats["last_tick"],
    )


@dataclass(frozen=True)
class QueueStats:
    queue: str
    due: int
    scheduled: int
    running: int
    stalled: int
    failed: int
    succeeded: int


@dataclass(frozen=True)
class JobRow:
    id: int
    queue: str
    task: str
    status: str
    attempts: int
    scheduled_at: datetime | None
    stalled: bool


_STALLED = (
    "(j.status = 'doing' AND (j.worker_id IS NULL OR NOT EXISTS (SELECT 1 FROM procrastinate_workers w "
    "WHERE w.id = j.worker_id AND w.last_heartbeat > now() - make_interval(secs => %(stall)s))))"
)


async def queue_stats(conn: Conn, *, stall_s: float) -> list[QueueStats]:
    """Per queue; a `doing` job whose worker sent no heartbeat within `stall_s` counts as stalled."""
    rows = await (
        await conn.execute(
            f"""SELECT j.queue_name AS queue,
                       count(*) FILTER (WHERE j.status = 'todo'
                                        AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())) AS due,
                       count(*) FILTER (WHERE j.status = 'todo' AND j.scheduled_at > now()) AS scheduled,
                       count(*) FILTER (WHERE j.status = 'doing' AND NOT {_STALLED}) AS running,
                       count(*) FILTER (WHERE {_STALLED}) AS stalled,
                       count(*) FILTER (WHERE j.status = 'failed') AS failed,
                       count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded
                FROM procrastinate_jobs j GROUP BY 1 ORDER BY 1""",
            {"stall": stall_s},
        )
    ).fetchall()
    return [
        QueueStats(
            queue=str(r["queue"]),
            due=int(r["due"]),
            scheduled=int(r["scheduled"]),
            running=int(r["running"]),
            stalled=int(r["stalled"]),
            failed=int(r["failed"]),
            succeeded=int(r["succeeded"]),
        )
        for r in rows
    ]


async def live_workers(conn: Conn, *, stall_s: float) -> int:
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM procrastinate_workers "
            "WHERE last_heartbeat > now() - make_interval(secs => %s)",
            (stall_s,),
        )
    ).fetchone()
    return int(row["n"]) if row else 0


async def attention_jobs(conn: Conn, *, stall_s: float, limit: int = 50) -> list[JobRow]:
    """Jobs an operator may want to look at: running, stalled and failed ones, newest first."""
    rows = await (
        await conn.execute(
            f"""SELECT j.id, j.queue_name AS queue, j.task_name AS task, j.status::text AS status,
                       j.attempts, j.scheduled_at, {_STALLED} AS stalled
                FROM procrastinate_jobs j WHERE j.status IN ('doing', 'failed')
                ORDER BY j.id DESC LIMIT %(n)s""",
            {"stall": stall_s, "n": limit},
        )
    ).fetchall()
    return [JobRow(**r) for r in rows]


async def job_counts(conn: Conn) -> list[tuple[str, str, int]]:
    """(queue, status, count) for the metrics: cheap, a GROUP BY over the jobs table."""
    rows = await (
        await conn.execute(
            "SELECT queue_name, status::text AS status, count(*) AS n FROM procrastinate_jobs GROUP BY 1, 2"
        )
    ).fetchall()
    return [(r["queue_name"], r["status"], int(r["n"])) for r in rows]


# -- messages and campaigns ------------------------------------------------------------------------


async def message_counts(conn: Conn) -> list[tuple[str, str, str, int]]:
    """(tenant, channel, state, count), sorted; every channel shows every state, 0 included.

    A channel is named by its name, or by its Optimove ChannelID if it is gone.
    """
    rows = await (
        await conn.execute(
            """SELECT m.tenant_id, coalesce(c.name, m.channel_id::text) AS channel, m.state, m.n
               FROM (SELECT tenant_id, channel_id, state::text AS state, count(*) AS n
                     FROM messages GROUP BY 1, 2, 3) m
               LEFT JOIN channels c
                 ON c.tenant_id = m.tenant_id AND c.optimove_channel_id = m.channel_id"""
        )
    ).fetchall()
    counts = {(r["tenant_id"], r["channel"], r["state"]): int(r["n"]) for r in rows}
    channels = await (await conn.execute("SELECT tenant_id, name FROM channels")).fetchall()
    _zero_fill(counts, ((ch["tenant_id"], ch["name"]) for ch in channels))
    return sorted((t, c, s, n) for (t, c, s), n in counts.items())


def _zero_fill(counts: dict[tuple[str, str, str], int], channels: Iterable[tuple[str, str]]) -> None:
    for tenant, name in channels:
        for state in ALL_STATES:
            counts.setdefault((tenant, name, state.value), 0)


@dataclass(frozen=True)
class CampaignCounts:
    by_status: dict[str, int]
    paused: int


async def campaign_counts(conn: Conn) -> CampaignCounts:
    rows = await (
        await conn.execute(
            "SELECT status, count(*) AS n, count(*) FILTER (WHERE paused) AS paused FROM campaigns GROUP BY 1"
        )
    ).fetchall()
    return CampaignCounts(
        by_status={r["status"]: int(r["n"]) for r in rows}, paused=sum(int(r["paused"]) for r in rows)
    )

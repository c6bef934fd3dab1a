"""The job engine across processes: periodic jobs once per period, deferred jobs exactly once,
and jobs enqueued atomically with the rows they act on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from optibridge import bootstrap
from optibridge.core.config import Settings
from optibridge.engine import jobs
from optibridge.store.database import Database

from probe_tasks import PROBE_TASK
from servicekit import free_port, start, stop, wait_health

HERE = Path(__file__).parent


def cluster_env(service_env: dict[str, str]) -> dict[str, str]:
    return service_env | {
        "OPTIBRIDGE_HEARTBEAT_CRON": "* * * * * */1",  # every second (6th field: seconds)
        "OPTIBRIDGE_TASK_MODULES": '["probe_tasks"]',
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_two_workers_and_serve_share_the_work_exactly_once(
    service_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    env = cluster_env(service_env)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE probe_runs (job_id bigint, n int, pid int)")
    port = free_port()
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        serve_log = tmp_path / "serve.log"
        serve = start(["serve", "--port", str(port), "--workers", "1"], env, tmp_path, serve_log)
        procs.append((serve, serve_log))
        for i in range(2):
            log = tmp_path / f"worker{i}.log"
            procs.append((start(["worker", "--concurrency", "4"], env, tmp_path, log), log))
        wait_health(port, 200, serve, serve_log)

        with psycopg.connect(db_url, autocommit=True) as conn:

            def live_workers() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM procrastinate_workers "
                    "WHERE last_heartbeat > now() - interval '30 seconds'"
                ).fetchone()
                return row is not None and row[0] >= 3

            wait_for(live_workers, 60, "three live workers")

            # 1,000 jobs deferred at once: each must run once, and the work must be shared.
            with conn.transaction():
                conn.execute(
                    """SELECT procrastinate_defer_jobs_v1(array_agg(
                           ROW('probe', %s, 0, NULL, NULL, jsonb_build_object('n', g), NULL)
                           ::procrastinate_job_to_defer_v1))
                       FROM generate_series(1, 1000) g""",
                    (PROBE_TASK,),
                )

            def all_ran() -> bool:
                row = conn.execute("SELECT count(*) FROM probe_runs").fetchone()
                return row is not None and row[0] >= 1000

            wait_for(all_ran, 120, "1,000 probe jobs to run")
            time.sleep(3)  # room for any duplicate execution to show up
            runs = conn.execute(
                "SELECT count(*), count(DISTINCT job_id), count(DISTINCT n), count(DISTINCT pid) "
                "FROM probe_runs"
            ).fetchone()
            assert runs is not None
            total, distinct_jobs, distinct_n, pids = runs
            assert (total, distinct_jobs, distinct_n) == (1000, 1000, 1000)
            assert pids >= 2, "the work was not shared between worker processes"

            # The heartbeat runs every second, deferred by every worker; each period once.
            def enough_ticks() -> bool:
                row = conn.execute("SELECT count(DISTINCT period) FROM engine_ticks").fetchone()
                return row is not None and row[0] >= 8

            wait_for(enough_ticks, 60, "eight heartbeat periods")
            time.sleep(1.5)
            ticks = conn.execute(
                "SELECT period, count(*) FROM engine_ticks GROUP BY period ORDER BY period"
            ).fetchall()
        assert len(ticks) >= 8
        assert [count for _, count in ticks] == [1] * len(ticks)
    finally:
        for proc, _ in reversed(procs):
            stop(proc)
    for proc, log in procs:
        assert proc.returncode == 0, log.read_text()[-3000:]


async def test_a_job_is_enqueued_only_if_its_transaction_commits(db_url: str, test_secret_key: str) -> None:
    settings = Settings(database_url=db_url, secret_key=test_secret_key)
    app = bootstrap.create_job_app(settings)
    pool = Database(url=db_url).pool(max_size=2)
    await pool.open()
    try:
        async with app.open_async(pool=pool), pool.connection() as conn:

            async def enqueue_then_fail() -> None:
                async with conn.transaction():
                    await conn.execute("INSERT INTO settings (key, value) VALUES ('a', 'x')")
                    await jobs.defer(conn, app, jobs.HEARTBEAT_TASK, timestamp=1)
                    raise RuntimeError("roll back")

            with pytest.raises(RuntimeError, match="roll back"):
                await enqueue_then_fail()
            async with conn.transaction():
                await conn.execute("INSERT INTO settings (key, value) VALUES ('b', 'y')")
                job_id = await jobs.defer(conn, app, jobs.HEARTBEAT_TASK, timestamp=2)
            rows = await (
                await conn.execute("SELECT id, args FROM procrastinate_jobs ORDER BY id")
            ).fetchall()
            keys = await (await conn.execute("SELECT key FROM settings ORDER BY key")).fetchall()
        assert rows == [{"id": job_id, "args": {"timestamp": 2}}]
        assert [k["key"] for k in keys] == ["b"]
    finally:
        await pool.close()


async def test_heartbeat_records_its_period_and_prunes_old_ticks(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        old = datetime(2020, 1, 1, tzinfo=UTC)
        await jobs.record_tick(conn, old, "w0")
        now = datetime(2026, 1, 1, tzinfo=UTC)
        await jobs.record_tick(conn, now, "w1")
        rows = await (await conn.execute("SELECT period, worker FROM engine_ticks")).fetchall()
    assert rows == [(now, "w1")]


def test_unknown_task_module_is_a_clear_error(service_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "optibridge", "worker"],
        env=service_env | {"OPTIBRIDGE_TASK_MODULES": '["no_such_module_xyz"]'},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "task module 'no_such_module_xyz' cannot be imported" in proc.stderr


async def test_the_stalled_job_requeuer_survives_a_queued_twin_and_handles_every_job(
    db_url: str, test_secret_key: str
) -> None:
    """A dead worker's job whose work is queued again already is dropped, not re-queued beside its
    twin (that raised UniqueViolation and stopped the whole pass); the others still go back."""
    settings = Settings(database_url=db_url, secret_key=test_secret_key)
    app = bootstrap.create_job_app(settings)
    pool = Database(url=db_url).pool(max_size=2)
    await pool.open()
    try:
        async with app.open_async(pool=pool), pool.connection() as conn:
            twin_lock, lone_lock = "send:t:1", "ingest:t:2"
            stalled_twin = await jobs.defer(
                conn, app, jobs.HEARTBEAT_TASK, queueing_lock=twin_lock, timestamp=1
            )
            stalled_lone = await jobs.defer(
                conn, app, jobs.HEARTBEAT_TASK, queueing_lock=lone_lock, timestamp=2
            )
            # Both started by a worker that died (no worker row: what a lost heartbeat looks like).
            await conn.execute(
                "UPDATE procrastinate_jobs SET status = 'doing', worker_id = NULL WHERE id = ANY(%s)",
                ([stalled_twin, stalled_lone],),
            )
            waiting = await jobs.defer(conn, app, jobs.HEARTBEAT_TASK, queueing_lock=twin_lock, timestamp=3)
            assert await jobs.retry_stalled_jobs(app) == 2
            rows = await (await conn.execute("SELECT id, status::text FROM procrastinate_jobs")).fetchall()
        assert {r["id"]: r["status"] for r in rows} == {
            stalled_lone: "todo",
            waiting: "todo",
        }
    finally:
        await pool.close()

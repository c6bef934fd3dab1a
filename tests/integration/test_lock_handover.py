"""Lane hand-over (migration 0015, engine/fairness.py): a freed job lock wakes the workers, and a
busy worker lets a free one fetch first."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import procrastinate
import psycopg
import pytest

from optibridge.bootstrap import create_job_app
from optibridge.core.config import Settings
from optibridge.delivery.tasks import SEND_QUEUE
from optibridge.engine import fairness


def insert_job(conn: psycopg.Connection[Any], *, status: str, lock: str, queue: str = "delivery") -> int:
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status) "
        "VALUES (%s, 'probe', %s, '{}', %s) RETURNING id",
        (queue, lock, status),
    ).fetchone()
    assert row is not None
    return int(row[0])


def notifications(listener: psycopg.Connection[Any], wait_s: float = 1.0) -> list[tuple[str, dict[str, Any]]]:
    return [(n.channel, json.loads(n.payload)) for n in listener.notifies(timeout=wait_s, stop_after=4)]


@pytest.mark.parametrize("finish", ["delete", "succeeded", "failed", "todo"])
def test_a_freed_lock_notifies_the_job_waiting_under_it(db_url: str, finish: str) -> None:
    with (
        psycopg.connect(db_url, autocommit=True) as conn,
        psycopg.connect(db_url, autocommit=True) as listener,
    ):
        running = insert_job(conn, status="doing", lock="send:t:1:0")
        waiting = insert_job(conn, status="todo", lock="send:t:1:0")
        other_lane = insert_job(conn, status="todo", lock="send:t:1:1")
        listener.execute('LISTEN "procrastinate_any_queue_v1"')
        listener.execute('LISTEN "procrastinate_queue_v1#delivery"')
        if finish == "delete":  # procrastinate's delete_jobs="successful", as the service runs
            conn.execute("DELETE FROM procrastinate_jobs WHERE id = %s", (running,))
        else:  # kept as succeeded/failed, or back to todo (a retry, the stalled-job re-queuer)
            conn.execute("UPDATE procrastinate_jobs SET status = %s WHERE id = %s", (finish, running))
        got = notifications(listener)
        ids = {payload["job_id"] for _, payload in got}
        assert {channel for channel, _ in got} == {
            "procrastinate_any_queue_v1",
            "procrastinate_queue_v1#delivery",
        }
        assert all(payload["type"] == "job_inserted" for _, payload in got)
        # The retried job itself is the oldest waiting under the lock when it goes back to todo.
        assert ids == ({running} if finish == "todo" else {waiting}), got
        assert other_lane not in ids


def test_nothing_is_notified_when_no_job_waits_or_the_job_held_no_lock(db_url: str) -> None:
    with (
        psycopg.connect(db_url, autocommit=True) as conn,
        psycopg.connect(db_url, autocommit=True) as listener,
    ):
        alone = insert_job(conn, status="doing", lock="send:t:1:0")
        later = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status, scheduled_at) "
            "VALUES ('delivery', 'probe', 'send:t:1:0', '{}', 'todo', now() + interval '1 hour')"
        )
        assert later.rowcount == 1
        unlocked = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
            "VALUES ('delivery', 'probe', '{}', 'doing') RETURNING id"
        ).fetchone()
        assert unlocked is not None
        listener.execute('LISTEN "procrastinate_any_queue_v1"')
        conn.execute("DELETE FROM procrastinate_jobs WHERE id = ANY(%s)", ([alone, unlocked[0]],))
        assert notifications(listener, wait_s=0.5) == []  # the waiting job is not due for an hour


def test_fetch_delay_grows_with_the_locked_jobs_a_worker_runs() -> None:
    assert fairness.fetch_delay_s(0) == 0
    assert 0 < fairness.fetch_delay_s(1) < fairness.fetch_delay_s(2) < fairness.fetch_delay_s(3)
    assert fairness.fetch_delay_s(100) == fairness.MAX_DELAY_S


class _Job:
    def __init__(self, worker_id: int | None, lock: str | None, queue: str) -> None:
        self.worker_id = worker_id
        self.lock = lock
        self.queue = queue


class _Context:
    def __init__(self, worker_id: int | None, lock: str | None, queue: str = "delivery") -> None:
        self.job = _Job(worker_id, lock, queue)


async def test_worker_load_counts_locked_jobs_while_they_run_even_when_they_fail() -> None:
    load = fairness.WorkerLoad()
    release = asyncio.Event()
    seen: list[int] = []

    async def job() -> None:
        seen.append(load.running(7))
        await release.wait()

    async def failing() -> None:
        raise RuntimeError("boom")

    tasks = [
        asyncio.create_task(load.track(job, _Context(7, "send:t:1:0"), None)),  # type: ignore[arg-type]
        asyncio.create_task(load.track(job, _Context(7, "send:t:1:1"), None)),  # type: ignore[arg-type]
        asyncio.create_task(load.track(job, _Context(7, None), None)),  # type: ignore[arg-type]
        asyncio.create_task(load.track(job, _Context(8, "send:t:2:0"), None)),  # type: ignore[arg-type]
    ]
    await asyncio.sleep(0.05)
    assert (load.running(7), load.running(8), load.running(None)) == (2, 1, 0)
    with pytest.raises(RuntimeError):
        await load.track(failing, _Context(7, "send:t:1:2"), None)  # type: ignore[arg-type]
    assert load.running(7) == 2
    release.set()
    await asyncio.gather(*tasks)
    assert (load.running(7), load.running(8)) == (0, 0)
    assert seen == [1, 2, 2, 2]  # worker 7's count as each job started: the unlocked job added none


async def test_worker_load_weighs_only_the_lane_queues_it_is_given() -> None:
    # A catalog sync holds its lock while its Optimove client sleeps between retries: counted,
    # it made the free worker of bench/send.py look as busy as the one running the other lane.
    load = fairness.WorkerLoad(queues=["delivery"])
    release = asyncio.Event()

    async def job() -> None:
        await release.wait()

    tasks = [
        asyncio.create_task(load.track(job, _Context(7, "catalog:t:sms", "catalog"), None)),  # type: ignore[arg-type]
        asyncio.create_task(load.track(job, _Context(7, "send:t:1:0", "delivery"), None)),  # type: ignore[arg-type]
        asyncio.create_task(load.track(job, _Context(8, "catalog:t:push", "catalog"), None)),  # type: ignore[arg-type]
    ]
    await asyncio.sleep(0.05)
    assert (load.running(7), load.running(8)) == (1, 0)
    assert fairness.fetch_delay_s(load.running(8)) == 0  # the worker syncing a catalog fetches first
    release.set()
    await asyncio.gather(*tasks)


def test_the_service_weighs_the_send_lanes_only() -> None:
    app = create_job_app(Settings(database_url="postgresql://x@127.0.0.1/x"))
    manager = app.job_manager
    assert isinstance(manager, fairness.LoadAwareJobManager)
    assert manager.load._queues == frozenset({SEND_QUEUE})


async def test_a_busy_worker_fetches_after_a_free_one(db_url: str) -> None:
    """Two workers woken for one job at the same moment: the one running a locked job waits, so
    the free one takes the job, even when the busy one asks first."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db_url))
    load = fairness.install(app)
    assert load.track in app.worker_defaults["worker_middleware"]
    async with app.open_async():
        manager = app.job_manager
        busy, free = await manager.register_worker(), await manager.register_worker()
        with psycopg.connect(db_url, autocommit=True) as conn:
            job_id = insert_job(conn, status="todo", lock="send:t:1:1", queue="delivery")
        hold = asyncio.Event()

        async def lane_job() -> None:
            await hold.wait()

        running = asyncio.create_task(load.track(lane_job, _Context(busy, "send:t:1:0"), None))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert load.running(busy) == 1
        busy_fetch = asyncio.create_task(manager.fetch_job(queues=None, worker_id=busy))
        await asyncio.sleep(0)  # the busy worker has started its fetch first
        got = await manager.fetch_job(queues=None, worker_id=free)
        assert got is not None
        assert got.id == job_id
        assert await busy_fetch is None
        hold.set()
        await running

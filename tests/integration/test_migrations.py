"""Schema migrations: from an empty database, idempotent, concurrent-safe."""

from __future__ import annotations

import asyncio

import psycopg

from optibridge.store import migrate
from optibridge.store.database import Database

OUR_TABLES = {"settings", "tenants", "channels", "engine_ticks", "schema_migrations"}
JOB_TABLES = {"procrastinate_jobs", "procrastinate_workers", "procrastinate_periodic_defers"}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


async def test_upgrade_from_empty_creates_every_table_and_records_versions(
    empty_db_url: str,
) -> None:
    db = Database(url=empty_db_url)
    assert await migrate.status(db) == {
        "current_version": 0,
        "pending": [f"{m.version:04d}_{m.name}" for m in migrate.our_migrations()],
    }
    report = await migrate.upgrade(db)
    assert report.applied[0].startswith("procrastinate ")
    assert report.applied[1:] == [f"{m.version:04d}_{m.name}" for m in migrate.our_migrations()]
    assert report.current_version == len(migrate.our_migrations())
    assert tables(empty_db_url) >= OUR_TABLES | JOB_TABLES
    assert (await migrate.status(db))["pending"] == []


async def test_second_upgrade_applies_nothing(db_url: str) -> None:
    report = await migrate.upgrade(Database(url=db_url))
    assert report.applied == []


async def test_concurrent_upgrades_from_empty_both_succeed_once(empty_db_url: str) -> None:
    db = Database(url=empty_db_url)
    first, second = await asyncio.gather(migrate.upgrade(db), migrate.upgrade(db))
    assert sorted([bool(first.applied), bool(second.applied)]) == [False, True]
    with psycopg.connect(empty_db_url) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(migrate.our_migrations()),)


async def test_a_failing_migration_leaves_nothing_half_applied(
    empty_db_url: str, monkeypatch: object
) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    broken = [*migrate.our_migrations(), migrate.Migration(999, "broken", "CREATE TABLE x (;")]
    mp.setattr(migrate, "our_migrations", lambda: broken)
    try:
        with pytest.raises(psycopg.errors.SyntaxError):
            await migrate.upgrade(Database(url=empty_db_url))
    finally:
        mp.undo()
    assert tables(empty_db_url) == set()

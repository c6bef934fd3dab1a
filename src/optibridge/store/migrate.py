"""Versioned schema migrations: procrastinate's schema, then ours, all in one transaction.

Our migrations are the numbered files in `migrations/` (`0001_name.sql`), applied in order and
recorded in `schema_migrations`. Procrastinate ships its full schema and its own versioned
migration files; a fresh database gets the full schema, an older one the files between the version
recorded here and the installed one. A transaction-level advisory lock makes concurrent starts
(serve and workers at once) wait for one another instead of racing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import procrastinate
import psycopg
from procrastinate.schema import SchemaManager
from psycopg import sql

from optibridge.store.database import Database

MIGRATION_LOCK_ID = 0x0B7B_0001  # arbitrary, fixed: our advisory lock key
_OUR_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_THEIR_FILE = re.compile(r"^(\d+)\.(\d+)\.(\d+)_(\d+)_.*\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class UpgradeReport:
    applied: list[str]
    current_version: int
    procrastinate_version: str


def our_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("optibridge.store").joinpath("migrations").iterdir():
        m = _OUR_FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


def _version_tuple(text: str) -> tuple[int, int, int]:
    parts = re.findall(r"\d+", text)[:3]
    return (int(parts[0]), int(parts[1]), int(parts[2])) if len(parts) == 3 else (0, 0, 0)


def procrastinate_migrations_between(old: tuple[int, int, int], new: tuple[int, int, int]) -> list[Path]:
    """Procrastinate's migration files for versions in (old, new], in order."""
    files = []
    for path in Path(SchemaManager.get_migrations_path()).glob("*.sql"):
        m = _THEIR_FILE.match(path.name)
        if not m:
            continue
        version = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if old < version <= new:
            files.append((version, int(m.group(4)), path))
    return [p for *_, p in sorted(files)]


async def _applied_versions(conn: psycopg.AsyncConnection[dict[str, object]]) -> set[int]:
    rows = await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()
    return {int(str(r["version"])) for r in rows}


async def _exists(conn: psycopg.AsyncConnection[dict[str, object]], table: str) -> bool:
    row = await (await conn.execute("SELECT to_regclass(%s) AS t", (table,))).fetchone()
    return row is not None and row["t"] is not None


async def upgrade(db: Database) -> UpgradeReport:
    """Bring the schema up to date; safe to run any number of times, from any number of processes."""
    applied: list[str] = []
    installed = procrastinate.__version__
    async with db.connect() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version     integer PRIMARY KEY,
                   name        text NOT NULL,
                   applied_at  timestamptz NOT NULL DEFAULT now())"""
        )
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_components (
                   component   text PRIMARY KEY,
                   version     text NOT NULL,
                   updated_at  timestamptz NOT NULL DEFAULT now())"""
        )
        applied += await _upgrade_procrastinate(conn, installed)
        done = await _applied_versions(conn)
        for mig in our_migrations():
            if mig.version in done:
                continue
            await conn.execute(sql.SQL(mig.sql))  # our own files
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (mig.version, mig.name),
            )
            applied.append(f"{mig.version:04d}_{mig.name}")
        current = max(await _applied_versions(conn), default=0)
    return UpgradeReport(applied=applied, current_version=current, procrastinate_version=installed)


async def _upgrade_procrastinate(
    conn: psycopg.AsyncConnection[dict[str, object]], installed: str
) -> list[str]:
    row = await (
        await conn.execute("SELECT version FROM schema_components WHERE component = 'procrastinate'")
    ).fetchone()
    if row is None:
        if await _exists(conn, "procrastinate_jobs"):
            raise RuntimeError(
                "procrastinate tables exist but their version was not recorded by optibridge; "
                "this database was set up by something else"
            )
        await conn.execute(sql.SQL(SchemaManager.get_schema()))
        applied = [f"procrastinate {installed} (full schema)"]
    else:
        old, new = _version_tuple(str(row["version"])), _version_tuple(installed)
        if new < old:
            raise RuntimeError(
                f"the database has procrastinate schema {row['version']}, newer than the "
                f"installed procrastinate {installed}; upgrade optibridge"
            )
        applied = []
        for path in procrastinate_migrations_between(old, new):
            await conn.execute(sql.SQL(path.read_text(encoding="utf-8")))
            applied.append(f"procrastinate {path.name}")
    await conn.execute(
        """INSERT INTO schema_components (component, version) VALUES ('procrastinate', %s)
           ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, updated_at = now()""",
        (installed,),
    )
    return applied


async def status(db: Database) -> dict[str, object]:
    """What is applied and what is pending, without changing anything."""
    async with db.connect() as conn:
        if not await _exists(conn, "schema_migrations"):
            done: set[int] = set()
        else:
            done = await _applied_versions(conn)
    pending = [f"{m.version:04d}_{m.name}" for m in our_migrations() if m.version not in done]
    return {"current_version": max(done, default=0), "pending": pending}

"""Shared by all tests: where the source tree is, a fixed secret key, and real PostgreSQL.

One embedded server per test session, hence one per pytest-xdist worker (fsync off: these databases
are thrown away); the schema is migrated once into a template database, and each test gets its own
copy (CREATE DATABASE ... TEMPLATE, ~50 ms). Set OPTIBRIDGE_TEST_DATABASE_URL to use an external
server instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from optibridge.store import migrate
from optibridge.store.database import Database
from optibridge.store.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent
# A valid Fernet key used only by tests; never use a key that appears in source anywhere else.
TEST_SECRET_KEY = "t8Rt2Yg3T8xw0N5aV1pLrJ6kQm4sC9dFh2ZbWcXeUyA="


@pytest.fixture
def test_secret_key() -> str:
    return TEST_SECRET_KEY


@pytest.fixture
def pg_tmp() -> Iterator[Path]:
    """A folder for PostgreSQL data outside pytest's temp root.

    pytest makes its root 0700 at every session start; a second pytest run on the machine would
    lock the (unprivileged) postgres user out of a data folder inside it, and the server would die.
    """
    path = Path(tempfile.mkdtemp(prefix="optibridge-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# Under pytest-xdist each worker is its own session (its own embedded server); on a shared external
# server the template's name must differ per worker, or one worker would drop another's template.
TEMPLATE_DB = "optibridge_test_template_" + os.environ.get("PYTEST_XDIST_WORKER", "main")


def _with_db(url: str, name: str) -> str:
    """Same server, another database name, whatever the URL's form (socket or host)."""
    head, _, query = url.partition("?")
    head = re.sub(r"/[^/]*$", f"/{name}", head)
    return f"{head}?{query}" if query else head


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of the maintenance database of a running server."""
    external = os.environ.get("OPTIBRIDGE_TEST_DATABASE_URL")
    if external:
        yield _with_db(external, "postgres")
        return
    # Outside pytest's temp root: see the pg_tmp fixture for why.
    root = Path(tempfile.mkdtemp(prefix="optibridge-test-pg-"))
    server = EmbeddedPostgres(root / "data", fsync=False)
    server.start()
    try:
        yield server.url("postgres")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(pg_server_url: str) -> str:
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    url = _with_db(pg_server_url, TEMPLATE_DB)
    asyncio.run(migrate.upgrade(Database(url=url)))
    return url


def _create_db(server_url: str, template: str | None) -> tuple[str, str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    tmpl = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
    return name, _with_db(server_url, name)


def _drop_db(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server_url: str, template_url: str) -> Iterator[str]:
    """A fresh, fully migrated database for this test alone."""
    name, url = _create_db(pg_server_url, TEMPLATE_DB)
    try:
        yield url
    finally:
        _drop_db(pg_server_url, name)


@pytest.fixture
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name, url = _create_db(pg_server_url, None)
    try:
        yield url
    finally:
        _drop_db(pg_server_url, name)


@pytest.fixture
def db(db_url: str) -> Database:
    return Database(url=db_url)


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[dict[str, object]]]:
    c = await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row)
    async with c:
        yield c


@pytest.fixture
def service_env(db_url: str, tmp_path: Path, test_secret_key: str) -> dict[str, str]:
    """Environment for running `optibridge` subprocesses against this test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")}
    env.pop("DATABASE_URL", None)
    env |= {
        "OPTIBRIDGE_DATABASE_URL": db_url,
        "OPTIBRIDGE_SECRET_KEY": test_secret_key,
        "OPTIBRIDGE_DATA_DIR": str(tmp_path / "data"),
        "OPTIBRIDGE_LOG_FORMAT": "json",
        # Emulator and sinks run on loopback: the operator setting opens exactly that.
        "OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS": '["127.0.0.0/8", "::1/128"]',
    }
    return env

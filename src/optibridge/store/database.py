"""Which PostgreSQL to use, and a clear error when it cannot be used.

`open_database(settings)` starts (or attaches to) the embedded server when no URL is configured,
checks that the server answers and is recent enough, and gives back a `Database` holding the URL and
the embedded handle, which the caller closes. Connection pools are made from it as needed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from optibridge.core.config import Settings
from optibridge.core.errors import DatabaseUnavailableError
from optibridge.store.embedded import EmbeddedPostgres

MIN_SERVER_VERSION = 140000
CONNECT_TIMEOUT_S = 10


def redact(url: str) -> str:
    """The URL with any password replaced, fit for logs and error messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


@dataclass
class Database:
    url: str
    embedded: EmbeddedPostgres | None = None

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None

    def pool(
        self, *, max_size: int = 10, min_size: int = 1, name: str = "optibridge"
    ) -> psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[dict[str, object]]]:
        """An unopened async pool; autocommit, so every transaction is explicit in the code.

        Autocommit is set in `configure`, not in the connection kwargs: procrastinate opens its
        LISTEN connection with the pool's kwargs plus its own autocommit=True.
        """
        return psycopg_pool.AsyncConnectionPool(
            self.url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name=name,
            kwargs={"row_factory": dict_row},
            configure=_autocommit,
            # A connection is checked before it is handed out, so a database restart costs
            # failed health checks, not failed jobs.
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            connection_class=psycopg.AsyncConnection[dict[str, object]],
            timeout=30,
        )

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, object]]]:
        """One short-lived connection (CLI commands), with the clear error on failure."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S
            )
        except psycopg.OperationalError as exc:
            raise _unavailable(self.url, exc) from None
        async with conn:
            yield conn


async def _autocommit(conn: psycopg.AsyncConnection[dict[str, object]]) -> None:
    await conn.set_autocommit(True)


def _unavailable(url: str, exc: BaseException) -> DatabaseUnavailableError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return DatabaseUnavailableError(f"cannot connect to the database at {redact(url)}: {reason}")


def check_server(url: str) -> None:
    """Connect once; raise DatabaseUnavailableError unless the server answers and is 14+."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            version = conn.info.server_version
    except (psycopg.Error, ValueError) as exc:
        raise _unavailable(url, exc) from None
    if version < MIN_SERVER_VERSION:
        raise DatabaseUnavailableError(
            f"the database at {redact(url)} runs PostgreSQL {version // 10000}; 14 or newer is needed"
        )


def open_database(settings: Settings) -> Database:
    if settings.database_url:
        check_server(settings.database_url)
        return Database(url=settings.database_url)
    embedded = EmbeddedPostgres(settings.pg_dir, fsync=settings.embedded_pg_fsync)
    url = embedded.start()
    try:
        check_server(url)
    except BaseException:
        embedded.stop()
        raise
    return Database(url=url, embedded=embedded)


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Database]:
    db = open_database(settings)
    try:
        yield db
    finally:
        db.close()

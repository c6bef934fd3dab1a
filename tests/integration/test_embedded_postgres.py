"""The embedded PostgreSQL: starts from the wheel, keeps data across restarts, is shared safely."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from optibridge.store.embedded import EmbeddedPostgres


def test_starts_keeps_data_across_restarts_and_stops(pg_tmp: Path) -> None:
    pg = EmbeddedPostgres(pg_tmp / "pg", fsync=False)
    url = pg.start()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    pg.stop()
    assert not pg._running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    again = EmbeddedPostgres(pg_tmp / "pg", fsync=False)
    with again, psycopg.connect(again.url()) as conn:
        row = conn.execute("SELECT v FROM kept").fetchone()
    assert row == (42,)


def test_listens_on_no_tcp_port(pg_tmp: Path) -> None:
    with EmbeddedPostgres(pg_tmp / "pg", fsync=False) as pg, psycopg.connect(pg.url()) as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()
    assert listen == ("",)


def test_a_second_process_keeps_the_server_up_until_the_last_one_leaves(pg_tmp: Path) -> None:
    pg = EmbeddedPostgres(pg_tmp / "pg", fsync=False)
    pg.start()
    # Another process attaches, then leaves: the server must survive for us.
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from optibridge.store.embedded import EmbeddedPostgres
        other = EmbeddedPostgres(Path({str(pg_tmp / "pg")!r}), fsync=False)
        other.start()
        other.stop()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert pg._running()
    with psycopg.connect(pg.url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    pg.stop()
    assert not pg._running()


def test_a_dead_user_does_not_pin_the_server(pg_tmp: Path) -> None:
    """A process killed without cleaning up is pruned from the users list."""
    pg = EmbeddedPostgres(pg_tmp / "pg", fsync=False)
    pg.start()
    users = pg_tmp / ".pg.users"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    users.write_text(f"[{os.getpid()}, {dead.pid}]")
    pg.stop()
    assert not pg._running()

"""`optibridge serve` as a user runs it: embedded defaults, /healthz, shared database, clean stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from optibridge.store.embedded import EmbeddedPostgres
from optibridge.store.migrate import our_migrations

from servicekit import free_port, get_json, start, stop, wait_health


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIBRIDGE_")}
    env.pop("DATABASE_URL", None)
    return env | {"OPTIBRIDGE_LOG_FORMAT": "json"} | extra


def test_serve_on_embedded_defaults_is_healthy_and_stops_cleanly(pg_tmp: Path) -> None:
    tmp_path = pg_tmp
    env = clean_env()
    port = free_port()
    log = tmp_path / "serve.log"
    cli = [sys.executable, "-m", "optibridge"]
    added = subprocess.run(
        [*cli, "tenants", "add", "acme", "--api-url", "https://api5.optimove.net", "--api-key", "k"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert (tmp_path / ".optibridge" / "secret.key").exists()

    proc = start(["serve", "--port", str(port)], env, tmp_path, log)
    try:
        body = wait_health(port, 200, proc, log)
        assert body["database"]["ok"] is True
        assert body["database"]["embedded"] is True
        assert body["job_engine"]["ok"] is True
        assert body["job_engine"]["workers"] >= 1

        # A CLI command beside serve shares the embedded server and must not stop it on exit.
        listed = subprocess.run(
            [*cli, "tenants", "list"], env=env, cwd=tmp_path, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert "acme" in listed.stdout
        assert get_json(f"http://127.0.0.1:{port}/healthz")[0] == 200
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert not EmbeddedPostgres(tmp_path / ".optibridge" / "pg")._running()


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "optibridge", "serve", "--port", str(port)],
            env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in proc.stderr


def test_health_follows_the_database_down_and_back_up(
    tmp_path: Path, pg_tmp: Path, test_secret_key: str
) -> None:
    pg = EmbeddedPostgres(pg_tmp / "ext-pg", fsync=False)
    url = pg.start()
    env = clean_env(OPTIBRIDGE_DATABASE_URL=url, OPTIBRIDGE_SECRET_KEY=test_secret_key)
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start(["serve", "--port", str(port)], env, tmp_path, log)
    try:
        body = wait_health(port, 200, proc, log)
        assert body["database"]["embedded"] is False
        pg.stop()
        body = wait_health(port, 503, proc, log, timeout=30)
        assert body["status"] == "unavailable"
        assert body["database"]["ok"] is False
        assert body["job_engine"]["ok"] is False
        pg.start()
        wait_health(port, 200, proc, log, timeout=90)
    finally:
        code = stop(proc)
        pg.stop()
    assert code == 0, log.read_text()[-3000:]
    with psycopg.connect(pg.start()) as conn:  # the service migrated this external database
        migrated = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert migrated == (len(our_migrations()),)
    pg.stop()

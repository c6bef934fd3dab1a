"""Bad input at the command line: one clear line on stderr, a non-zero exit, nothing half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg


def run(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optibridge", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_broken_database_url_is_one_line(service_env: dict[str, str]) -> None:
    env = service_env | {"OPTIBRIDGE_DATABASE_URL": "postgresql://nobody:pw@127.0.0.1:1/none"}
    for args in (["db", "upgrade"], ["tenants", "list"], ["worker"]):
        proc = run(env, *args)
        assert_one_line_error(proc, "cannot connect to the database at postgresql://nobody:***@")
        assert proc.returncode == 3
        assert ":pw@" not in proc.stderr


def test_non_postgres_url_is_a_config_error(service_env: dict[str, str]) -> None:
    proc = run(service_env | {"OPTIBRIDGE_DATABASE_URL": "mysql://x"}, "db", "upgrade")
    assert_one_line_error(proc, "OPTIBRIDGE_DATABASE_URL: Value error, must start with postgresql")
    assert proc.returncode == 2


def test_missing_and_malformed_config_files(service_env: dict[str, str], tmp_path: Path) -> None:
    proc = run(service_env, "--config", str(tmp_path / "absent.toml"), "tenants", "list")
    assert_one_line_error(proc, "does not exist")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[tenants]]\nid = 'acme'\napi_base_url = \n")
    proc = run(service_env, "--config", str(bad), "serve")
    assert_one_line_error(proc, "not valid TOML")
    assert "line 3" in proc.stderr
    invalid = tmp_path / "invalid.toml"
    invalid.write_text("[[tenants]]\nid = 'acme'\napi_base_url = 'https://x'\n")
    proc = run(service_env | {"OPTIBRIDGE_CONFIG": str(invalid)}, "tenants", "sync")
    assert_one_line_error(proc, "exactly one")


def test_duplicate_tenant_fails_and_keeps_the_first(service_env: dict[str, str], db_url: str) -> None:
    first = run(
        service_env, "tenants", "add", "acme", "--api-url", "https://api5.optimove.net",
        "--api-key", "first-key", "--channel", "email:504",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = run(
        service_env, "tenants", "add", "acme", "--api-url", "https://other.example",
        "--api-key", "second-key", "--channel", "sms:505",
    )  # fmt: skip
    assert_one_line_error(second, "tenant 'acme' already exists")
    assert second.returncode == 5
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT api_base_url FROM tenants").fetchall() == [("https://api5.optimove.net",)]
        assert conn.execute("SELECT optimove_channel_id FROM channels").fetchall() == [(504,)]


def test_invalid_tenant_input_stores_nothing(service_env: dict[str, str], db_url: str) -> None:
    cases = [
        (["tenants", "add", "acme", "--api-url", "https://x", "--channel", "email"], "kind:channel_id"),
        (["tenants", "add", "acme", "--api-url", "ftp://x", "--api-key", "k"], "api_base_url"),
        (["tenants", "add", "acme", "--api-url", "https://x"], "exactly one"),
        (
            ["tenants", "add", "acme", "--api-url", "https://x", "--api-key", "k",
             "--channel", "email:504", "--channel", "sms:504"],
            "unique",
        ),
    ]  # fmt: skip
    for args, fragment in cases:
        assert_one_line_error(run(service_env, *args), fragment)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM tenants").fetchone() == (0,)


def test_unknown_tenant_and_wrong_secret_key(service_env: dict[str, str]) -> None:
    assert_one_line_error(run(service_env, "tenants", "show", "ghost"), "no tenant 'ghost'")
    assert run(service_env, "tenants", "list").returncode == 0  # stores the key check value
    other_key = "Q0mN2bV4cX6zL8kJ0hG2fD4sA6pO8iU0yT2rE4wQ6e8="
    proc = run(service_env | {"OPTIBRIDGE_SECRET_KEY": other_key}, "tenants", "list")
    assert_one_line_error(proc, "does not match")


def test_worker_refuses_an_unmigrated_database(service_env: dict[str, str], empty_db_url: str) -> None:
    proc = run(service_env | {"OPTIBRIDGE_DATABASE_URL": empty_db_url}, "worker")
    assert_one_line_error(proc, "optibridge db upgrade")


def test_a_missing_or_wrong_argument_prints_the_usage_line(service_env: dict[str, str]) -> None:
    for args, says in (
        (["listeners", "list"], "Missing argument 'TENANT'"),
        (["tenants", "show"], "Missing argument 'ID'"),
        (["campaigns", "pause"], "Missing argument"),
        (["reports", "push", "not-a-number"], "Invalid value for 'CAMPAIGN'"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ):
        proc = run(service_env, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("Usage: optibridge"), proc.stderr
        assert says in proc.stderr, proc.stderr
        assert "unexpected" not in proc.stderr
        assert "Traceback" not in proc.stderr

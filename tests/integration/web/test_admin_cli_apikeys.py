"""`optibridge apikeys create|list|revoke`: a key is printed once, listed by its prefix only,
scoped to a tenant when asked, and revoked at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
import typer
from typer.testing import CliRunner

from optibridge.cli.apikeys import apikeys_app
from optibridge.core.config import TenantConfig
from optibridge.core.secretbox import SecretBox, parse_keys
from optibridge.store import tenants
from optibridge.web import auth


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test root."""

    app.add_typer(apikeys_app, name="apikeys")
    return app


def cli_runner(db_url: str, secret_key: str, tmp_path: Path) -> CliRunner:
    """Settings come from the environment, as in a user's shell."""
    env = {
        "OPTIBRIDGE_DATABASE_URL": db_url,
        "OPTIBRIDGE_SECRET_KEY": secret_key,
        "OPTIBRIDGE_DATA_DIR": str(tmp_path),
    }
    return CliRunner(env=env)


async def add_tenant(db_url: str, secret_key: str) -> None:
    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, row_factory=psycopg.rows.dict_row
    ) as conn:
        config = TenantConfig(id="acme", api_base_url="http://127.0.0.1:9", api_key="k")  # type: ignore[arg-type]
        await tenants.add(conn, SecretBox(parse_keys(secret_key)), config, "cli")


def test_create_list_and_revoke_keys(db_url: str, test_secret_key: str, tmp_path: Path) -> None:
    asyncio.run(add_tenant(db_url, test_secret_key))
    app = cli()
    runner = cli_runner(db_url, test_secret_key, tmp_path)
    made = runner.invoke(app, ["apikeys", "create", "--name", "ops"])
    assert made.exit_code == 0, made.output
    key = made.stdout.splitlines()[1]
    assert auth.looks_like_key(key)
    assert "scope: admin" in made.stdout
    scoped = runner.invoke(app, ["apikeys", "create", "--name", "acme-bot", "--tenant", "acme", "--json"])
    scoped_data = json.loads(scoped.stdout)
    assert scoped_data["tenant"] == "acme"
    listed = runner.invoke(app, ["apikeys", "list", "--json"])
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["tenant"]) for r in rows] == [("ops", None), ("acme-bot", "acme")]
    assert rows[0]["prefix"] == key[:12]
    assert key not in listed.stdout
    assert scoped_data["key"] not in listed.stdout
    revoked = runner.invoke(app, ["apikeys", "revoke", str(rows[0]["id"])])
    assert revoked.stdout.strip() == f"revoked API key {rows[0]['id']}"
    remaining = json.loads(runner.invoke(app, ["apikeys", "list", "--json"]).stdout)
    assert [r["name"] for r in remaining] == ["acme-bot"]
    everything = json.loads(runner.invoke(app, ["apikeys", "list", "--all", "--json"]).stdout)
    assert everything[0]["revoked_at"] is not None


def test_a_key_for_an_unknown_tenant_is_refused(db_url: str, test_secret_key: str, tmp_path: Path) -> None:
    result = cli_runner(db_url, test_secret_key, tmp_path).invoke(
        cli(), ["apikeys", "create", "--name", "x", "--tenant", "nope"]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception)
    assert "no tenant 'nope'" in str(result.exception)

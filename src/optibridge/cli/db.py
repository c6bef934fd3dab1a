"""`optibridge db upgrade|status`: the database schema."""

from __future__ import annotations

import typer

from optibridge.cli.context import DataDir, load_settings, run
from optibridge.store import migrate
from optibridge.store.database import database

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply pending schema migrations (safe to run again, and beside running processes)."""
    settings = load_settings(data_dir=data_dir)

    async def go() -> migrate.UpgradeReport:
        with database(settings) as db:
            return await migrate.upgrade(db)

    report = run(go)
    for name in report.applied:
        typer.echo(f"applied {name}")
    typer.echo(f"schema at version {report.current_version}")


@db_app.command("status")
def db_status(data_dir: DataDir = None) -> None:
    """Show the schema version and pending migrations."""
    settings = load_settings(data_dir=data_dir)

    async def go() -> dict[str, object]:
        with database(settings) as db:
            return await migrate.status(db)

    state = run(go)
    typer.echo(f"schema at version {state['current_version']}")
    pending = state["pending"]
    assert isinstance(pending, list)
    typer.echo("pending: " + (", ".join(pending) if pending else "none"))

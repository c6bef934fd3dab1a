"""The `optibridge` command line.

Every failure a user can cause ends as one line on stderr (`error: ...`) and a non-zero exit code;
a traceback is shown only with OPTIBRIDGE_DEBUG=1.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from optibridge import __version__
from optibridge.core.config import ChannelConfig, Settings, TenantConfig, describe_validation_error
from optibridge.core.config import load_settings as _load_settings
from optibridge.core.errors import ConfigError, OptibridgeError
from optibridge.core.logs import configure as configure_logging

T = TypeVar("T")

app = typer.Typer(
    name="optibridge",
    help="Turn a messaging platform into an Optimove execution channel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants: one per Optimove client.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenants_app, name="tenants")


class _State:
    config: Path | None = None
    log_level: str | None = None
    log_format: str | None = None


_state = _State()


def _settings(*, service: bool = False, **overrides: Any) -> Settings:
    """Load settings and set up logging; one-shot commands log only warnings unless asked."""
    settings = _load_settings(
        _state.config, log_level=_state.log_level, log_format=_state.log_format, **overrides
    )
    level = settings.log_level
    if not service and _state.log_level is None and "OPTIBRIDGE_LOG_LEVEL" not in os.environ:
        level = "WARNING"
    configure_logging(level, settings.log_format)
    return settings


def _run(coro: Callable[[], Awaitable[T]]) -> T:
    # uvloop (a dependency of uvicorn[standard]) when present: the send path is mostly event-loop
    # and socket work. OPTIBRIDGE_EVENT_LOOP=asyncio turns it off.
    if os.environ.get("OPTIBRIDGE_EVENT_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro())  # type: ignore[arg-type]
    return asyncio.run(coro())  # type: ignore[arg-type]


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="TOML config file [env: OPTIBRIDGE_CONFIG; default ./optibridge.toml]"
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="json, console or auto (console on a terminal)")
    ] = None,
) -> None:
    _state.config = config
    _state.log_level = log_level
    _state.log_format = log_format


@app.command()
def version() -> None:
    """Print the optibridge version."""
    typer.echo(__version__)


@app.command()
def keygen() -> None:
    """Print a new secret key (for OPTIBRIDGE_SECRET_KEY or the key file)."""
    from optibridge.core.secretbox import generate_key

    typer.echo(generate_key())


DataDir = Annotated[
    Path | None,
    typer.Option(help="Folder for the embedded database and key file [env: OPTIBRIDGE_DATA_DIR]"),
]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [env: OPTIBRIDGE_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [env: OPTIBRIDGE_PORT]")] = None,
    data_dir: DataDir = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes: 0 none, 1 inside this process, N>1 child processes "
            "[env: OPTIBRIDGE_WORKERS]"
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs at once per worker [env: OPTIBRIDGE_WORKER_CONCURRENCY]")
    ] = None,
) -> None:
    """Run the HTTP app and the workers; migrate the database first.

    With no DATABASE_URL, an embedded PostgreSQL is started in the data folder and stopped on exit.
    """
    from optibridge.service import run_serve

    settings = _settings(
        service=True,
        host=host,
        port=port,
        data_dir=data_dir,
        workers=workers,
        worker_concurrency=concurrency,
    )
    _run(lambda: run_serve(settings))


@app.command()
def worker(
    data_dir: DataDir = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs at once [env: OPTIBRIDGE_WORKER_CONCURRENCY]")
    ] = None,
) -> None:
    """Run a worker only (for extra machines); needs an up-to-date schema (see `db upgrade`)."""
    from optibridge.service import run_worker

    settings = _settings(service=True, data_dir=data_dir, worker_concurrency=concurrency)
    _run(lambda: run_worker(settings))


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="E-mail customers (SMS gets half, push a quarter)")] = 10_000,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Keep the service and dashboard up afterwards")
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the service (0: any free one)")] = 0,
    first_send: Annotated[
        int, typer.Option(help="Seconds from now of the first send time (the second is 25 s later)")
    ] = 15,
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its database and mails")] = Path(
        ".optibridge/demo"
    ),
) -> None:
    """Run the whole loop on this machine: emulator, sinks, service, campaigns, metrics, summary.

    Uses its own embedded PostgreSQL in DATA_DIR (wiped at each run) and never a configured one.
    """
    import shutil

    from optibridge.core.feedback_settings import FeedbackSettings
    from optibridge.demo.run import run_demo

    if customers < 1 or customers > 2_000_000:
        raise ConfigError("--customers must be between 1 and 2,000,000")
    shutil.rmtree(data_dir / "pg", ignore_errors=True)
    for stale in (data_dir / ".pg.users", data_dir / ".pg.lock"):
        stale.unlink(missing_ok=True)
    settings = Settings(
        data_dir=data_dir,
        database_url=None,
        secret_key=None,
        log_level=_state.log_level or "WARNING",
        log_format=_state.log_format or "console",
        dispatch_cron="* * * * * *",
        # The simulated audience opens within seconds of the send, which the tracker would
        # otherwise discount as a mail scanner's prefetch (docs/feedback.md).
        feedback=FeedbackSettings(min_human_delay_s=0),
    )
    configure_logging(settings.log_level, settings.log_format)
    ok = _run(lambda: run_demo(settings, customers, keep_running, port, first_send))
    if not ok:
        raise OptibridgeError("the demo's metrics did not all match (see the table)")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply pending schema migrations (safe to run again, and beside running processes)."""
    from optibridge.store import migrate
    from optibridge.store.database import database

    settings = _settings(data_dir=data_dir)

    async def go() -> migrate.UpgradeReport:
        with database(settings) as db:
            return await migrate.upgrade(db)

    report = _run(go)
    for name in report.applied:
        typer.echo(f"applied {name}")
    typer.echo(f"schema at version {report.current_version}")


@db_app.command("status")
def db_status(data_dir: DataDir = None) -> None:
    """Show the schema version and pending migrations."""
    from optibridge.store import migrate
    from optibridge.store.database import database

    settings = _settings(data_dir=data_dir)

    async def go() -> dict[str, object]:
        with database(settings) as db:
            return await migrate.status(db)

    state = _run(go)
    typer.echo(f"schema at version {state['current_version']}")
    pending = state["pending"]
    assert isinstance(pending, list)
    typer.echo("pending: " + (", ".join(pending) if pending else "none"))


def _parse_channel(spec: str) -> ChannelConfig:
    """`kind:channel_id[:name]`, e.g. `email:504` or `sms:505:sms-eu`."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        raise ConfigError(f"--channel {spec!r}: expected kind:channel_id[:name], e.g. email:504")
    try:
        return ChannelConfig(
            kind=parts[0],
            channel_id=int(parts[1]),
            name=parts[2] if len(parts) == 3 else parts[0],
        )
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, f"--channel {spec!r}")) from None


def _tenant_from_file(path: Path) -> dict[str, Any]:
    from optibridge.core.config import read_toml

    data = read_toml(path)
    return dict(data.get("tenant", data))


@tenants_app.command("add")
def tenants_add(
    tenant_id: Annotated[str | None, typer.Argument(metavar="ID", help="Short id, e.g. acme")] = None,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    api_url: Annotated[
        str | None, typer.Option(help="Optimove API base URL, e.g. https://api5.optimove.net")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Optimove API key", envvar="OPTIBRIDGE_TENANT_API_KEY")
    ] = None,
    username: Annotated[str | None, typer.Option(help="Legacy login user name")] = None,
    password: Annotated[
        str | None, typer.Option(help="Legacy login password", envvar="OPTIBRIDGE_TENANT_PASSWORD")
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(help="kind:channel_id[:name], repeatable (kind: email, sms, push, webhook)"),
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="TOML file with one tenant (same keys as [[tenants]])")
    ] = None,
) -> None:
    """Add a tenant; its credentials are stored encrypted. Fails if the id is taken."""
    from optibridge.bootstrap import open_runtime
    from optibridge.store import tenants as store

    data: dict[str, Any] = _tenant_from_file(file) if file else {}
    given = {
        "id": tenant_id,
        "name": name,
        "api_base_url": api_url,
        "api_key": api_key,
        "username": username,
        "password": password,
    }
    data |= {k: v for k, v in given.items() if v is not None}
    if channel:
        data["channels"] = [c.model_dump() for c in map(_parse_channel, channel)]
    if "id" not in data:
        raise ConfigError("give the tenant ID (argument) or a --file with an id")
    try:
        tenant = TenantConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "tenant")) from None
    settings = _settings()

    async def go() -> None:
        async with (
            open_runtime(settings, upgrade=settings.embedded, pool_size=2) as rt,
            rt.db.connect() as conn,
        ):
            await store.add(conn, rt.box, tenant, "cli")

    _run(go)
    typer.echo(f"added tenant {tenant.id} with {len(tenant.channels)} channel(s)")


def _tenant_dict(t: Any) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "api_base_url": t.api_base_url,
        "auth": t.auth_kind,
        "source": t.source,
        "created_at": t.created_at.isoformat(),
        "channels": [
            {
                "name": c.name,
                "kind": c.kind,
                "channel_id": c.optimove_channel_id,
                "settings": c.settings,
            }
            for c in t.channels
        ],
    }


@tenants_app.command("list")
def tenants_list(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """List tenants and their channels (never their credentials)."""
    from optibridge.bootstrap import open_runtime
    from optibridge.store import tenants as store

    settings = _settings()

    async def go() -> list[Any]:
        async with (
            open_runtime(settings, upgrade=settings.embedded, pool_size=2) as rt,
            rt.db.connect() as conn,
        ):
            return await store.list_all(conn)

    rows = _run(go)
    if as_json:
        typer.echo(json.dumps([_tenant_dict(t) for t in rows], indent=2))
        return
    if not rows:
        typer.echo("no tenants")
        return
    typer.echo(f"{'ID':<20} {'AUTH':<8} {'SOURCE':<7} {'CHANNELS':<30} API")
    for t in rows:
        chans = ",".join(f"{c.kind}:{c.optimove_channel_id}" for c in t.channels) or "-"
        typer.echo(f"{t.id:<20} {t.auth_kind:<8} {t.source:<7} {chans:<30} {t.api_base_url}")


@tenants_app.command("show")
def tenants_show(tenant_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Show one tenant as JSON (credentials are never shown)."""
    from optibridge.bootstrap import open_runtime
    from optibridge.store import tenants as store

    settings = _settings()

    async def go() -> Any:
        async with (
            open_runtime(settings, upgrade=settings.embedded, pool_size=2) as rt,
            rt.db.connect() as conn,
        ):
            return await store.get(conn, tenant_id)

    typer.echo(json.dumps(_tenant_dict(_run(go)), indent=2))


@tenants_app.command("remove")
def tenants_remove(
    tenant_id: Annotated[str, typer.Argument(metavar="ID")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Remove a tenant and everything stored for it."""
    from optibridge.bootstrap import open_runtime
    from optibridge.store import tenants as store

    if not yes and sys.stdin.isatty():
        typer.confirm(f"remove tenant {tenant_id} and all its data?", abort=True)
    elif not yes:
        raise ConfigError("refusing to remove without --yes (no terminal to confirm on)")
    settings = _settings()

    async def go() -> None:
        async with (
            open_runtime(settings, upgrade=settings.embedded, pool_size=2) as rt,
            rt.db.connect() as conn,
        ):
            await store.remove(conn, tenant_id)

    _run(go)
    typer.echo(f"removed tenant {tenant_id}")


@tenants_app.command("sync")
def tenants_sync() -> None:
    """Store the config file's tenants now (serve also does this at start)."""
    from optibridge.bootstrap import open_runtime

    settings = _settings()

    async def go() -> None:
        async with open_runtime(settings, upgrade=settings.embedded, sync_tenants=True, pool_size=2):
            pass

    _run(go)
    typer.echo(f"{len(settings.tenants)} tenant(s) from the config file are stored")


def _register_inbound() -> None:
    from optibridge.cli import inbound as cli_inbound

    cli_inbound.install(app, lambda: _settings())
    from optibridge.cli.reports import reports_app

    app.add_typer(reports_app, name="reports")


_register_inbound()


def _register_admin() -> None:
    from optibridge.cli import admin as cli_admin

    cli_admin.install(app, lambda: _settings())


_register_admin()


def _register_plugins() -> None:
    # Imported by name at run time so that a build without the emulator still has a CLI.
    try:
        module = importlib.import_module("optibridge.emulator.command")
    except ImportError:
        return
    module.register(app)


_register_plugins()


def main(argv: list[str] | None = None) -> None:
    command = typer.main.get_command(app)
    try:
        # Standalone mode lets the command-line library answer its own errors (a missing or wrong
        # argument prints the usage line and exits 2; Ctrl-C at a prompt, "Aborted!") whichever
        # click it uses: typer now ships its own copy, whose exceptions `click` does not know.
        command.main(args=argv, prog_name="optibridge", standalone_mode=True)
    except OptibridgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("OPTIBRIDGE_DEBUG"):
            raise
        detail = " ".join(str(exc).split())[:500]
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {detail} (OPTIBRIDGE_DEBUG=1 shows the traceback)",
            err=True,
        )
        sys.exit(70)

"""Top-level commands: `version`, `keygen`, `serve`, `worker` and `demo`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from optibridge import __version__
from optibridge.cli.context import DataDir, load_settings, options, run
from optibridge.core.collector import tune_collector
from optibridge.core.config import Settings
from optibridge.core.errors import ConfigError, OptibridgeError
from optibridge.core.feedback_settings import FeedbackSettings
from optibridge.core.logs import configure as configure_logging
from optibridge.core.secretbox import generate_key
from optibridge.demo.run import run_demo
from optibridge.service import run_serve, run_worker


def version() -> None:
    """Print the optibridge version."""
    typer.echo(__version__)


def keygen() -> None:
    """Print a new secret key (for OPTIBRIDGE_SECRET_KEY or the key file)."""
    typer.echo(generate_key())


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
    settings = load_settings(
        service=True,
        host=host,
        port=port,
        data_dir=data_dir,
        workers=workers,
        worker_concurrency=concurrency,
    )
    tune_collector(settings.gc_young_threshold)
    run(lambda: run_serve(settings))


def worker(
    data_dir: DataDir = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs at once [env: OPTIBRIDGE_WORKER_CONCURRENCY]")
    ] = None,
) -> None:
    """Run a worker only (for extra machines); needs an up-to-date schema (see `db upgrade`)."""
    settings = load_settings(service=True, data_dir=data_dir, worker_concurrency=concurrency)
    tune_collector(settings.gc_young_threshold)
    run(lambda: run_worker(settings))


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
    event14: Annotated[
        bool,
        typer.Option(
            "--event14", help="The e-mail campaign by event 14 (webhook + Avro files in a GCS emulator)"
        ),
    ] = False,
) -> None:
    """Run the whole loop on this machine: emulator, sinks, service, campaigns, metrics, summary.

    Uses its own embedded PostgreSQL in DATA_DIR (wiped at each run) and never a configured one.
    """
    if customers < 1 or customers > 2_000_000:
        raise ConfigError("--customers must be between 1 and 2,000,000")
    shutil.rmtree(data_dir / "pg", ignore_errors=True)
    for stale in (data_dir / ".pg.users", data_dir / ".pg.lock"):
        stale.unlink(missing_ok=True)
    settings = Settings(
        data_dir=data_dir,
        database_url=None,
        secret_key=None,
        log_level=options.log_level or "WARNING",
        log_format=options.log_format or "console",
        dispatch_cron="* * * * * *",
        # The simulated audience opens within seconds of the send, which the tracker would
        # otherwise discount as a mail scanner's prefetch (docs/feedback.md).
        feedback=FeedbackSettings(min_human_delay_s=0),
    )
    configure_logging(settings.log_level, settings.log_format)
    ok = run(lambda: run_demo(settings, customers, keep_running, port, first_send, event14))
    if not ok:
        raise OptibridgeError("the demo's metrics did not all match (see the table)")

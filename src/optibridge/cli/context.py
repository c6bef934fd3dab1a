"""What every command group shares: the root options, one way to load settings, and the runners.

The root command's callback stores `--config`, `--log-level` and `--log-format` in `options`;
`load_settings` reads them (with the environment and the config file), `run` runs a coroutine on
the CLI's event loop and `with_runtime` runs one inside `optibridge.bootstrap.open_runtime`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from optibridge.bootstrap import open_runtime
from optibridge.core.config import Settings
from optibridge.core.config import load_settings as _load_settings
from optibridge.core.event_loop import run_on_event_loop
from optibridge.core.logs import configure as configure_logging
from optibridge.runtime import Runtime

T = TypeVar("T")


@dataclass
class RootOptions:
    """The root command's options, set by its callback before any command runs."""

    config: Path | None = None
    log_level: str | None = None
    log_format: str | None = None


options = RootOptions()


def load_settings(*, service: bool = False, **overrides: object) -> Settings:
    """Load settings and set up logging; one-shot commands log only warnings unless asked.

    `overrides` are settings fields given on the command line; a None one is left to the
    environment and the config file.
    """
    settings = _load_settings(
        options.config, log_level=options.log_level, log_format=options.log_format, **overrides
    )
    level = settings.log_level
    if not service and options.log_level is None and "OPTIBRIDGE_LOG_LEVEL" not in os.environ:
        level = "WARNING"
    configure_logging(level, settings.log_format)
    return settings


def run(coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `coro()` to completion on uvloop (or asyncio, with OPTIBRIDGE_EVENT_LOOP=asyncio)."""
    return run_on_event_loop(coro())


def with_runtime(
    fn: Callable[[Runtime], Awaitable[T]], *, pool_size: int = 2, sync_tenants: bool = False
) -> T:
    """Load settings, open a runtime (migrating an embedded database first) and run `fn` in it."""
    settings = load_settings()

    async def go() -> T:
        async with open_runtime(
            settings, upgrade=settings.embedded, sync_tenants=sync_tenants, pool_size=pool_size
        ) as rt:
            return await fn(rt)

    return run(go)


# -- arguments and options shared by several groups ---------------------------------------------

DataDir = Annotated[
    Path | None,
    typer.Option(help="Folder for the embedded database and key file [env: OPTIBRIDGE_DATA_DIR]"),
]
Tenant = Annotated[str, typer.Argument(metavar="TENANT", help="Tenant id")]
Channel = Annotated[str, typer.Argument(metavar="CHANNEL", help="Channel name (e.g. email)")]
Now = Annotated[bool, typer.Option("--now", help="Push to Optimove now, in this process")]

"""The `optibridge` command line: the root command, every group under it, and `main`.

Every failure a user can cause ends as one line on stderr (`error: ...`) and a non-zero exit code;
a traceback is shown only with OPTIBRIDGE_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from optibridge.cli import service
from optibridge.cli.aggregator import aggregator_app
from optibridge.cli.apikeys import apikeys_app
from optibridge.cli.apps import apps_app
from optibridge.cli.campaigns import campaigns_app
from optibridge.cli.contacts import contacts_app
from optibridge.cli.context import options
from optibridge.cli.customers import customers_app
from optibridge.cli.db import db_app
from optibridge.cli.listeners import listeners_app
from optibridge.cli.reports import reports_app
from optibridge.cli.templates import templates_app
from optibridge.cli.tenants import tenants_app
from optibridge.core.errors import OptibridgeError
from optibridge.emulator import command as emulator_command

app = typer.Typer(
    name="optibridge",
    help="Turn a messaging platform into an Optimove execution channel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    options.config = config
    options.log_level = log_level
    options.log_format = log_format


# The order here is the order `optibridge --help` lists them in.
app.command()(service.version)
app.command()(service.keygen)
app.command()(service.serve)
app.command()(service.worker)
app.command()(service.demo)
emulator_command.register(app)
app.add_typer(db_app, name="db")
app.add_typer(tenants_app, name="tenants")
app.add_typer(listeners_app, name="listeners")
app.add_typer(aggregator_app, name="aggregator")
app.add_typer(templates_app, name="templates")
app.add_typer(apps_app, name="apps")
app.add_typer(contacts_app, name="contacts")
app.add_typer(customers_app, name="customers")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(reports_app, name="reports")
app.add_typer(apikeys_app, name="apikeys")


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

"""`optibridge apps add|delete`: push apps and their sync with Optimove."""

from __future__ import annotations

from typing import Annotated

import typer

from optibridge.catalog import store
from optibridge.cli.context import Channel, Tenant, with_runtime
from optibridge.runtime import Runtime

apps_app = typer.Typer(help="Push apps and their sync with Optimove.", no_args_is_help=True)


@apps_app.command("add")
def apps_add(
    tenant: Tenant,
    channel: Channel,
    app_id: Annotated[str, typer.Argument(metavar="APP_ID")],
    name: Annotated[str, typer.Argument(metavar="NAME")],
) -> None:
    """Add (or rename) a push app."""

    async def go(rt: Runtime) -> None:
        async with rt.pool.connection() as conn:
            await store.add_app(conn, rt.job_app, tenant, channel, app_id, name)

    with_runtime(go, pool_size=4)
    typer.echo(f"app {app_id}: saved; sync queued")


@apps_app.command("delete")
def apps_delete(
    tenant: Tenant, channel: Channel, app_id: Annotated[str, typer.Argument(metavar="APP_ID")]
) -> None:
    """Delete a push app."""

    async def go(rt: Runtime) -> None:
        async with rt.pool.connection() as conn:
            await store.delete_app(conn, rt.job_app, tenant, channel, app_id)

    with_runtime(go, pool_size=4)
    typer.echo(f"app {app_id}: deleted; sync queued")

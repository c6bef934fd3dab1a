"""`optibridge contacts import`: addresses kept outside Optimove."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from optibridge.cli.context import Tenant, with_runtime
from optibridge.runtime import Runtime
from optibridge.store import contacts, tenants

contacts_app = typer.Typer(help="Addresses kept outside Optimove.", no_args_is_help=True)


@contacts_app.command("import")
def contacts_import(tenant: Tenant, file: Annotated[Path, typer.Argument(metavar="FILE.csv")]) -> None:
    """Load addresses from CSV (customer_id, email, phone, device_token, other columns as attributes)."""

    async def go(rt: Runtime) -> contacts.ImportReport:
        async with rt.pool.connection() as conn:
            await tenants.get(conn, tenant)
            return await contacts.import_csv(conn, tenant, file)

    report = with_runtime(go, pool_size=4)
    typer.echo(f"{report.rows} row(s): {report.upserted} added or changed, {report.skipped} unchanged")

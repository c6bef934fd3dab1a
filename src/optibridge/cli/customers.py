"""`optibridge customers forget`: remove one customer's data from every table."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from optibridge.cli.context import Tenant, with_runtime
from optibridge.retention.forget import forget_customer
from optibridge.runtime import Runtime

customers_app = typer.Typer(help="One customer's data.", no_args_is_help=True)


@customers_app.command("forget")
def customers_forget(
    tenant: Tenant,
    customer: Annotated[str, typer.Argument(metavar="CUSTOMER", help="Optimove customer id")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Delete the customer's messages, events, contact and pending opt-outs; keep their
    suppressions hashed (never sent to again). Prints the rows removed per table."""

    async def go(rt: Runtime) -> dict[str, int]:
        return await forget_customer(rt.pool, tenant, customer)

    removed = with_runtime(go)
    if as_json:
        typer.echo(json.dumps({"tenant": tenant, "customer": customer, "removed": removed}, indent=2))
        return
    typer.echo(f"customer {customer!r} of tenant {tenant!r}: {sum(removed.values())} row(s)")
    for table, count in removed.items():
        typer.echo(f"  {table}: {count}")

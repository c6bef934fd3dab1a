"""`optibridge listeners sync|list|rotate-token`: Optimove event listeners (flow 1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from optibridge.cli.context import Tenant, with_runtime
from optibridge.intake import registration
from optibridge.runtime import Runtime
from optibridge.store import listener_tokens, tenants

listeners_app = typer.Typer(help="Optimove event listeners (flow 1).", no_args_is_help=True)


@listeners_app.command("sync")
def listeners_sync(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change")] = False,
) -> None:
    """Register our listener URLs with Optimove, changing only what differs."""

    async def go(rt: Runtime) -> list[str]:
        lines: list[str] = []
        async with rt.pool.connection() as conn:
            ids = [tenant] if tenant else [t.id for t in await tenants.list_all(conn)]
        verb = "would " if dry_run else ""
        for tid in ids:
            plan = await registration.sync_tenant(rt, tid, dry_run=dry_run)
            for reg in plan.register:
                lines.append(f"{tid}: {verb}register event {reg.event_type_id} channel {reg.channel_id}")
            for event, channel in plan.unregister:
                lines.append(f"{tid}: {verb}unregister event {event} channel {channel}")
            lines.append(f"{tid}: {len(plan.unchanged)} registration(s) already right")
        return lines

    for line in with_runtime(go, pool_size=4):
        typer.echo(line)


@listeners_app.command("list")
def listeners_list(tenant: Tenant) -> None:
    """Show our listener URLs and what Optimove has registered."""

    async def go(rt: Runtime) -> dict[str, object]:
        async with rt.pool.connection() as conn:
            t = await tenants.get(conn, tenant)
            token = await listener_tokens.current(conn, rt.box, tenant)
        ours = (
            [
                {"event": r.event_type_id, "channel": r.channel_id, "url": r.listener_url}
                for r in registration.desired(
                    rt.settings.public_url, tenant, token, {c.optimove_channel_id for c in t.channels}
                )
            ]
            if rt.settings.public_url
            else "set public_url to see them"
        )
        client = await rt.clients.get(tenant)
        theirs = [
            {"event": r.event_type_id, "channel": r.channel_id, "url": r.listener_url}
            for r in await client.get_registered_event_listeners()
        ]
        return {"ours": ours, "registered_at_optimove": theirs}

    typer.echo(json.dumps(with_runtime(go, pool_size=4), indent=2))


@listeners_app.command("rotate-token")
def listeners_rotate(
    tenant: Tenant,
    grace_hours: Annotated[float, typer.Option(help="How long the old token keeps working")] = 24.0,
) -> None:
    """Replace the tenant's listener token (then run `listeners sync`)."""

    async def go(rt: Runtime) -> None:
        async with rt.pool.connection() as conn:
            await listener_tokens.rotate(
                conn, rt.box, tenant, datetime.now(UTC), timedelta(hours=grace_hours)
            )

    with_runtime(go, pool_size=4)
    typer.echo(
        f"rotated; the old token works for {grace_hours:g} more hours: run `optibridge listeners sync`"
    )

"""`optibridge reports show|push`: what we counted for a campaign and what Optimove was last told."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from optibridge.cli.context import with_runtime
from optibridge.core.errors import NotFoundError
from optibridge.reporting.ondemand import ChannelPush, push_now
from optibridge.reporting.show import campaign_overview, render_overview
from optibridge.runtime import Runtime

reports_app = typer.Typer(help="Campaign results reported to Optimove.", no_args_is_help=True)


@reports_app.callback()
def _group() -> None:
    """Campaign results reported to Optimove."""
    # A callback keeps `reports` a group even with one command, so `reports show` stays `show`.


@reports_app.command("show")
def show(
    campaign: Annotated[int, typer.Argument(metavar="CAMPAIGN", help="Optimove CampaignID")],
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="Tenant id (needed if several)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Counts per channel and template: what we counted now, and what Optimove last accepted."""

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.connect() as conn:
            return await campaign_overview(conn, campaign, tenant, now=datetime.now(UTC))

    overview = with_runtime(go)
    if not overview:
        raise NotFoundError(f"no campaign {campaign}" + (f" for tenant {tenant!r}" if tenant else ""))
    if as_json:
        typer.echo(json.dumps(overview, indent=2, default=str))
        return
    typer.echo(render_overview(overview))


@reports_app.command("push")
def push(
    campaign: Annotated[int, typer.Argument(metavar="CAMPAIGN", help="Optimove CampaignID")],
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="Tenant id (needed if several)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Push the campaign's current totals and new interactions to Optimove now, outside the schedule."""

    async def go(rt: Runtime) -> list[ChannelPush]:
        return await push_now(rt, campaign, tenant_id=tenant, now=datetime.now(UTC))

    done = with_runtime(go, pool_size=4)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for p in done], indent=2))
        return
    for p in done:
        left = "" if p.complete else " (more interactions left for the schedule)"
        typer.echo(
            f"{p.tenant_id} channel {p.channel_id} campaign {p.campaign_id}: "
            f"{p.metrics_sent} metric totals, {p.interactions_sent} new interactions pushed{left}"
        )

"""`optibridge campaigns list|show|pause|resume|cancel`: progress and operator actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from optibridge.campaigns import (
    ACTIONS,
    Action,
    Campaign,
    CampaignDetail,
    CampaignFilter,
    act,
    get_campaign,
    list_campaigns,
)
from optibridge.cli.context import Channel, Tenant, with_runtime
from optibridge.runtime import Runtime

campaigns_app = typer.Typer(help="Campaigns: progress, pause, resume, cancel.", no_args_is_help=True)
CampaignId = Annotated[int, typer.Argument(metavar="CAMPAIGN")]


@campaigns_app.command("list")
def campaigns_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    limit: Annotated[int, typer.Option(help="Newest first, at most this many")] = 50,
) -> None:
    """Campaigns with their progress (sent/total)."""

    async def go(rt: Runtime) -> list[Campaign]:
        async with rt.pool.connection() as conn:
            return await list_campaigns(conn, CampaignFilter(tenant_id=tenant), after=None, limit=limit)

    rows = with_runtime(go, pool_size=4)
    typer.echo(f"{'TENANT':<12} {'CHANNEL':<8} {'CAMPAIGN':>9} {'STATUS':<9} {'SENT':>9} {'TOTAL':>9}  FLAGS")
    for c in rows:
        flags = ",".join(f for f, on in (("paused", c.paused), ("cancel-pending", c.cancel_pending)) if on)
        typer.echo(
            f"{c.tenant_id:<12} {c.channel:<8} {c.campaign_id:>9} {c.status:<9} "
            f"{c.progress.sent:>9} {c.progress.total:>9}  {flags}"
        )


@campaigns_app.command("show")
def campaigns_show(tenant: Tenant, channel: Channel, campaign_id: CampaignId) -> None:
    """Progress of one campaign: counts by state, per template, failures by reason."""

    async def go(rt: Runtime) -> CampaignDetail:
        async with rt.pool.connection() as conn:
            return await get_campaign(conn, tenant, channel, campaign_id)

    detail = with_runtime(go, pool_size=4)
    c = detail.campaign
    typer.echo(
        f"campaign {c.campaign_id} on {c.tenant_id}/{c.channel}: {c.status}"
        f"{' (paused)' if c.paused else ''}; {c.progress.sent}/{c.progress.total} sent"
    )
    typer.echo("states: " + ", ".join(f"{k} {v}" for k, v in sorted(c.progress.counts.items())))
    for template_id, progress in sorted(detail.templates.items()):
        typer.echo(f"  template {template_id}: {progress.sent}/{progress.total} sent")
    for reason, count in detail.failures:
        typer.echo(f"  failed {count}: {reason}")


def _act(action: Action) -> Callable[..., None]:
    def command(tenant: Tenant, channel: Channel, campaign_id: CampaignId) -> None:
        async def go(rt: Runtime) -> str:
            async with rt.pool.connection() as conn:
                return await act(conn, tenant, channel, campaign_id, action)

        typer.echo(f"campaign {campaign_id} on {tenant}/{channel}: {with_runtime(go, pool_size=4)}")

    command.__doc__ = {
        "pause": "Stop sending (takes effect within one slice); messages stay pending.",
        "resume": "Send again after a pause.",
        "cancel": "Cancel every message not yet sent (final).",
    }[action]
    return command


for _action in ACTIONS:
    campaigns_app.command(_action)(_act(_action))

"""`optibridge tenants add|list|show|remove|sync`: one tenant per Optimove client."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from optibridge.channels.factory import validate_tenant
from optibridge.cli.context import with_runtime
from optibridge.core.config import ChannelConfig, TenantConfig, describe_validation_error, read_toml
from optibridge.core.engagement_settings import EngagementConfig, check_engagement_url, metric_base_url
from optibridge.core.errors import ConfigError
from optibridge.intake.promotions_settings import PromotionSettingsIn, check_destination
from optibridge.runtime import Runtime
from optibridge.store import engagement_events as engagement_store
from optibridge.store import promotions as promotion_store
from optibridge.store import tenants as store

tenants_app = typer.Typer(help="Tenants: one per Optimove client.", no_args_is_help=True)


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


def _tenant_from_file(path: Path) -> dict[str, object]:
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
    data: dict[str, object] = _tenant_from_file(file) if file else {}
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

    async def go(rt: Runtime) -> None:
        # The API's and the config file's checks: settings models and the outbound policy.
        validate_tenant(tenant, rt.settings.outbound_policy, callback_base_url=rt.settings.public_url)
        async with rt.db.connect() as conn:
            await store.add(conn, rt.box, tenant, "cli")

    with_runtime(go)
    typer.echo(f"added tenant {tenant.id} with {len(tenant.channels)} channel(s)")


def _tenant_dict(t: store.Tenant) -> dict[str, object]:
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

    async def go(rt: Runtime) -> list[store.Tenant]:
        async with rt.db.connect() as conn:
            return await store.list_all(conn)

    rows = with_runtime(go)
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

    async def go(rt: Runtime) -> store.Tenant:
        async with rt.db.connect() as conn:
            return await store.get(conn, tenant_id)

    typer.echo(json.dumps(_tenant_dict(with_runtime(go)), indent=2))


@tenants_app.command("remove")
def tenants_remove(
    tenant_id: Annotated[str, typer.Argument(metavar="ID")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Remove a tenant and everything stored for it."""
    if not yes and sys.stdin.isatty():
        typer.confirm(f"remove tenant {tenant_id} and all its data?", abort=True)
    elif not yes:
        raise ConfigError("refusing to remove without --yes (no terminal to confirm on)")

    async def go(rt: Runtime) -> None:
        async with rt.db.connect() as conn:
            await store.remove(conn, tenant_id)

    with_runtime(go)
    typer.echo(f"removed tenant {tenant_id}")


@tenants_app.command("sync")
def tenants_sync() -> None:
    """Store the config file's tenants now (serve also does this at start)."""

    async def go(rt: Runtime) -> int:
        return len(rt.settings.tenants)

    count = with_runtime(go, sync_tenants=True)
    typer.echo(f"{count} tenant(s) from the config file are stored")


@tenants_app.command("engagement-events")
def tenants_engagement_events(
    tenant_id: Annotated[str, typer.Argument(metavar="ID")],
    mode: Annotated[
        str | None, typer.Option(help="Reporting mode: classic, events or both (omitted: show)")
    ] = None,
    metric_tenant_id: Annotated[
        str | None, typer.Option(help="Optimove's tenant id for metric-<id>.optimove.net")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Override of https://metric-{tenant_id}.optimove.net")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Engagement token (HMAC key); omitted: keep the stored one",
            envvar="OPTIBRIDGE_ENGAGEMENT_TOKEN",
        ),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Back to classic, delete the token")] = False,
) -> None:
    """Show or set the tenant's reporting mode and signed engagement events settings (token never shown).

    Options not given keep their stored values (docs/flows/engagement-events.md)."""

    async def go(rt: Runtime) -> dict[str, object]:
        async with rt.db.connect() as conn:
            if not await store.exists(conn, tenant_id):
                raise ConfigError(f"no tenant {tenant_id!r}")
            if clear:
                await engagement_store.clear_for_tenant(conn, tenant_id)
            elif mode is not None or metric_tenant_id or base_url or token:
                stored = await engagement_store.get(conn, tenant_id)
                try:
                    config = EngagementConfig.model_validate(
                        {
                            "mode": mode or stored.mode,
                            "metric_tenant_id": metric_tenant_id or stored.metric_tenant_id,
                            "base_url": base_url or stored.base_url,
                            "token": token,
                        }
                    )
                except ValidationError as exc:
                    raise ConfigError(describe_validation_error(exc, "engagement events")) from None
                check_engagement_url(config, rt.settings.outbound_policy)
                await engagement_store.set_for_tenant(conn, rt.box, tenant_id, config)
            row = await engagement_store.get(conn, tenant_id)
        return {
            "tenant": tenant_id,
            "mode": row.mode,
            "metric_tenant_id": row.metric_tenant_id,
            "base_url": row.base_url,
            "effective_base_url": metric_base_url(row.base_url, row.metric_tenant_id),
            "has_token": row.has_token,
        }

    typer.echo(json.dumps(with_runtime(go), indent=2))


@tenants_app.command("promotions")
def tenants_promotions(
    tenant_id: Annotated[str, typer.Argument(metavar="ID")],
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Activate promotions for event-5 campaigns")
    ] = None,
    webhook_url: Annotated[str | None, typer.Option(help="The tenant's promotion system")] = None,
    accept_all: Annotated[
        bool, typer.Option("--accept-all", help="No promotion system: activate every targeted customer")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            help='Bearer token for the webhook; omitted: keep the stored one; "": remove it',
            envvar="OPTIBRIDGE_PROMOTIONS_TOKEN",
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Customers per promotion-system call (≤ 10000)")
    ] = None,
    deadline_margin: Annotated[
        int | None, typer.Option(help="Seconds before ClearanceRequiredBy to stop asking")
    ] = None,
    on_deadline: Annotated[str | None, typer.Option(help="report_false or leave")] = None,
) -> None:
    """Show or set the tenant's promotion settings (token never shown). Options not given keep their
    stored values (docs/flows/promotions.md)."""

    async def go(rt: Runtime) -> dict[str, object]:
        async with rt.db.connect() as conn:
            if not await store.exists(conn, tenant_id):
                raise ConfigError(f"no tenant {tenant_id!r}")
            stored = await promotion_store.get_settings(conn, tenant_id)
            if await store.lock_source(conn, tenant_id) == "config":
                raise ConfigError(
                    f"tenant {tenant_id!r} comes from the config file: set [tenants.promotions] there"
                )
            changes = (enabled, webhook_url, token, batch_size, deadline_margin, on_deadline)
            if accept_all or any(c is not None for c in changes):
                try:
                    wanted = PromotionSettingsIn.model_validate(
                        {
                            "enabled": stored.enabled if enabled is None else enabled,
                            "webhook_url": None if accept_all else webhook_url or stored.webhook_url,
                            "bearer_token": token,
                            "batch_size": batch_size or stored.batch_size,
                            "deadline_margin_s": (
                                stored.deadline_margin_s if deadline_margin is None else deadline_margin
                            ),
                            "on_deadline": on_deadline or stored.on_deadline,
                        }
                    )
                except ValidationError as exc:
                    raise ConfigError(describe_validation_error(exc, "promotions")) from None
                await check_destination(wanted, rt.settings.outbound_policy)
                await promotion_store.put_config(conn, rt.box, tenant_id, wanted)
                stored = await promotion_store.get_settings(conn, tenant_id)
        return {"tenant": tenant_id, **stored.__dict__}

    typer.echo(json.dumps(with_runtime(go), indent=2))

"""`optibridge apikeys create|list|revoke`: keys for the admin API and the dashboard.

A key is shown once, when it is made; only its SHA-256 is stored. `--tenant` scopes it to one
tenant; without it, the key is an admin key (every tenant).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from optibridge.cli.context import with_runtime
from optibridge.runtime import Runtime
from optibridge.web import auth

apikeys_app = typer.Typer(help="API keys for the admin API and dashboard.", no_args_is_help=True)


@apikeys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'grafana' or 'alice'")],
    tenant: Annotated[
        str | None, typer.Option(help="Scope the key to this tenant (default: admin key)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Make a key and print it once (it cannot be shown again)."""

    async def go(rt: Runtime) -> tuple[auth.StoredKey, str]:
        async with rt.pool.connection() as conn:
            return await auth.create_key(conn, name, tenant)

    stored, key = with_runtime(go)
    if as_json:
        typer.echo(json.dumps({"id": stored.id, "name": stored.name, "tenant": stored.tenant_id, "key": key}))
        return
    scope = f"tenant {stored.tenant_id}" if stored.tenant_id else "admin (every tenant)"
    typer.echo(f"created API key {stored.id} ({stored.name}), scope: {scope}")
    typer.echo(key)
    typer.echo("store it now: it is not shown again", err=True)


@apikeys_app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """List keys (their first characters only, never the keys)."""

    async def go(rt: Runtime) -> list[auth.StoredKey]:
        async with rt.pool.connection() as conn:
            return await auth.list_keys(conn, include_revoked=all_)

    keys = with_runtime(go)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": k.id,
                        "name": k.name,
                        "tenant": k.tenant_id,
                        "prefix": k.prefix,
                        "created_at": k.created_at.isoformat(),
                        "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
                        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                    }
                    for k in keys
                ],
                indent=2,
            )
        )
        return
    if not keys:
        typer.echo("no API keys")
        return
    typer.echo(f"{'ID':>5}  {'NAME':<20} {'SCOPE':<20} {'KEY':<16} {'LAST USED':<20} REVOKED")
    for k in keys:
        last = k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "never"
        revoked = k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else ""
        scope = k.tenant_id or "admin"
        typer.echo(f"{k.id:>5}  {k.name[:20]:<20} {scope[:20]:<20} {k.prefix + '…':<16} {last:<20} {revoked}")


@apikeys_app.command("revoke")
def revoke(key_id: Annotated[int, typer.Argument(metavar="ID", help="Key id, from `apikeys list`")]) -> None:
    """Revoke a key at once: requests and dashboard sessions with it stop working."""

    async def go(rt: Runtime) -> bool:
        async with rt.pool.connection() as conn:
            return await auth.revoke_key(conn, key_id)

    changed = with_runtime(go)
    typer.echo(f"revoked API key {key_id}" if changed else f"API key {key_id} was already revoked")

"""CLI commands for flows 1-2 and contacts: `listeners`, `templates`, `apps`, `contacts`.

Catalog changes are stored at once and pushed to Optimove by a job (run by `serve`/`worker`);
`--now` pushes in this process instead and reports what Optimove was told.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from optibridge.bootstrap import open_runtime
from optibridge.core.config import Settings
from optibridge.core.errors import ConfigError
from optibridge.runtime import Runtime

T = TypeVar("T")
SettingsLoader = Callable[[], Settings]

listeners_app = typer.Typer(help="Optimove event listeners (flow 1).", no_args_is_help=True)
templates_app = typer.Typer(help="Templates and their sync with Optimove (flow 2).", no_args_is_help=True)
apps_app = typer.Typer(help="Push apps and their sync with Optimove.", no_args_is_help=True)
contacts_app = typer.Typer(help="Addresses kept outside Optimove.", no_args_is_help=True)

_loader: list[SettingsLoader] = []


def install(app: typer.Typer, load_settings: SettingsLoader) -> None:
    _loader.append(load_settings)
    app.add_typer(listeners_app, name="listeners")
    app.add_typer(templates_app, name="templates")
    app.add_typer(apps_app, name="apps")
    app.add_typer(contacts_app, name="contacts")
    app.add_typer(campaigns_app, name="campaigns")


def _with_runtime(fn: Callable[[Runtime], Awaitable[T]]) -> T:
    settings = _loader[0]()

    async def go() -> T:
        async with open_runtime(settings, upgrade=settings.embedded, pool_size=4) as rt:
            return await fn(rt)

    return asyncio.run(go())


Tenant = Annotated[str, typer.Argument(metavar="TENANT", help="Tenant id")]
Channel = Annotated[str, typer.Argument(metavar="CHANNEL", help="Channel name (e.g. email)")]
Now = Annotated[bool, typer.Option("--now", help="Push to Optimove now, in this process")]


# -- listeners ---------------------------------------------------------------------------------


@listeners_app.command("sync")
def listeners_sync(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change")] = False,
) -> None:
    """Register our listener URLs with Optimove, changing only what differs."""
    from optibridge.intake import registration
    from optibridge.store import tenants

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

    for line in _with_runtime(go):
        typer.echo(line)


@listeners_app.command("list")
def listeners_list(tenant: Tenant) -> None:
    """Show our listener URLs and what Optimove has registered."""
    from optibridge.intake import registration
    from optibridge.store import listener_tokens, tenants

    async def go(rt: Runtime) -> dict[str, Any]:
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

    typer.echo(json.dumps(_with_runtime(go), indent=2))


@listeners_app.command("rotate-token")
def listeners_rotate(
    tenant: Tenant,
    grace_hours: Annotated[float, typer.Option(help="How long the old token keeps working")] = 24.0,
) -> None:
    """Replace the tenant's listener token (then run `listeners sync`)."""
    from datetime import timedelta

    from optibridge.store import listener_tokens

    async def go(rt: Runtime) -> None:
        async with rt.pool.connection() as conn:
            await listener_tokens.rotate(
                conn, rt.box, tenant, datetime.now(UTC), timedelta(hours=grace_hours)
            )

    _with_runtime(go)
    typer.echo(
        f"rotated; the old token works for {grace_hours:g} more hours: run `optibridge listeners sync`"
    )


# -- templates ---------------------------------------------------------------------------------


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _spec(
    template_id: int,
    name: str,
    body_file: Path,
    subject: str | None,
    text_file: Path | None,
    app_id: str | None,
    default: list[str] | None,
) -> Any:
    from optibridge.catalog.models import TemplateSpec

    defaults = {}
    for item in default or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--default {item!r}: expected NAME=VALUE")
        defaults[key] = value
    data = {
        "template_id": template_id,
        "name": name,
        "body": _read(body_file),
        "subject": subject,
        "text_body": _read(text_file),
        "app_id": app_id,
        "defaults": defaults,
    }
    return TemplateSpec.parse({k: v for k, v in data.items() if v is not None}, "template")


async def _push_now(rt: Runtime, tenant: str, channel: str) -> str:
    from optibridge.catalog.tasks import run_sync

    report = await run_sync(rt, tenant, channel)
    return f"pushed to Optimove: added/renamed {report.added or 'none'}, deleted {report.deleted or 'none'}"


def _write_template(create: bool) -> Callable[..., None]:
    def command(
        tenant: Tenant,
        channel: Channel,
        template_id: Annotated[int, typer.Option("--id", help="Template id (a positive integer)")],
        name: Annotated[str, typer.Option(help="Name shown to marketers in Optimove")],
        body_file: Annotated[Path, typer.Option("--body", help="File with the body (HTML for e-mail)")],
        subject: Annotated[str | None, typer.Option(help="Subject (e-mail) or title (push)")] = None,
        text_file: Annotated[Path | None, typer.Option("--text", help="Plain-text part (e-mail)")] = None,
        app_id: Annotated[str | None, typer.Option(help="Push app id")] = None,
        default: Annotated[
            list[str] | None, typer.Option(help="NAME=VALUE used when an attribute is missing")
        ] = None,
        now: Now = False,
    ) -> None:
        from optibridge.catalog import store

        spec = _spec(template_id, name, body_file, subject, text_file, app_id, default)

        async def go(rt: Runtime) -> str:
            async with rt.pool.connection() as conn:
                outcome = await store.upsert(conn, rt.job_app, tenant, channel, spec, create=create)
            return outcome + ("; " + await _push_now(rt, tenant, channel) if now else "")

        typer.echo(f"template {template_id}: {_with_runtime(go)}")

    command.__doc__ = (
        "Add a template (refused if the id exists)." if create else "Replace a template's content or name."
    )
    return command


templates_app.command("add")(_write_template(create=True))
templates_app.command("update")(_write_template(create=False))


@templates_app.command("rename")
def templates_rename(
    tenant: Tenant,
    channel: Channel,
    template_id: Annotated[int, typer.Argument(metavar="ID")],
    name: Annotated[str, typer.Argument(metavar="NAME")],
    now: Now = False,
) -> None:
    """Rename a template (Optimove shows the new name)."""
    from optibridge.catalog import store

    async def go(rt: Runtime) -> str:
        async with rt.pool.connection() as conn:
            await store.rename(conn, rt.job_app, tenant, channel, template_id, name)
        return "renamed" + ("; " + await _push_now(rt, tenant, channel) if now else "")

    typer.echo(f"template {template_id}: {_with_runtime(go)}")


@templates_app.command("delete")
def templates_delete(
    tenant: Tenant,
    channel: Channel,
    template_id: Annotated[int, typer.Argument(metavar="ID")],
    now: Now = False,
) -> None:
    """Delete a template (and from Optimove's list)."""
    from optibridge.catalog import store

    async def go(rt: Runtime) -> str:
        async with rt.pool.connection() as conn:
            await store.delete(conn, rt.job_app, tenant, channel, template_id)
        return "deleted" + ("; " + await _push_now(rt, tenant, channel) if now else "")

    typer.echo(f"template {template_id}: {_with_runtime(go)}")


@templates_app.command("list")
def templates_list(
    tenant: Tenant,
    channel: Annotated[str | None, typer.Argument(metavar="[CHANNEL]")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List templates with the attributes they use and whether Optimove has them."""
    from optibridge.catalog import store

    async def go(rt: Runtime) -> list[Any]:
        async with rt.pool.connection() as conn:
            return await store.list_templates(conn, tenant, channel)

    rows = _with_runtime(go)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "channel": t.channel_name,
                        "id": t.template_id,
                        "name": t.name,
                        "version": t.version,
                        "attributes": t.attributes,
                        "synced": t.pushed_name == t.name,
                    }
                    for t in rows
                ],
                indent=2,
            )
        )
        return
    for t in rows:
        state = "synced" if t.pushed_name == t.name else "pending sync"
        typer.echo(
            f"{t.channel_name:<10} {t.template_id:>8}  v{t.version:<3} {state:<12} {t.name}  "
            f"[{', '.join(t.attributes)}]"
        )


@templates_app.command("import")
def templates_import(
    tenant: Tenant,
    folder: Annotated[Path, typer.Argument(metavar="DIR")],
    now: Now = False,
) -> None:
    """Import a folder of template files with TOML front matter (idempotent)."""
    from optibridge.catalog import importer, store
    from optibridge.store import tenants

    async def go(rt: Runtime) -> list[str]:
        async with rt.pool.connection() as conn:
            t = await tenants.get(conn, tenant)
            files = importer.read_folder(folder, {c.name for c in t.channels})
            out = []
            # All or nothing: one bad template leaves the catalog as it was.
            async with conn.transaction():
                for tf in files:
                    outcome = await store.upsert(conn, rt.job_app, tenant, tf.channel, tf.spec, create=False)
                    out.append(f"{tf.path}: template {tf.spec.template_id} on {tf.channel}: {outcome}")
        if now:
            for ch in sorted({tf.channel for tf in files}):
                out.append(f"{ch}: {await _push_now(rt, tenant, ch)}")
        return out

    for line in _with_runtime(go):
        typer.echo(line)


@templates_app.command("sync")
def templates_sync(
    tenant: Tenant,
    channel: Annotated[str | None, typer.Argument(metavar="[CHANNEL]")] = None,
    delete_foreign: Annotated[
        bool, typer.Option("--delete-foreign", help="Also delete Optimove templates that are not ours")
    ] = False,
) -> None:
    """Compare with Optimove's list now and repair any drift."""
    from optibridge.catalog.tasks import run_sync
    from optibridge.store import tenants

    async def go(rt: Runtime) -> list[str]:
        async with rt.pool.connection() as conn:
            t = await tenants.get(conn, tenant)
        names = [channel] if channel else [c.name for c in t.channels]
        out = []
        for name in names:
            r = await run_sync(rt, tenant, name, delete_foreign=delete_foreign)
            out.append(
                f"{name}: added/renamed {r.added or 'none'}, deleted {r.deleted or 'none'}, "
                f"left alone (not ours) {r.foreign or 'none'}"
            )
        return out

    for line in _with_runtime(go):
        typer.echo(line)


# -- apps --------------------------------------------------------------------------------------


@apps_app.command("add")
def apps_add(
    tenant: Tenant,
    channel: Channel,
    app_id: Annotated[str, typer.Argument(metavar="APP_ID")],
    name: Annotated[str, typer.Argument(metavar="NAME")],
) -> None:
    """Add (or rename) a push app."""
    from optibridge.catalog import store

    async def go(rt: Runtime) -> None:
        async with rt.pool.connection() as conn:
            await store.add_app(conn, rt.job_app, tenant, channel, app_id, name)

    _with_runtime(go)
    typer.echo(f"app {app_id}: saved; sync queued")


@apps_app.command("delete")
def apps_delete(
    tenant: Tenant, channel: Channel, app_id: Annotated[str, typer.Argument(metavar="APP_ID")]
) -> None:
    """Delete a push app."""
    from optibridge.catalog import store

    async def go(rt: Runtime) -> None:
        async with rt.pool.connection() as conn:
            await store.delete_app(conn, rt.job_app, tenant, channel, app_id)

    _with_runtime(go)
    typer.echo(f"app {app_id}: deleted; sync queued")


# -- contacts ----------------------------------------------------------------------------------


@contacts_app.command("import")
def contacts_import(tenant: Tenant, file: Annotated[Path, typer.Argument(metavar="FILE.csv")]) -> None:
    """Load addresses from CSV (customer_id, email, phone, device_token, other columns as attributes)."""
    from optibridge.store import contacts, tenants

    async def go(rt: Runtime) -> contacts.ImportReport:
        async with rt.pool.connection() as conn:
            await tenants.get(conn, tenant)
            return await contacts.import_csv(conn, tenant, file)

    report = _with_runtime(go)
    typer.echo(f"{report.rows} row(s): {report.upserted} added or changed, {report.skipped} unchanged")


# -- campaigns ---------------------------------------------------------------------------------

campaigns_app = typer.Typer(help="Campaigns: progress, pause, resume, cancel.", no_args_is_help=True)
CampaignId = Annotated[int, typer.Argument(metavar="CAMPAIGN")]


@campaigns_app.command("list")
def campaigns_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    limit: Annotated[int, typer.Option(help="Newest first, at most this many")] = 50,
) -> None:
    """Campaigns with their progress (sent/total)."""
    from optibridge.campaigns import CampaignFilter, list_campaigns

    async def go(rt: Runtime) -> list[Any]:
        async with rt.pool.connection() as conn:
            return await list_campaigns(conn, CampaignFilter(tenant_id=tenant), after=None, limit=limit)

    rows = _with_runtime(go)
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
    from optibridge.campaigns import get_campaign

    async def go(rt: Runtime) -> Any:
        async with rt.pool.connection() as conn:
            return await get_campaign(conn, tenant, channel, campaign_id)

    detail = _with_runtime(go)
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


def _act(action: str) -> Callable[..., None]:
    def command(tenant: Tenant, channel: Channel, campaign_id: CampaignId) -> None:
        from optibridge.campaigns import act

        async def go(rt: Runtime) -> str:
            async with rt.pool.connection() as conn:
                return await act(conn, tenant, channel, campaign_id, action)  # type: ignore[arg-type]

        typer.echo(f"campaign {campaign_id} on {tenant}/{channel}: {_with_runtime(go)}")

    command.__doc__ = {
        "pause": "Stop sending (takes effect within one slice); messages stay pending.",
        "resume": "Send again after a pause.",
        "cancel": "Cancel every message not yet sent (final).",
    }[action]
    return command


for _action in ("pause", "resume", "cancel"):
    campaigns_app.command(_action)(_act(_action))

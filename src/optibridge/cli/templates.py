"""`optibridge templates ...`: templates and their sync with Optimove (flow 2).

Catalog changes are stored at once and pushed to Optimove by a job (run by `serve`/`worker`);
`--now` pushes in this process instead and reports what Optimove was told.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from optibridge.catalog import importer, store
from optibridge.catalog.models import TemplateSpec
from optibridge.catalog.tasks import run_sync
from optibridge.cli.context import Channel, Now, Tenant, with_runtime
from optibridge.core.errors import ConfigError
from optibridge.runtime import Runtime
from optibridge.store import tenants
from optibridge.store.templates import StoredTemplate

templates_app = typer.Typer(help="Templates and their sync with Optimove (flow 2).", no_args_is_help=True)


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
) -> TemplateSpec:
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
        spec = _spec(template_id, name, body_file, subject, text_file, app_id, default)

        async def go(rt: Runtime) -> str:
            async with rt.pool.connection() as conn:
                outcome = await store.upsert(
                    conn, rt.job_app, tenant, channel, spec, create=create,
                    render_timeout_s=rt.settings.render_timeout_s,
                )  # fmt: skip
            return outcome + ("; " + await _push_now(rt, tenant, channel) if now else "")

        typer.echo(f"template {template_id}: {with_runtime(go, pool_size=4)}")

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

    async def go(rt: Runtime) -> str:
        async with rt.pool.connection() as conn:
            await store.rename(conn, rt.job_app, tenant, channel, template_id, name)
        return "renamed" + ("; " + await _push_now(rt, tenant, channel) if now else "")

    typer.echo(f"template {template_id}: {with_runtime(go, pool_size=4)}")


@templates_app.command("delete")
def templates_delete(
    tenant: Tenant,
    channel: Channel,
    template_id: Annotated[int, typer.Argument(metavar="ID")],
    now: Now = False,
) -> None:
    """Delete a template (and from Optimove's list)."""

    async def go(rt: Runtime) -> str:
        async with rt.pool.connection() as conn:
            await store.delete(conn, rt.job_app, tenant, channel, template_id)
        return "deleted" + ("; " + await _push_now(rt, tenant, channel) if now else "")

    typer.echo(f"template {template_id}: {with_runtime(go, pool_size=4)}")


@templates_app.command("list")
def templates_list(
    tenant: Tenant,
    channel: Annotated[str | None, typer.Argument(metavar="[CHANNEL]")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List templates with the attributes they use and whether Optimove has them."""

    async def go(rt: Runtime) -> list[StoredTemplate]:
        async with rt.pool.connection() as conn:
            return await store.list_templates(conn, tenant, channel)

    rows = with_runtime(go, pool_size=4)
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

    async def go(rt: Runtime) -> list[str]:
        async with rt.pool.connection() as conn:
            t = await tenants.get(conn, tenant)
            files = importer.read_folder(folder, {c.name for c in t.channels})
            out = []
            # All or nothing: one bad template leaves the catalog as it was.
            async with conn.transaction():
                for tf in files:
                    # Each is checked against the render limits (a trial render) before it is stored.
                    outcome = await store.upsert(
                        conn, rt.job_app, tenant, tf.channel, tf.spec, create=False,
                        render_timeout_s=rt.settings.render_timeout_s,
                    )  # fmt: skip
                    out.append(f"{tf.path}: template {tf.spec.template_id} on {tf.channel}: {outcome}")
        if now:
            for ch in sorted({tf.channel for tf in files}):
                out.append(f"{ch}: {await _push_now(rt, tenant, ch)}")
        return out

    for line in with_runtime(go, pool_size=4):
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

    for line in with_runtime(go, pool_size=4):
        typer.echo(line)

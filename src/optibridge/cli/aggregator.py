"""`optibridge aggregator set|show|handshake|remove`: an SMS channel in Optimove's aggregator mode
(docs/flows/sms-aggregator.md).

The app-api-key and shared secret are read from the environment or a hidden prompt, never from the
command line (where `ps` and the shell history would keep them)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from optibridge.channels.setting_checks import check_http_url
from optibridge.cli.context import Tenant, with_runtime
from optibridge.core.errors import ConfigError
from optibridge.intake import aggregator_intake
from optibridge.intake.aggregator_tasks import defer_handshake
from optibridge.runtime import Runtime
from optibridge.store import aggregator as store

aggregator_app = typer.Typer(help="SMS channels in Optimove's aggregator mode (§12).", no_args_is_help=True)
ChannelId = Annotated[
    int, typer.Argument(metavar="CHANNEL_ID", help="Optimove's ChannelID of the SMS channel")
]


def _shown(ch: store.AggregatorChannel) -> dict[str, Any]:
    return {
        "channel_id": ch.channel_id,
        "base_url": ch.base_url,
        "receipt_wait_s": ch.receipt_wait_s,
        "handshake_url": ch.handshake_url.replace("{token}", "***") if ch.handshake_url else None,
        "handshake_at": ch.handshake_at.isoformat() if ch.handshake_at else None,
        "handshake_error": ch.handshake_error,
    }


@aggregator_app.command("set")
def aggregator_set(
    tenant: Tenant,
    channel_id: ChannelId,
    base_url: Annotated[str, typer.Option(help="<BASE_URL> from Optimove's SMS Config page")],
    app_api_key: Annotated[
        str,
        typer.Option(
            envvar="OPTIBRIDGE_AGGREGATOR_APP_API_KEY", prompt=True, hide_input=True, show_default=False
        ),
    ],
    shared_secret: Annotated[
        str,
        typer.Option(
            envvar="OPTIBRIDGE_AGGREGATOR_SHARED_SECRET", prompt=True, hide_input=True, show_default=False
        ),
    ],
    receipt_wait_s: Annotated[
        int, typer.Option(min=0, max=86400, help="Wait for a receipt before reporting")
    ] = 0,
    rotate_key: Annotated[bool, typer.Option("--rotate-key", help="Issue a new aggregator key")] = False,
) -> None:
    """Put an SMS channel in aggregator mode and run the handshake (queued for retry if it fails)."""
    try:
        url = check_http_url(base_url.strip(), base_only=True)
    except ValueError as exc:
        raise ConfigError(f"--base-url {exc}") from None
    for name, value in (("app-api-key", app_api_key), ("shared-secret", shared_secret)):
        if not value.strip() or len(value) > 500 or any(c in value for c in "\r\n\x00"):
            raise ConfigError(f"--{name} must be 1-500 characters on one line")

    async def go(rt: Runtime) -> tuple[dict[str, Any], str]:
        reason = await rt.settings.outbound_policy.check_resolved(url)
        if reason is not None:
            raise ConfigError(f"--base-url refused by the outbound policy: {reason}")
        async with rt.pool.connection() as conn:
            ch, changed = await store.configure(
                conn, rt.box, tenant, channel_id, base_url=url, app_api_key=app_api_key.strip(),
                shared_secret=shared_secret.strip(), receipt_wait_s=receipt_wait_s, rotate_key=rotate_key,
            )  # fmt: skip
        if not changed and ch.handshake_error is None and ch.handshake_at is not None:
            return _shown(ch), "unchanged; handshake already done"
        result = await aggregator_intake.handshake(rt, tenant, channel_id)
        note = "handshake done"
        if not result.ok:
            note = f"handshake failed: {result.error}"
            if result.transient:
                async with rt.pool.connection() as conn:
                    await defer_handshake(conn, rt.job_app, tenant, channel_id)
                note += " (queued to retry)"
        async with rt.pool.connection() as conn:
            again = await store.get(conn, rt.box, tenant, channel_id)
        return _shown(again or ch), note

    shown, note = with_runtime(go, pool_size=2)
    typer.echo(json.dumps(shown, indent=2))
    typer.echo(note, err=True)


@aggregator_app.command("show")
def aggregator_show(tenant: Tenant, channel_id: ChannelId) -> None:
    """The channel's aggregator settings (never its secrets) and delivery-report counts."""

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.pool.connection() as conn:
            ch = await store.get(conn, rt.box, tenant, channel_id)
            if ch is None:
                raise ConfigError(f"channel {channel_id} of tenant {tenant!r} is not in aggregator mode")
            counts = await store.report_counts(conn, tenant, channel_id)
        return _shown(ch) | {
            "reports_sent": counts.reported,
            "reports_pending": counts.pending,
            "reports_failing": counts.failing,
        }

    typer.echo(json.dumps(with_runtime(go, pool_size=2), indent=2))


@aggregator_app.command("handshake")
def aggregator_handshake(tenant: Tenant, channel_id: ChannelId) -> None:
    """Register our campaignSendUrl and aggregator key with Optimove now."""

    async def go(rt: Runtime) -> aggregator_intake.HandshakeResult:
        return await aggregator_intake.handshake(rt, tenant, channel_id)

    result = with_runtime(go, pool_size=2)
    if not result.ok:
        raise ConfigError(f"handshake failed: {result.error}")
    typer.echo("handshake done")


@aggregator_app.command("remove")
def aggregator_remove(tenant: Tenant, channel_id: ChannelId) -> None:
    """Leave aggregator mode: batches are refused from then on."""

    async def go(rt: Runtime) -> bool:
        async with rt.pool.connection() as conn:
            return await store.remove(conn, tenant, channel_id)

    if not with_runtime(go, pool_size=2):
        raise ConfigError(f"channel {channel_id} of tenant {tenant!r} is not in aggregator mode")
    typer.echo("removed")

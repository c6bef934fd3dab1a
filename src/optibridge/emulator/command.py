"""`optibridge emulator`: run the Optimove emulator with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the `emulator` command to the main CLI."""

    @app.command("emulator")
    def emulator(
        host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port")] = 8900,
        no_rate_limit: Annotated[
            bool, typer.Option("--no-rate-limit", help="turn off the 50/10 s and login limits")
        ] = False,
        token_ttl: Annotated[float, typer.Option(help="idle seconds before a login token expires")] = 1200.0,
        seed: Annotated[int, typer.Option(help="seed for generated data and faults")] = 0,
        tenant: Annotated[
            list[str] | None,
            typer.Option(help="pre-create a tenant: ID:API_KEY, or ID:USERNAME:PASSWORD (repeatable)"),
        ] = None,
        log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
    ) -> None:
        """Run the Optimove emulator (API under /current, control API under /emulator)."""
        # Heavy imports here, so the rest of the CLI starts fast.
        import uvicorn

        from optibridge.emulator.app import create_app
        from optibridge.emulator.config import EmulatorConfig, TenantSpec

        tenants = []
        for text in tenant or []:
            parts = text.split(":")
            if len(parts) == 2:
                tenants.append(TenantSpec(tenant_id=parts[0], api_keys=[parts[1]]))
            elif len(parts) == 3:
                tenants.append(TenantSpec(tenant_id=parts[0], username=parts[1], password=parts[2]))
            else:
                raise typer.BadParameter("use ID:API_KEY or ID:USERNAME:PASSWORD", param_hint="--tenant")
        config = EmulatorConfig(
            seed=seed,
            token_ttl_s=token_ttl,
            rate_limit_enabled=not no_rate_limit,
            tenants=tenants,
        )
        typer.echo(f"Optimove emulator on http://{host}:{port} (control API: /emulator, docs: /docs)")
        uvicorn.run(
            create_app(config),
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
        )

"""Tenant pages: tenants with their channels and provider errors, the Optimove probe fragment."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from optibridge.core import telemetry
from optibridge.core.errors import NotFoundError
from optibridge.web.api.tenants import load_tenants
from optibridge.web.auth import ApiError
from optibridge.web.dashboard.common import Dashboard


def add_routes(api: APIRouter, ui: Dashboard) -> None:
    runtime = ui.runtime

    @api.get("/tenants")
    async def tenants_page(request: Request) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        async with runtime.pool.connection() as conn:
            tenants = await load_tenants(conn, viewer.principal.tenant_id, None, 1000)
        # Counted per tenant: a tenant-scoped viewer sees its own tenant's errors only.
        errors = sorted(telemetry.provider_errors_by_tenant(tenant=viewer.principal.tenant_id).items())
        return ui.page(
            request, "tenants.html", viewer=viewer, nav="tenants", tenants=tenants, provider_errors=errors
        )

    @api.get("/tenants/{tenant}/probe")
    async def tenant_probe(request: Request, tenant: str) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        try:
            viewer.principal.require_tenant(tenant)
            result = await ui.probes.get(tenant)
        except ApiError as exc:
            return ui.error(request, viewer, exc)
        except NotFoundError as exc:
            return ui.error(request, viewer, ApiError(404, "not found", str(exc)))
        return ui.page(request, "_probe.html", viewer=viewer, r=result)

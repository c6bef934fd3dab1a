"""Template pages: the catalog list, one template with a preview from sample attributes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec
from optibridge.core.errors import NotFoundError
from optibridge.web.api.templates import PreviewRequest, checked, preview_off_loop
from optibridge.web.api.tenants import load_tenants
from optibridge.web.auth import ApiError
from optibridge.web.dashboard.common import Dashboard, Viewer


def parse_sample(text: str) -> dict[str, str | int | float | bool | None]:
    """Sample attributes from the preview form: a JSON object, or NAME=value lines."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except RecursionError:  # deeper than the parser's stack: refused like any bad JSON
            raise ValueError("the JSON is nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("the JSON must be an object")
        return {
            str(k): v if isinstance(v, str | int | float | bool) or v is None else str(v)
            for k, v in data.items()
        }
    out: dict[str, str | int | float | bool | None] = {}
    for number_, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"line {number_}: write NAME=value")
        out[name.strip()] = value.strip()
    return out


def add_routes(api: APIRouter, ui: Dashboard) -> None:
    runtime = ui.runtime

    @api.get("/templates")
    async def templates_page(request: Request) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        async with runtime.pool.connection() as conn:
            tenants = await load_tenants(conn, viewer.principal.tenant_id, None, 1000)
            rows = []
            for t in tenants:
                rows += await catalog.list_templates(conn, t.id)
        return ui.page(request, "templates.html", viewer=viewer, nav="templates", templates=rows)

    async def template_view(
        request: Request, viewer: Viewer, tenant: str, channel: str, template_id: int, sample_text: str | None
    ) -> Response:
        try:
            viewer.principal.require_tenant(tenant)
            async with runtime.pool.connection() as conn:
                t = await catalog.get(conn, tenant, channel, template_id)
                kind, channel_id = await catalog.channel_kind(conn, tenant, channel)
        except ApiError as exc:
            return ui.error(request, viewer, exc)
        except NotFoundError as exc:
            return ui.error(request, viewer, ApiError(404, "not found", str(exc)))
        spec = TemplateSpec(
            template_id=t.template_id,
            name=t.name,
            body=t.body,
            subject=t.subject,
            text_body=t.text_body,
            app_id=t.app_id,
            defaults=t.defaults,
        )
        preview, problem = None, None
        if sample_text is None:
            sample_text = "\n".join(f"{a}=" for a in t.attributes)
        else:
            try:  # compiled and rendered in a render thread, under the deadline (api/templates.py)
                timeout_s = runtime.settings.render_timeout_s
                compiled = await checked(kind, spec, timeout_s=timeout_s, trial=False)
                preview = await preview_off_loop(
                    compiled,
                    PreviewRequest(attributes=parse_sample(sample_text)),
                    tenant_id=tenant,
                    channel_id=channel_id,
                    template_id=template_id,
                    now=datetime.now(UTC),
                    timeout_s=timeout_s,
                )
            except ApiError as exc:
                problem = exc.detail
            except ValueError as exc:
                problem = f"sample attributes: {exc}"
        return ui.page(
            request,
            "template.html",
            viewer=viewer,
            nav="templates",
            t=t,
            kind=kind,
            sample=sample_text,
            preview=preview,
            problem=problem,
        )

    @api.get("/templates/{tenant}/{channel}/{template_id}")
    async def template_page(request: Request, tenant: str, channel: str, template_id: int) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        return await template_view(request, viewer, tenant, channel, template_id, None)

    @api.post("/templates/{tenant}/{channel}/{template_id}/preview")
    async def template_preview(request: Request, tenant: str, channel: str, template_id: int) -> Response:
        viewer = await ui.viewer(request)
        if viewer is None:
            return ui.login_redirect(request)
        if refused := await ui.csrf_refused(request, viewer):
            return refused
        form = await request.form()
        sample = form.get("sample")
        return await template_view(
            request, viewer, tenant, channel, template_id, sample if isinstance(sample, str) else ""
        )

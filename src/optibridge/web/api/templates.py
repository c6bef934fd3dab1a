"""Templates of a channel, through the catalog (each change also queues the sync with Optimove).

A template that does not parse is refused with 422 naming the part, line and reason, before
anything is stored; so is one that exceeds the render limits or, for a webhook, whose JSON body a
value could reshape (a trial render with sample values: `rendering.check_limits`). Preview renders
a stored (or a proposed) template for a sample customer. Compiling and rendering run in a render
thread under `render_timeout_s`, never on the event loop (a preview of a heavy template once held
every request of every tenant).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from optibridge.catalog import store as catalog
from optibridge.catalog.models import TemplateSpec, json_parts_for, parts_for
from optibridge.core.errors import ConfigError, ConflictError, NotFoundError
from optibridge.rendering import (
    BUILTIN_VARIABLES,
    CompiledTemplate,
    RenderError,
    RenderLimitError,
    TemplateRefusedError,
    TemplateSyntaxError,
    check_limits,
    compile_template,
    in_render_thread,
)
from optibridge.rendering.limits import DEFAULT_RENDER_TIMEOUT_S
from optibridge.runtime import Runtime
from optibridge.web.api.common import (
    CONFLICT,
    NOT_FOUND,
    Auth,
    ChannelName,
    CursorParam,
    LimitParam,
    Page,
    SafeRoute,
    TemplateId,
    TenantId,
    decode_cursor,
    page_of,
    translate,
)
from optibridge.web.auth import ApiError

SampleValue = str | int | float | bool | None


class TemplateOut(BaseModel):
    tenant_id: str
    channel: str
    template_id: int
    name: str
    subject: str | None
    body: str
    text_body: str | None
    app_id: str | None
    defaults: dict[str, str]
    attributes: list[str] = Field(description="Customer attributes the template uses")
    version: int
    synced: bool = Field(description="Optimove was last told this name")
    updated_at: datetime


class TemplateContent(BaseModel):
    """A template's content, for replacing one (the id is in the path)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    body: str = Field(min_length=1, max_length=1_000_000)
    subject: str | None = Field(default=None, max_length=1000)
    text_body: str | None = Field(default=None, max_length=1_000_000)
    app_id: str | None = Field(default=None, min_length=1, max_length=255)
    defaults: dict[str, str] = Field(default_factory=dict)


class Rename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attributes: dict[str, SampleValue] = Field(
        default_factory=dict, description='The sample customer\'s attributes, e.g. {"FIRST_NAME": "Ada"}'
    )
    customer_id: str = Field(default="sample-customer", min_length=1, max_length=200)


class DraftPreviewRequest(PreviewRequest):
    template: TemplateSpec


class PreviewOut(BaseModel):
    parts: dict[str, str] = Field(description="Rendered parts: subject/html/text (e-mail), title/text (push)")
    attributes: list[str] = Field(description="Customer attributes the template uses")
    missing: list[str] = Field(description="Used attributes the sample lacks that a default filled")


def _out(t: catalog.StoredTemplate) -> TemplateOut:
    return TemplateOut(
        tenant_id=t.tenant_id,
        channel=t.channel_name,
        template_id=t.template_id,
        name=t.name,
        subject=t.subject,
        body=t.body,
        text_body=t.text_body,
        app_id=t.app_id,
        defaults=t.defaults,
        attributes=list(t.attributes),
        version=t.version,
        synced=t.pushed_name == t.name,
        updated_at=t.updated_at,
    )


def check_template(kind: str, spec: TemplateSpec) -> CompiledTemplate:
    """Compile, or ApiError 422 naming the part, line and reason."""
    if kind == "email" and not spec.subject:
        raise ApiError(
            422,
            "invalid template",
            "an e-mail template needs a subject",
            extra={"field": "subject", "part": "subject", "reason": "missing"},
        )
    try:
        return compile_template(
            parts_for(kind, spec), defaults=spec.defaults, json_parts=json_parts_for(kind)
        )
    except TemplateSyntaxError as exc:
        raise ApiError(
            422,
            "invalid template",
            f"template {spec.template_id} does not parse: {exc}",
            extra={"part": exc.part, "line": exc.line, "reason": exc.reason},
        ) from None


def check_saveable(kind: str, spec: TemplateSpec, *, timeout_s: float) -> CompiledTemplate:
    """`check_template`, then the limits and JSON-body check (a trial render): ApiError 422 naming
    the part and reason if the template may not be saved. CPU work: run it in a render thread."""
    compiled = check_template(kind, spec)
    try:
        check_limits(compiled, timeout_s=timeout_s)
    except TemplateRefusedError as exc:
        raise ApiError(
            422,
            "invalid template",
            f"template {spec.template_id} refused: {exc}",
            extra={"part": exc.part, "reason": exc.reason},
        ) from None
    return compiled


def _backstop(timeout_s: float) -> float:
    # Two renders (a JSON part's check renders twice) and a compile, plus scheduling slack.
    return timeout_s * 3 + 2


async def checked(kind: str, spec: TemplateSpec, *, timeout_s: float, trial: bool) -> CompiledTemplate:
    """Compile (and with `trial`, check for saving) in a render thread, off the event loop."""
    try:
        if trial:
            return await in_render_thread(
                lambda: check_saveable(kind, spec, timeout_s=timeout_s), backstop_s=_backstop(timeout_s)
            )
        return await in_render_thread(lambda: check_template(kind, spec), backstop_s=_backstop(timeout_s))
    except RenderLimitError as exc:
        raise ApiError(
            422,
            "invalid template",
            f"template {spec.template_id} refused: {exc}",
            extra={"reason": str(exc)},
        ) from None


async def preview_off_loop(
    compiled: CompiledTemplate,
    request: PreviewRequest,
    *,
    tenant_id: str,
    channel_id: int,
    template_id: int,
    now: datetime,
    timeout_s: float,
) -> PreviewOut:
    """`render_preview` in a render thread under the deadline (ApiError 422 past it)."""
    try:
        return await in_render_thread(
            lambda: render_preview(
                compiled,
                request,
                tenant_id=tenant_id,
                channel_id=channel_id,
                template_id=template_id,
                now=now,
                timeout_s=timeout_s,
            ),
            backstop_s=_backstop(timeout_s),
        )
    except RenderLimitError as exc:
        raise ApiError(422, "render failed", str(exc), extra={"reason": str(exc)}) from None


def render_preview(
    compiled: CompiledTemplate,
    request: PreviewRequest,
    *,
    tenant_id: str,
    channel_id: int,
    template_id: int,
    now: datetime,
    timeout_s: float = DEFAULT_RENDER_TIMEOUT_S,
) -> PreviewOut:
    builtins: dict[str, Any] = {
        "customer_id": request.customer_id,
        "campaign_id": 0,
        "template_id": template_id,
        "channel_id": channel_id,
        "message_id": "00000000-0000-0000-0000-000000000000",
        "tenant_id": tenant_id,
        "unsubscribe_url": "https://example.invalid/unsubscribe/preview",
        "scheduled_time": now.isoformat(timespec="seconds"),
        "now": now.isoformat(timespec="seconds"),
    }
    # A built-in added later renders empty here rather than failing every preview.
    builtins |= {name: "" for name in BUILTIN_VARIABLES if name not in builtins}
    given = {k: v for k, v in request.attributes.items() if v is not None}
    try:
        parts = compiled.render({**builtins, **given}, timeout_s=timeout_s)
    except RenderLimitError as exc:
        raise ApiError(422, "render failed", str(exc), extra={"part": exc.part, "reason": str(exc)}) from None
    except RenderError as exc:
        absent = [a for a in compiled.attributes if a not in given and a not in compiled.defaults]
        hint = f" (the sample has no {', '.join(absent)})" if absent else ""
        raise ApiError(422, "render failed", f"{exc}{hint}", extra={"field": "attributes"}) from None
    missing = [a for a in compiled.attributes if a not in given]
    return PreviewOut(parts=parts, attributes=list(compiled.attributes), missing=missing)


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(route_class=SafeRoute, tags=["templates"])
    base = "/tenants/{tenant_id}/channels/{channel}/templates"
    timeout_s = runtime.settings.render_timeout_s

    async def kind_of(conn: Any, tenant_id: str, channel: str) -> tuple[str, int]:
        try:
            return await catalog.channel_kind(conn, tenant_id, channel)
        except NotFoundError as exc:
            raise translate(exc) from None

    async def stored(tenant_id: str, channel: str, template_id: int) -> TemplateOut:
        async with runtime.pool.connection() as conn:
            try:
                return _out(await catalog.get(conn, tenant_id, channel, template_id))
            except NotFoundError as exc:
                raise translate(exc) from None

    async def save(tenant_id: str, channel: str, spec: TemplateSpec, *, create: bool) -> str:
        async with runtime.pool.connection() as conn:
            kind, _ = await kind_of(conn, tenant_id, channel)
        # Checked before a connection is held for the save; the catalog checks again (other paths).
        await checked(kind, spec, timeout_s=timeout_s, trial=True)
        async with runtime.pool.connection() as conn:
            try:
                return await catalog.upsert(
                    conn, runtime.job_app, tenant_id, channel, spec, create=create, render_timeout_s=timeout_s
                )
            except (NotFoundError, ConflictError) as exc:
                raise translate(exc) from None
            except ConfigError as exc:  # checked above; kept so a new rule in the catalog is a 422 too
                raise ApiError(422, "invalid template", str(exc)) from None

    @api.get(base, summary="List a channel's templates", responses=NOT_FOUND)
    async def list_templates(
        principal: Auth,
        tenant_id: TenantId,
        channel: ChannelName,
        limit: LimitParam = 50,
        cursor: CursorParam = None,
    ) -> Page[TemplateOut]:
        after = decode_cursor(cursor, (int,))
        principal.require_tenant(tenant_id)
        async with runtime.pool.connection() as conn:
            await kind_of(conn, tenant_id, channel)
            rows = await catalog.list_templates(conn, tenant_id, channel)
        items = [_out(t) for t in rows if after is None or t.template_id > after[0]]
        return page_of(items[: limit + 1], limit, lambda t: [t.template_id])

    @api.post(
        base,
        status_code=201,
        summary="Add a template (queues its sync with Optimove)",
        responses={**NOT_FOUND, **CONFLICT},
    )
    async def create_template(
        principal: Auth, tenant_id: TenantId, channel: ChannelName, body: TemplateSpec
    ) -> TemplateOut:
        principal.require_tenant(tenant_id)
        await save(tenant_id, channel, body, create=True)
        return await stored(tenant_id, channel, body.template_id)

    @api.post(
        base + "/preview",
        summary="Render a proposed template for a sample customer, without storing it",
        responses=NOT_FOUND,
    )
    async def preview_draft(
        principal: Auth, tenant_id: TenantId, channel: ChannelName, body: DraftPreviewRequest
    ) -> PreviewOut:
        principal.require_tenant(tenant_id)
        async with runtime.pool.connection() as conn:
            kind, channel_id = await kind_of(conn, tenant_id, channel)
        compiled = await checked(kind, body.template, timeout_s=timeout_s, trial=False)
        return await preview_off_loop(
            compiled,
            body,
            tenant_id=tenant_id,
            channel_id=channel_id,
            template_id=body.template.template_id,
            now=datetime.now(UTC),
            timeout_s=timeout_s,
        )

    @api.get(base + "/{template_id}", summary="One template", responses=NOT_FOUND)
    async def get_template(
        principal: Auth, tenant_id: TenantId, channel: ChannelName, template_id: TemplateId
    ) -> TemplateOut:
        principal.require_tenant(tenant_id)
        return await stored(tenant_id, channel, template_id)

    @api.put(
        base + "/{template_id}",
        summary="Replace a template's content (adds it if new; queues the sync)",
        responses={201: {"model": TemplateOut, "description": "Added"}, **NOT_FOUND},
    )
    async def replace_template(
        principal: Auth,
        tenant_id: TenantId,
        channel: ChannelName,
        template_id: TemplateId,
        body: TemplateContent,
        response: Response,
    ) -> TemplateOut:
        principal.require_tenant(tenant_id)
        spec = TemplateSpec(template_id=template_id, **body.model_dump())
        if await save(tenant_id, channel, spec, create=False) == "added":
            response.status_code = 201
        return await stored(tenant_id, channel, template_id)

    @api.patch(base + "/{template_id}", summary="Rename a template (queues the sync)", responses=NOT_FOUND)
    async def rename_template(
        principal: Auth, tenant_id: TenantId, channel: ChannelName, template_id: TemplateId, body: Rename
    ) -> TemplateOut:
        principal.require_tenant(tenant_id)
        async with runtime.pool.connection() as conn:
            try:
                await catalog.rename(conn, runtime.job_app, tenant_id, channel, template_id, body.name)
            except (NotFoundError, ConflictError) as exc:
                raise translate(exc) from None
        return await stored(tenant_id, channel, template_id)

    @api.delete(
        base + "/{template_id}",
        status_code=204,
        summary="Delete a template (queues its removal from Optimove)",
        responses=NOT_FOUND,
    )
    async def delete_template(
        principal: Auth, tenant_id: TenantId, channel: ChannelName, template_id: TemplateId
    ) -> Response:
        principal.require_tenant(tenant_id)
        async with runtime.pool.connection() as conn:
            try:
                await catalog.delete(conn, runtime.job_app, tenant_id, channel, template_id)
            except NotFoundError as exc:
                raise translate(exc) from None
        return Response(status_code=204)

    @api.post(
        base + "/{template_id}/preview",
        summary="Render a stored template for a sample customer",
        responses=NOT_FOUND,
    )
    async def preview_template(
        principal: Auth,
        tenant_id: TenantId,
        channel: ChannelName,
        template_id: TemplateId,
        body: PreviewRequest,
    ) -> PreviewOut:
        principal.require_tenant(tenant_id)
        t = await stored(tenant_id, channel, template_id)
        async with runtime.pool.connection() as conn:
            kind, channel_id = await kind_of(conn, tenant_id, channel)
        spec = TemplateSpec(
            template_id=t.template_id,
            name=t.name,
            body=t.body,
            subject=t.subject,
            text_body=t.text_body,
            app_id=t.app_id,
            defaults=t.defaults,
        )
        compiled = await checked(kind, spec, timeout_s=timeout_s, trial=False)
        return await preview_off_loop(
            compiled,
            body,
            tenant_id=tenant_id,
            channel_id=channel_id,
            template_id=template_id,
            now=datetime.now(UTC),
            timeout_s=timeout_s,
        )

    return api

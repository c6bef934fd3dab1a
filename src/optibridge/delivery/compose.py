"""Message composition: a claimed message and its template become what the provider is given.

Templates are compiled once per (tenant, channel, template, version) and kept for the process. An
e-mail gets its tracking links and List-Unsubscribe headers, an SMS its delivery-status callback, a
push its app id.

Rendering is CPU work and a template is tenant-written, so it never runs on the event loop: a
slice's messages are composed in one hop to a render thread (`compose_slice`; one hop per slice,
not per message, keeps the throughput), each message under the render deadline. A message whose
template exceeds the limits fails alone, with the reason `template exceeded render limits (...)`;
after a template has run out of time once in a slice, its other messages of that slice fail the
same way without rendering, so a slice of 500 costs at most one deadline per bad template.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from optibridge.catalog.models import TemplateSpec, compile_spec
from optibridge.channels import base
from optibridge.delivery.registry import Channel
from optibridge.feedback.keys import TrackingKeys
from optibridge.feedback.links import (
    instrument_html,
    list_unsubscribe_headers,
    tracking_urls,
    twilio_status_callback_url,
)
from optibridge.rendering import (
    CompiledTemplate,
    RenderError,
    RenderLimitError,
    TemplateCache,
    in_render_thread,
)
from optibridge.rendering.limits import DEFAULT_RENDER_TIMEOUT_S
from optibridge.store import messages as message_store
from optibridge.store.messages import ClaimedMessage, Conn


@dataclass
class Templates:
    """The compiled templates of a process, and each push template's app id."""

    cache: TemplateCache = field(default_factory=TemplateCache)
    app_ids: dict[tuple[str, str, int], str | None] = field(default_factory=dict)

    async def for_channel(
        self, conn: Conn, ch: Channel, template_ids: Collection[int]
    ) -> dict[int, CompiledTemplate]:
        """The compiled current templates among these ids; a missing or deleted one is left out."""
        out: dict[int, CompiledTemplate] = {}
        for t in await message_store.send_templates(conn, ch.tenant_id, ch.name, template_ids):
            key = (ch.tenant_id, ch.name, t.template_id, t.version)
            compiled = self.cache.get(key)
            if compiled is None:
                spec = TemplateSpec(
                    template_id=t.template_id, name=t.name, subject=t.subject, body=t.body,
                    text_body=t.text_body, app_id=t.app_id, defaults=t.defaults,
                )  # fmt: skip
                # Parsing a large template is CPU work too: off the event loop.
                compiled = await in_render_thread(partial(compile_spec, ch.kind, spec))
                self.cache.put(key, compiled)
            out[t.template_id] = compiled
            self.app_ids[(ch.tenant_id, ch.name, t.template_id)] = t.app_id
        return out

    def app_id(self, ch: Channel, template_id: int) -> str | None:
        return self.app_ids.get((ch.tenant_id, ch.name, template_id))


def variables(row: ClaimedMessage, ch: Channel, unsubscribe_url: str | None) -> dict[str, Any]:
    """What a template sees: the message's attributes, then its ids and the unsubscribe link."""
    data = dict(row.attrs)
    data.update(
        customer_id=row.customer_id,
        campaign_id=row.campaign_id,
        template_id=row.template_id,
        channel_id=ch.channel_id,
        tenant_id=ch.tenant_id,
        message_id=str(row.id),
        unsubscribe_url=unsubscribe_url or "",
    )
    return data


@dataclass(frozen=True)
class Composer:
    public_url: str | None
    keys: TrackingKeys
    render_timeout_s: float = DEFAULT_RENDER_TIMEOUT_S  # settings.render_timeout_s, per message

    def compose(
        self, ch: Channel, row: ClaimedMessage, template: CompiledTemplate, now: datetime, app_id: str | None
    ) -> base.OutboundMessage:
        """Render one message (RenderError on a missing attribute without a default, RenderLimitError
        past the limits or the deadline). CPU work: call it in a render thread (`compose_slice`)."""
        mid = str(row.id)
        public = self.public_url
        tracking = (
            tracking_urls(public, mid, self.keys, issued_at=now) if public and ch.kind == "email" else None
        )
        parts = template.render(
            variables(row, ch, tracking.unsubscribe_url if tracking else None),
            timeout_s=self.render_timeout_s,
        )
        common: dict[str, Any] = {
            "message_id": mid,
            "tenant_id": ch.tenant_id,
            "campaign_id": row.campaign_id,
            "customer_id": row.customer_id,
            "template_id": row.template_id,
            "to": row.address or "",
        }
        if ch.kind == "email":
            html = parts.get("html", "")
            headers: dict[str, str] = {}
            if tracking is not None:
                if ch.track:
                    html = instrument_html(html, tracking)
                headers = list_unsubscribe_headers(tracking.unsubscribe_url)
            return base.OutboundMessage(
                body=html,
                subject=parts.get("subject"),
                text_body=parts.get("text"),
                headers=headers,
                **common,
            )
        if ch.kind == "push":
            return base.OutboundMessage(
                body=parts.get("text", ""), subject=parts.get("title"), app_id=app_id, **common
            )
        data = {}
        if ch.kind == "sms" and public:
            data["status_callback"] = twilio_status_callback_url(public, mid, self.keys, issued_at=now)
        return base.OutboundMessage(body=parts.get("text", ""), data=data, **common)


@dataclass
class Composed:
    """A slice, composed: the messages to send, the ones that failed to render, and how many of
    those exceeded the render limits."""

    ready: list[tuple[ClaimedMessage, base.OutboundMessage]] = field(default_factory=list)
    failed: list[tuple[ClaimedMessage, RenderError]] = field(default_factory=list)
    over_limits: int = 0


Item = tuple[ClaimedMessage, CompiledTemplate, str | None]  # a message, its template, its app id


def compose_all(composer: Composer, ch: Channel, items: Sequence[Item], now: datetime) -> Composed:
    """Compose every message; one that fails to render fails alone (see the module doc)."""
    out = Composed()
    out_of_time: dict[int, RenderLimitError] = {}  # template id -> its first timeout in this slice
    for row, template, app_id in items:
        error: RenderError | None = out_of_time.get(row.template_id)
        if error is None:
            try:
                out.ready.append((row, composer.compose(ch, row, template, now, app_id)))
                continue
            except RenderLimitError as exc:
                error = exc
                if exc.timed_out:
                    out_of_time[row.template_id] = exc
            except RenderError as exc:
                error = exc
        if isinstance(error, RenderLimitError):
            out.over_limits += 1
        out.failed.append((row, error))
    return out


async def compose_slice(composer: Composer, ch: Channel, items: Sequence[Item], now: datetime) -> Composed:
    """`compose_all` in a render thread: the event loop keeps serving while a slice renders."""
    if not items:
        return Composed()
    return await in_render_thread(lambda: compose_all(composer, ch, items, now))

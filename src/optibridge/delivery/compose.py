"""Message composition: a claimed message and its template become what the provider is given.

Templates are compiled once per (tenant, channel, template, version) and kept for the process. An
e-mail gets its tracking links and List-Unsubscribe headers, an SMS its delivery-status callback, a
push its app id.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
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
from optibridge.rendering import CompiledTemplate, TemplateCache
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
                compiled = compile_spec(ch.kind, spec)
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

    def compose(
        self, ch: Channel, row: ClaimedMessage, template: CompiledTemplate, now: datetime, app_id: str | None
    ) -> base.OutboundMessage:
        """Render one message (RenderError on a missing attribute without a default)."""
        mid = str(row.id)
        public = self.public_url
        tracking = (
            tracking_urls(public, mid, self.keys, issued_at=now) if public and ch.kind == "email" else None
        )
        parts = template.render(variables(row, ch, tracking.unsubscribe_url if tracking else None))
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

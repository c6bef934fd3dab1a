"""E-mail through SendGrid's v3 Mail Send API.

POST {base_url}/v3/mail/send, JSON, Bearer API key; 202 with the id in X-Message-Id. Our message
id rides in `custom_args`, which SendGrid copies into every event of its Event Webhook.
"""

from __future__ import annotations

import json
from typing import Any

from optibridge.channels.base import OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import classify_http
from optibridge.channels.http_transport import STRICT, HttpChannel
from optibridge.channels.provider_settings import SendgridSettings
from optibridge.core.outbound import OutboundPolicy

CUSTOM_ARG = "optibridge_message_id"
SEND_PATH = "/v3/mail/send"


def sendgrid_request(settings: SendgridSettings, message: OutboundMessage) -> dict[str, Any]:
    """The mail/send body (pure)."""
    sender: dict[str, str] = {"email": settings.from_address}
    if settings.from_name:
        sender["name"] = settings.from_name
    personalization: dict[str, Any] = {"to": [{"email": message.to}]}
    if message.headers:
        personalization["headers"] = dict(message.headers)
    content = []
    if message.text_body:
        content.append({"type": "text/plain", "value": message.text_body})
    content.append({"type": "text/html", "value": message.body})
    return {
        "personalizations": [personalization],
        "from": sender,
        "subject": message.subject or "",
        "content": content,
        "custom_args": {CUSTOM_ARG: message.message_id},
    }


class SendgridEmailProvider(HttpChannel):
    kind = "email"

    def __init__(self, settings: SendgridSettings, *, policy: OutboundPolicy = STRICT) -> None:
        super().__init__(settings, policy=policy)
        self.name = settings.name or "sendgrid"
        self.settings = settings
        self.url = settings.base_url + SEND_PATH
        self._headers = {"Authorization": "Bearer " + settings.api_key, "Content-Type": "application/json"}

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            return SendResult(Outcome.PERMANENT, reason="no e-mail address", bounce=True)
        body = json.dumps(sendgrid_request(self.settings, message), ensure_ascii=False).encode("utf-8")
        response = await self._request("POST", self.url, self._headers, body)
        if isinstance(response, SendResult):
            return response
        status, headers, answer = response
        if 200 <= status < 300:
            return SendResult(Outcome.SENT, provider_message_id=headers.get("X-Message-Id"))
        return classify_http(status, headers, answer)

"""E-mail through Postmark's Email API.

POST {base_url}/email, JSON, X-Postmark-Server-Token; 200 {"ErrorCode": 0, "MessageID": ...}.
Refusals come as 422 with an ErrorCode: 406 (inactive recipient: bounced or complained before) and
300 (invalid address) blame the recipient. Our message id rides in `Metadata`, which Postmark
copies into every webhook.
"""

from __future__ import annotations

import json
from typing import Any

from optibridge.channels.base import OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import classify_http, http_summary
from optibridge.channels.http_transport import STRICT, HttpChannel
from optibridge.channels.provider_settings import PostmarkSettings
from optibridge.core.outbound import OutboundPolicy

METADATA_KEY = "optibridge_message_id"
RECIPIENT_ERRORS = frozenset({300, 406})


def postmark_request(settings: PostmarkSettings, message: OutboundMessage) -> dict[str, Any]:
    """The /email body (pure)."""
    sender = settings.from_address
    if settings.from_name:
        sender = f'"{settings.from_name}" <{settings.from_address}>'
    request: dict[str, Any] = {
        "From": sender,
        "To": message.to,
        "Subject": message.subject or "",
        "HtmlBody": message.body,
        "MessageStream": settings.message_stream,
        "Metadata": {METADATA_KEY: message.message_id},
    }
    if message.text_body:
        request["TextBody"] = message.text_body
    if message.headers:
        request["Headers"] = [{"Name": k, "Value": v} for k, v in message.headers.items()]
    return request


class PostmarkEmailProvider(HttpChannel):
    kind = "email"

    def __init__(self, settings: PostmarkSettings, *, policy: OutboundPolicy = STRICT) -> None:
        super().__init__(settings, policy=policy)
        self.name = settings.name or "postmark"
        self.settings = settings
        self.url = settings.base_url + "/email"
        self._headers = {
            "X-Postmark-Server-Token": settings.server_token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            return SendResult(Outcome.PERMANENT, reason="no e-mail address", bounce=True)
        body = json.dumps(postmark_request(self.settings, message), ensure_ascii=False).encode("utf-8")
        response = await self._request("POST", self.url, self._headers, body)
        if isinstance(response, SendResult):
            return response
        status, headers, answer = response
        try:
            document = json.loads(answer)
        except ValueError:
            document = None
        found = document if isinstance(document, dict) else {}
        code = found.get("ErrorCode")
        if 200 <= status < 300 and code in (0, None):
            mid = found.get("MessageID")
            return SendResult(Outcome.SENT, provider_message_id=mid if isinstance(mid, str) else None)
        if status == 422 and isinstance(code, int):
            reason = f"Postmark {code} ({http_summary(status, answer)})"
            return SendResult(Outcome.PERMANENT, reason=reason, bounce=code in RECIPIENT_ERRORS)
        return classify_http(status, headers, answer)

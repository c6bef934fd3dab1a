"""SMS through Plivo's Message API.

POST {base_url}/v1/Account/{auth_id}/Message/, JSON, Basic auth (auth id, auth token); 202 with
`message_uuid`. Status callbacks go to the message's `url` (POST, form-encoded), signed by Plivo
with X-Plivo-Signature-V3; our message id rides in that URL's query.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

from optibridge.channels.base import OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import classify_http
from optibridge.channels.http_transport import STRICT, HttpChannel
from optibridge.channels.provider_settings import PlivoSettings
from optibridge.core.outbound import OutboundPolicy


def plivo_request(settings: PlivoSettings, message: OutboundMessage) -> dict[str, Any]:
    """The Message create body (pure)."""
    request: dict[str, Any] = {"src": settings.from_number, "dst": message.to, "text": message.body}
    if settings.status_callback_url:
        request["url"] = f"{settings.status_callback_url}?message_id={quote(message.message_id)}"
        request["method"] = "POST"
    return request


class PlivoSmsProvider(HttpChannel):
    kind = "sms"

    def __init__(self, settings: PlivoSettings, *, policy: OutboundPolicy = STRICT) -> None:
        super().__init__(settings, policy=policy)
        self.name = settings.name or "plivo"
        self.settings = settings
        self.url = f"{settings.base_url}/v1/Account/{quote(settings.auth_id)}/Message/"
        credentials = base64.b64encode(f"{settings.auth_id}:{settings.auth_token}".encode()).decode("ascii")
        self._headers = {
            "Authorization": "Basic " + credentials,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            return SendResult(Outcome.PERMANENT, reason="no phone number", bounce=True)
        body = json.dumps(plivo_request(self.settings, message), ensure_ascii=False).encode("utf-8")
        response = await self._request("POST", self.url, self._headers, body)
        if isinstance(response, SendResult):
            return response
        status, headers, answer = response
        if 200 <= status < 300:
            try:
                ids = json.loads(answer).get("message_uuid")
            except (ValueError, AttributeError):
                ids = None
            first = ids[0] if isinstance(ids, list) and ids and isinstance(ids[0], str) else None
            return SendResult(Outcome.SENT, provider_message_id=first)
        return classify_http(status, headers, answer)

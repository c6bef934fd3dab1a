"""E-mail through Mailgun's Messages API.

POST {base_url}/v3/{domain}/messages, form-encoded, Basic auth "api:<key>"; 200 {"id": "<...>"}.
Our message id rides as the user variable `v:optibridge_message_id`, which Mailgun copies into
every event (`event-data.user-variables`).
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, urlencode

from optibridge.channels.base import OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import classify_http
from optibridge.channels.http_transport import STRICT, HttpChannel
from optibridge.channels.provider_settings import MailgunSettings
from optibridge.core.outbound import OutboundPolicy

USER_VARIABLE = "optibridge_message_id"


def mailgun_form(settings: MailgunSettings, message: OutboundMessage) -> list[tuple[str, str]]:
    """The form fields (pure), in order."""
    sender = settings.from_address
    if settings.from_name:
        sender = f'"{settings.from_name}" <{settings.from_address}>'
    fields = [("from", sender), ("to", message.to), ("subject", message.subject or "")]
    fields.append(("html", message.body))
    if message.text_body:
        fields.append(("text", message.text_body))
    fields.extend((f"h:{name}", value) for name, value in message.headers.items())
    fields.append((f"v:{USER_VARIABLE}", message.message_id))
    return fields


class MailgunEmailProvider(HttpChannel):
    kind = "email"

    def __init__(self, settings: MailgunSettings, *, policy: OutboundPolicy = STRICT) -> None:
        super().__init__(settings, policy=policy)
        self.name = settings.name or "mailgun"
        self.settings = settings
        self.url = f"{settings.base_url}/v3/{quote(settings.domain)}/messages"
        credentials = base64.b64encode(f"api:{settings.api_key}".encode()).decode("ascii")
        self._headers = {
            "Authorization": "Basic " + credentials,
            "Content-Type": "application/x-www-form-urlencoded",
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            return SendResult(Outcome.PERMANENT, reason="no e-mail address", bounce=True)
        body = urlencode(mailgun_form(self.settings, message)).encode("ascii")
        response = await self._request("POST", self.url, self._headers, body)
        if isinstance(response, SendResult):
            return response
        status, headers, answer = response
        if 200 <= status < 300:
            try:
                found = json.loads(answer).get("id")
            except (ValueError, AttributeError):
                found = None
            return SendResult(Outcome.SENT, provider_message_id=found if isinstance(found, str) else None)
        return classify_http(status, headers, answer)

"""SMS through Vonage's SMS API.

POST {base_url}/sms/json, form-encoded with api_key and api_secret; always 200, with one status
per message part ("0" is success; the others are Vonage's error codes). Our message id rides as
`client-ref`, which Vonage echoes in the delivery receipt.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from optibridge.channels.base import OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import DEFAULT_HTTP_RETRY_AFTER, classify_http, http_summary
from optibridge.channels.http_transport import STRICT, HttpChannel
from optibridge.channels.provider_settings import VonageSettings
from optibridge.core.outbound import OutboundPolicy

# https://developer.vonage.com/en/messaging/sms/guides/troubleshooting-sms (response codes)
THROTTLED = frozenset({"1"})
TRANSIENT = frozenset({"4", "5", "8", "9", "10", "11"})  # credentials, internal, account state
BAD_NUMBER = frozenset({"7", "29", "33"})  # barred, not whitelisted, de-activated


def vonage_form(settings: VonageSettings, message: OutboundMessage) -> list[tuple[str, str]]:
    """The form fields (pure). `to` is digits only: Vonage takes E.164 without the '+'."""
    fields = [
        ("api_key", settings.api_key),
        ("api_secret", settings.api_secret),
        ("from", settings.from_number.lstrip("+")),
        ("to", message.to.lstrip("+")),
        ("text", message.body),
        ("client-ref", message.message_id),
    ]
    if not message.body.isascii():
        fields.append(("type", "unicode"))
    if settings.status_callback_url:
        fields.extend((("status-report-req", "1"), ("callback", settings.status_callback_url)))
    return fields


def classify_vonage(document: Any, status: int, body: bytes) -> SendResult:
    """The first part's status decides (a message's parts share their fate)."""
    parts = document.get("messages") if isinstance(document, dict) else None
    first = parts[0] if isinstance(parts, list) and parts and isinstance(parts[0], dict) else None
    if first is None:
        reason = f"Vonage: no message status ({http_summary(status, body)})"
        return SendResult(Outcome.TRANSIENT, reason=reason)
    code = str(first.get("status", ""))
    if code == "0":
        mid = first.get("message-id")
        return SendResult(Outcome.SENT, provider_message_id=mid if isinstance(mid, str) else None)
    reason = f"Vonage status {code if code.isdigit() else '?'}"
    if code in THROTTLED:
        return SendResult(Outcome.THROTTLED, retry_after=DEFAULT_HTTP_RETRY_AFTER, reason=reason)
    if code in TRANSIENT:
        return SendResult(Outcome.TRANSIENT, reason=reason)
    return SendResult(Outcome.PERMANENT, reason=reason, bounce=code in BAD_NUMBER)


class VonageSmsProvider(HttpChannel):
    kind = "sms"

    def __init__(self, settings: VonageSettings, *, policy: OutboundPolicy = STRICT) -> None:
        super().__init__(settings, policy=policy)
        self.name = settings.name or "vonage"
        self.settings = settings
        self.url = settings.base_url + "/sms/json"
        self._headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            return SendResult(Outcome.PERMANENT, reason="no phone number", bounce=True)
        body = urlencode(vonage_form(self.settings, message)).encode("ascii")
        response = await self._request("POST", self.url, self._headers, body)
        if isinstance(response, SendResult):
            return response
        status, headers, answer = response
        if not 200 <= status < 300:
            return classify_http(status, headers, answer)
        try:
            document = json.loads(answer)
        except ValueError:
            document = None
        return classify_vonage(document, status, answer)

"""SMS through Twilio's Messages API (or any API that copies it).

POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json, form-encoded, Basic auth. The message id
rides in the StatusCallback URL's query, so a delivery receipt finds its message without a
lookup by Twilio's sid.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus

from optibridge.channels.base import OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import classify_twilio
from optibridge.channels.http_transport import HttpChannel
from optibridge.channels.settings import TwilioSettings

# What quote_plus leaves as is: a callback URL's last segment made of these (our signed tokens
# are base64url) needs no quoting, so only the fixed part before it is quoted, once.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")


# quote_plus of ASCII text as one str.translate: quote_plus walks the UTF-8 bytes in Python, a
# few microseconds for an SMS body, paid per message (bench/send.py profile: 3 % of a worker).
_FORM_ASCII = str.maketrans(
    {chr(c): "+" if c == 0x20 else f"%{c:02X}" for c in range(128) if _UNRESERVED.fullmatch(chr(c)) is None}
)


def quote_form(text: str) -> str:
    """quote_plus(text), exactly (pure)."""
    if text.isascii():
        return text.translate(_FORM_ASCII)
    return quote_plus(text)


class TwilioSmsProvider(HttpChannel):
    kind = "sms"

    def __init__(self, settings: TwilioSettings, *, callback_base_url: str | None = None) -> None:
        super().__init__(settings)
        self.name = settings.name or "twilio"
        self.url = f"{settings.base_url}/2010-04-01/Accounts/{quote(settings.account_sid)}/Messages.json"
        credentials = f"{settings.account_sid}:{settings.auth_token}".encode()
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        if settings.from_number is not None:
            self._sender_field = "&From=" + quote_plus(settings.from_number)
        else:
            self._sender_field = "&MessagingServiceSid=" + quote_plus(settings.messaging_service_sid or "")
        self._quoted_prefixes: dict[str, str] = {}
        self._callback_field: str | None = None
        if settings.status_callback and callback_base_url:
            callback = f"{callback_base_url.rstrip('/')}{settings.status_callback_path}?message_id="
            self._callback_field = "&StatusCallback=" + quote_plus(callback)

    def form(self, message: OutboundMessage) -> bytes:
        """The form body; pure, and cheaper than urlencode over a fresh dict per message."""
        parts = ["To=", quote_form(message.to), self._sender_field, "&Body=", quote_form(message.body)]
        own = message.data.get("status_callback")
        if own:  # the dispatcher's per-message, signed receipt URL wins over the generic one
            parts.append("&StatusCallback=" + self._quote_callback(own))
        elif self._callback_field is not None:
            parts.append(self._callback_field)
            parts.append(quote_form(message.message_id))
        return "".join(parts).encode("ascii")

    def _quote_callback(self, url: str) -> str:
        """quote_plus(url), with the part before the last segment quoted once per prefix."""
        head, _, tail = url.rpartition("/")
        if not head or _UNRESERVED.fullmatch(tail) is None:
            return quote_plus(url)
        prefix = self._quoted_prefixes.get(head)
        if prefix is None:
            prefix = quote_plus(head + "/")
            if len(self._quoted_prefixes) < 16:  # one public URL in practice; never unbounded
                self._quoted_prefixes[head] = prefix
        return prefix + tail

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            return SendResult(Outcome.PERMANENT, reason="no phone number", bounce=True)
        response = await self._request("POST", self.url, self._headers, self.form(message))
        if isinstance(response, SendResult):
            return response
        status, headers, body = response
        if 200 <= status < 300:
            try:
                sid = json.loads(body).get("sid")
            except (ValueError, AttributeError):
                sid = None
            return SendResult(Outcome.SENT, provider_message_id=sid if isinstance(sid, str) else None)
        return classify_twilio(status, headers, body)

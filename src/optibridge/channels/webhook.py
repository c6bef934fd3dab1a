"""Webhook: POST the rendered JSON payload to the tenant's URL, signed and idempotent.

Headers: X-Optibridge-Timestamp (unix seconds), X-Optibridge-Signature (sha256=HMAC of
"timestamp.body"), Idempotency-Key (the message id, stable across retries, so the receiver can
drop a repeat). The destination is guarded by the operator's outbound policy (HttpChannel).
"""

from __future__ import annotations

import time

from aiohttp.abc import AbstractResolver

from optibridge.channels.base import SENT, OutboundMessage, SendResult
from optibridge.channels.classify import classify_http
from optibridge.channels.http_transport import STRICT, HttpChannel
from optibridge.channels.settings import WebhookSettings
from optibridge.channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from optibridge.core.outbound import OutboundPolicy


class WebhookProvider(HttpChannel):
    kind = "webhook"

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        policy: OutboundPolicy = STRICT,
        resolver: AbstractResolver | None = None,
    ) -> None:
        """`resolver` replaces the system DNS under the guard (tests simulate rebinding with it)."""
        reason = policy.check_url(settings.url)
        if reason is not None:
            raise ValueError(f"webhook url refused: {reason}")
        super().__init__(settings, policy=policy, resolver=resolver)
        self.name = settings.name or "webhook"
        self.url = settings.url
        self._secret = settings.signing_secret.encode("utf-8")
        self._static_headers = {"Content-Type": "application/json", **settings.headers}

    def headers(self, message: OutboundMessage, body: bytes, timestamp: str) -> dict[str, str]:
        headers = dict(self._static_headers)
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        headers["Idempotency-Key"] = message.message_id
        return headers

    async def send(self, message: OutboundMessage) -> SendResult:
        body = message.body.encode("utf-8")
        headers = self.headers(message, body, str(int(time.time())))
        response = await self._request("POST", self.url, headers, body)
        if isinstance(response, SendResult):
            return response
        status, response_headers, response_body = response
        if 200 <= status < 300:
            return SENT
        return classify_http(status, response_headers, response_body)

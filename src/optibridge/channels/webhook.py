"""Webhook: POST the rendered JSON payload to the tenant's URL, signed and idempotent.

Headers: X-Optibridge-Timestamp (unix seconds), X-Optibridge-Signature (sha256=HMAC of
"timestamp.body"), Idempotency-Key (the message id, stable across retries, so the receiver can
drop a repeat). The destination is guarded against SSRF unless `allow_private`.
"""

from __future__ import annotations

import time

from aiohttp.abc import AbstractResolver

from optibridge.channels.base import SENT, OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import classify_http
from optibridge.channels.http1 import Http1Client
from optibridge.channels.http_transport import HttpChannel
from optibridge.channels.settings import WebhookSettings
from optibridge.channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from optibridge.channels.urlguard import DestinationRefusedError, GuardedResolver, check_url


class WebhookProvider(HttpChannel):
    kind = "webhook"

    def __init__(self, settings: WebhookSettings, *, resolver: AbstractResolver | None = None) -> None:
        """`resolver` replaces the system DNS under the guard (tests simulate rebinding with it)."""
        reason = check_url(settings.url, allow_private=settings.allow_private)
        if reason is not None:
            raise ValueError(f"webhook url refused: {reason}")
        super().__init__(settings)
        self.name = settings.name or "webhook"
        self.url = settings.url
        self._allow_private = settings.allow_private
        self._inner_resolver = resolver
        self._secret = settings.signing_secret.encode("utf-8")
        self._static_headers = {"Content-Type": "application/json", **settings.headers}

    def _make_client(self) -> Http1Client:
        # No DNS cache: every new connection re-resolves and the guard re-checks (DNS rebinding).
        resolver = self._inner_resolver if self._allow_private else GuardedResolver(self._inner_resolver)
        return Http1Client(
            limit=self._limit,
            timeout_s=self._timeout_s,
            connect_timeout_s=self._connect_timeout_s,
            resolver=resolver,
        )

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

    def _network_failure(self, exc: BaseException) -> SendResult:
        cause: BaseException | None = exc
        for _ in range(5):  # the guard's refusal may come wrapped; walk a bounded chain
            if cause is None:
                break
            if isinstance(cause, DestinationRefusedError):
                return SendResult(Outcome.PERMANENT, reason=str(cause))
            cause = getattr(cause, "os_error", None) or cause.__cause__
        return super()._network_failure(exc)

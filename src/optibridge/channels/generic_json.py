"""SMS or push through any JSON-over-HTTP API, described by settings instead of code."""

from __future__ import annotations

import json

from optibridge.channels.base import SENT, OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import classify_http
from optibridge.channels.http_transport import STRICT, HttpChannel
from optibridge.channels.jsontemplate import JsonTemplate, extract_path
from optibridge.channels.settings import JsonSettings
from optibridge.core.outbound import OutboundPolicy


class GenericJsonProvider(HttpChannel):
    def __init__(
        self,
        kind: str,
        settings: JsonSettings,
        *,
        callback_base_url: str | None = None,
        policy: OutboundPolicy = STRICT,
    ) -> None:
        reason = policy.check_url(settings.url)
        if reason is not None:
            raise ValueError(f"url refused: {reason}")
        super().__init__(settings, policy=policy)
        self.kind = kind
        self.name = settings.name or f"json-{kind}"
        self.url = settings.url
        self.method = settings.method
        self.template = JsonTemplate(settings.body_template)
        headers = {"Content-Type": "application/json", "Accept": "application/json", **settings.headers}
        if settings.auth_token:
            scheme = settings.auth_scheme.strip()
            token = settings.auth_token
            headers[settings.auth_header] = f"{scheme} {token}" if scheme else token
        self._headers = headers
        self._success = None if settings.success_statuses is None else frozenset(settings.success_statuses)
        self._id_path = settings.provider_id_path
        self._recipient_errors = frozenset(settings.recipient_error_statuses)
        self._callback_prefix = (
            f"{callback_base_url.rstrip('/')}{settings.status_callback_path}?message_id="
            if callback_base_url
            else ""
        )

    def body(self, message: OutboundMessage) -> bytes:
        return self.template.render(message, self._callback_prefix).encode("utf-8")

    def _is_success(self, status: int) -> bool:
        return 200 <= status < 300 if self._success is None else status in self._success

    async def send(self, message: OutboundMessage) -> SendResult:
        response = await self._request(self.method, self.url, self._headers, self.body(message))
        if isinstance(response, SendResult):
            return response
        status, headers, body = response
        if self._is_success(status):
            if self._id_path is None:
                return SENT
            try:
                document = json.loads(body)
            except ValueError:
                return SENT
            return SendResult(Outcome.SENT, provider_message_id=extract_path(document, self._id_path))
        if status in self._recipient_errors:
            reason = f"HTTP {status}: recipient rejected"
            return SendResult(Outcome.PERMANENT, reason=reason, bounce=True, unregistered=self.kind == "push")
        if 200 <= status < 300:  # a 2xx outside the configured success set
            return SendResult(Outcome.PERMANENT, reason=f"HTTP {status} is not a configured success status")
        return classify_http(status, headers, body)

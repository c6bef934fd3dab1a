"""Push through Firebase Cloud Messaging HTTP v1.

POST {base_url}/v1/projects/{project}/messages:send with a Bearer token from the service account.
The message id travels in the data payload, so app-side events can be tied back to it.
"""

from __future__ import annotations

import json
from typing import Any

from optibridge.channels.base import OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import classify_fcm
from optibridge.channels.fcm_auth import ServiceAccountTokens, TokenError
from optibridge.channels.http2 import Http2Client
from optibridge.channels.http_transport import STRICT, HttpChannel, RequestClient
from optibridge.channels.settings import FcmSettings
from optibridge.core.outbound import OutboundPolicy


def fcm_payload(message: OutboundMessage) -> dict[str, Any]:
    """The v1 request body (pure): a notification plus string-only data."""
    notification = {"body": message.body}
    if message.subject:
        notification["title"] = message.subject
    data = dict(message.data)
    data["message_id"] = message.message_id
    return {"message": {"token": message.to, "notification": notification, "data": data}}


class FcmPushProvider(HttpChannel):
    kind = "push"

    def __init__(self, settings: FcmSettings, *, policy: OutboundPolicy = STRICT) -> None:
        for where, url in (("base_url", settings.base_url), ("token_uri", settings.effective_token_uri)):
            reason = policy.check_url(url)
            if reason is not None:
                raise ValueError(f"{where} refused: {reason}")
        super().__init__(settings, policy=policy)
        self._http2 = settings.http2
        self.name = settings.name or "fcm"
        self.url = f"{settings.base_url}/v1/projects/{settings.effective_project_id}/messages:send"
        # The token exchange is a second destination: it goes through the same policy.
        self.tokens = ServiceAccountTokens(
            settings.service_account,
            token_uri=settings.effective_token_uri,
            timeout=settings.timeout_s,
            policy=policy,
        )

    def _make_client(self) -> RequestClient:
        # FCM recommends HTTP/2 (one connection multiplexes hundreds of sends). Over TLS only, as
        # Google serves it; a plain-http base_url (a loopback test server) stays on HTTP/1.1.
        if not (self._http2 and self.url.startswith("https://")):
            return super()._make_client()
        return Http2Client(
            limit=self._limit,
            timeout_s=self._timeout_s,
            connect_timeout_s=self._connect_timeout_s,
            policy=self._policy,
            proxy=self._proxy,
            proxy_login=self._proxy_login,
            proxy_from_env=self._proxy_from_env,
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            return SendResult(Outcome.PERMANENT, reason="no device token", bounce=True, unregistered=True)
        try:
            token = await self.tokens.token()
        except TokenError as exc:
            return SendResult(Outcome.TRANSIENT, reason=str(exc))
        headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json; charset=UTF-8"}
        body = json.dumps(fcm_payload(message), ensure_ascii=False).encode("utf-8")
        response = await self._request("POST", self.url, headers, body)
        if isinstance(response, SendResult):
            return response
        status, response_headers, response_body = response
        if 200 <= status < 300:
            try:
                name = json.loads(response_body).get("name")
            except (ValueError, AttributeError):
                name = None
            return SendResult(Outcome.SENT, provider_message_id=name if isinstance(name, str) else None)
        if status == 401:
            self.tokens.invalidate(token)
        return classify_fcm(status, response_headers, response_body)

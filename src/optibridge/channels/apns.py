"""Push through the Apple Push Notification service: token-based auth, HTTP/2.

POST {base_url}/3/device/<device token> over HTTP/2 (APNs accepts nothing else), with
`authorization: bearer <JWT>` (ES256, signed with the team's .p8 key: header {alg, kid}, claims
{iss: team id, iat}), `apns-topic` (the bundle id), `apns-push-type`, and `apns-id` set to our
message id (APNs echoes it; it names the message in Apple's logs). 200 is accepted; refusals are
JSON {"reason": ...}: BadDeviceToken, DeviceTokenNotForTopic and 410 Unregistered mean the token is
dead (-> unregistered, suppressed); TooManyRequests is back-pressure; ExpiredProviderToken and
InvalidProviderToken make a new JWT.

HTTP/2 comes from the project's client (channels.http2.Http2Client: httpx + h2, multiplexed,
every connection resolved and judged by the outbound policy, optional egress proxy), with HTTP/1.1
fallback off: APNs speaks nothing else.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from optibridge.channels.base import OutboundMessage, Outcome, SendResult
from optibridge.channels.classify import DEFAULT_HTTP_RETRY_AFTER, http_summary
from optibridge.channels.http2 import Http2Client
from optibridge.channels.http_transport import STRICT, HttpChannel, RequestClient
from optibridge.channels.provider_settings import ApnsSettings
from optibridge.core.outbound import OutboundPolicy

# Apple: refresh the provider token no more than once every 20 minutes, and at least every 60.
TOKEN_LIFETIME_S = 40 * 60
DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered", "ExpiredToken"})
AUTH_REASONS = frozenset({"ExpiredProviderToken", "InvalidProviderToken", "MissingProviderToken"})
THROTTLE_REASONS = frozenset({"TooManyRequests", "TooManyProviderTokenUpdates"})
TRANSIENT_REASONS = frozenset({"InternalServerError", "ServiceUnavailable", "Shutdown", "IdleTimeout"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def provider_token(key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str, issued_at: int) -> str:
    """The ES256 JWT APNs wants (JWS compact form; the signature is r||s, 32 bytes each)."""
    header = _b64url(json.dumps({"alg": "ES256", "kid": key_id}, separators=(",", ":")).encode())
    claims = _b64url(json.dumps({"iss": team_id, "iat": issued_at}, separators=(",", ":")).encode())
    signing_input = f"{header}.{claims}".encode("ascii")
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{header}.{claims}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def apns_payload(message: OutboundMessage, push_type: str) -> dict[str, Any]:
    """The JSON payload (pure): aps alert (or content-available), our data beside it."""
    aps: dict[str, Any]
    if push_type == "background":
        aps = {"content-available": 1}
    else:
        alert: dict[str, str] = {"body": message.body}
        if message.subject:
            alert["title"] = message.subject
        aps = {"alert": alert}
    payload: dict[str, Any] = {"aps": aps}
    for key, value in message.data.items():
        if key != "aps":
            payload[key] = value
    payload["message_id"] = message.message_id
    return payload


def classify_apns(status: int, body: bytes, headers: Mapping[str, str]) -> SendResult:
    """APNs' status and `reason` to our outcome (pure)."""
    try:
        reason = json.loads(body).get("reason") if body else None
    except (ValueError, AttributeError):
        reason = None
    name = reason if isinstance(reason, str) and reason.isalnum() and len(reason) <= 64 else "?"
    text = f"APNs {name} ({http_summary(status, body)})"
    if status == 410 or name in DEAD_TOKEN_REASONS:
        return SendResult(Outcome.PERMANENT, reason=text, bounce=True, unregistered=True)
    if status == 429 or name in THROTTLE_REASONS:
        return SendResult(Outcome.THROTTLED, retry_after=DEFAULT_HTTP_RETRY_AFTER, reason=text)
    if status >= 500 or name in TRANSIENT_REASONS or name in AUTH_REASONS:
        return SendResult(Outcome.TRANSIENT, reason=text)
    return SendResult(Outcome.PERMANENT, reason=text)


class ApnsPushProvider(HttpChannel):
    kind = "push"

    def __init__(
        self,
        settings: ApnsSettings,
        *,
        policy: OutboundPolicy = STRICT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context`: whom to trust (a test server's CA); default the system CAs."""
        reason = policy.check_url(settings.base_url)
        if reason is not None:
            raise ValueError(f"base_url refused: {reason}")
        super().__init__(settings, policy=policy)
        key = load_pem_private_key(settings.signing_private_key.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)  # the settings model checked it
        self.name = settings.name or "apns"
        self.settings = settings
        self._key = key
        self._ssl = ssl_context
        self._token: tuple[str, float] | None = None

    def _make_client(self) -> RequestClient:
        return Http2Client(
            limit=self._limit,
            timeout_s=self._timeout_s,
            connect_timeout_s=self._connect_timeout_s,
            policy=self._policy,
            proxy=self._proxy,
            proxy_login=self._proxy_login,
            proxy_from_env=self._proxy_from_env,
            ssl_context=self._ssl,
            http1=False,  # APNs speaks HTTP/2 only
        )

    def token(self, now: float | None = None) -> str:
        """The current provider token; a new one when it is older than TOKEN_LIFETIME_S."""
        at = time.time() if now is None else now
        if self._token is None or at - self._token[1] >= TOKEN_LIFETIME_S:
            issued = int(at)
            self._token = (provider_token(self._key, self.settings.key_id, self.settings.team_id, issued), at)
        return self._token[0]

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to or not message.to.isalnum() or len(message.to) > 200:
            reason = "no valid device token"
            return SendResult(Outcome.PERMANENT, reason=reason, bounce=True, unregistered=True)
        token = self.token()
        headers = {
            "authorization": "bearer " + token,
            "apns-topic": self.settings.topic,
            "apns-push-type": self.settings.push_type,
            "apns-priority": "10" if self.settings.push_type == "alert" else "5",
            "apns-id": message.message_id,
            "content-type": "application/json",
        }
        body = json.dumps(apns_payload(message, self.settings.push_type), ensure_ascii=False).encode()
        response = await self._request(
            "POST", f"{self.settings.base_url}/3/device/{message.to}", headers, body
        )
        if isinstance(response, SendResult):
            return response
        status, response_headers, answer = response
        if status == 200:
            return SendResult(Outcome.SENT, provider_message_id=response_headers.get("apns-id"))
        result = classify_apns(status, answer, response_headers)
        if result.reason and any(r in result.reason for r in AUTH_REASONS):
            self._token = None  # a new JWT for the next send
        return result

"""Push through the Apple Push Notification service: token-based auth, HTTP/2.

POST {base_url}/3/device/<device token> over HTTP/2 (APNs accepts nothing else), with
`authorization: bearer <JWT>` (ES256, signed with the team's .p8 key: header {alg, kid}, claims
{iss: team id, iat}), `apns-topic` (the bundle id), `apns-push-type`, and `apns-id` set to our
message id (APNs echoes it; it names the message in Apple's logs). 200 is accepted; refusals are
JSON {"reason": ...}: BadDeviceToken, DeviceTokenNotForTopic and 410 Unregistered mean the token is
dead (-> unregistered, suppressed); TooManyRequests is back-pressure; ExpiredProviderToken and
InvalidProviderToken make a new JWT.

No module of the project offered an HTTP/2 client when this was written, so `Http2Client` below
wraps httpcore (the maintained core under httpx, with h2) behind three methods; its network backend
resolves every new connection itself and refuses, through the outbound policy, any address the
policy forbids (as the HTTP/1.1 adapters' resolver does), then connects to the checked address.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpcore
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from optibridge.channels.base import OutboundMessage, Outcome, SendResult, send_bounded
from optibridge.channels.classify import DEFAULT_HTTP_RETRY_AFTER, classify_network_error, http_summary
from optibridge.channels.http_transport import STRICT
from optibridge.channels.provider_settings import ApnsSettings
from optibridge.core.outbound import DestinationRefusedError, OutboundPolicy

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


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, judge every address by the policy, connect to the first allowed one."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=timeout or 5.0
        )
        refused = None
        for *_, address in infos:
            ip = str(address[0])
            refused = self._policy.check_address(ip)
            if refused is None:
                return await self._inner.connect_tcp(ip, port, timeout, local_address, socket_options)
        raise DestinationRefusedError(f"{host} refused: {refused or 'no address'}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefusedError("unix sockets are not destinations")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class Http2Client:
    """HTTP/2 only (ALPN h2 over TLS; prior knowledge on http:// for loopback sinks)."""

    def __init__(self, *, policy: OutboundPolicy, timeout_s: float, connect_timeout_s: float) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            http1=False,
            http2=True,
            max_connections=4,  # streams multiplex: APNs allows hundreds per connection
            network_backend=_GuardedBackend(policy),
        )
        self._timeout = {
            "connect": connect_timeout_s,
            "read": timeout_s,
            "write": timeout_s,
            "pool": timeout_s,
        }

    async def request(
        self, url: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        response = await self._pool.request(
            "POST", url, headers=list(headers), content=body, extensions={"timeout": self._timeout}
        )
        found = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
        return response.status, found, response.content

    async def close(self) -> None:
        await self._pool.aclose()


class ApnsPushProvider:
    kind = "push"

    def __init__(self, settings: ApnsSettings, *, policy: OutboundPolicy = STRICT) -> None:
        reason = policy.check_url(settings.base_url)
        if reason is not None:
            raise ValueError(f"base_url refused: {reason}")
        key = load_pem_private_key(settings.signing_private_key.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)  # the settings model checked it
        self.name = settings.name or "apns"
        self.settings = settings
        self._key = key
        self._policy = policy
        self._limit = settings.max_connections
        self._client: Http2Client | None = None
        self._token: tuple[str, float] | None = None

    def token(self, now: float | None = None) -> str:
        """The current provider token; a new one when it is older than TOKEN_LIFETIME_S."""
        at = time.time() if now is None else now
        if self._token is None or at - self._token[1] >= TOKEN_LIFETIME_S:
            issued = int(at)
            self._token = (provider_token(self._key, self.settings.key_id, self.settings.team_id, issued), at)
        return self._token[0]

    def _ensure_client(self) -> Http2Client:
        if self._client is None:
            self._client = Http2Client(
                policy=self._policy,
                timeout_s=self.settings.timeout_s,
                connect_timeout_s=self.settings.connect_timeout_s,
            )
        return self._client

    async def open(self) -> None:
        self._ensure_client()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return await send_bounded(self.send, messages, self._limit)

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to or not message.to.isalnum() or len(message.to) > 200:
            reason = "no valid device token"
            return SendResult(Outcome.PERMANENT, reason=reason, bounce=True, unregistered=True)
        token = self.token()
        headers = [
            ("authorization", "bearer " + token),
            ("apns-topic", self.settings.topic),
            ("apns-push-type", self.settings.push_type),
            ("apns-priority", "10" if self.settings.push_type == "alert" else "5"),
            ("apns-id", message.message_id),
            ("content-type", "application/json"),
        ]
        body = json.dumps(apns_payload(message, self.settings.push_type), ensure_ascii=False).encode()
        url = f"{self.settings.base_url}/3/device/{message.to}"
        try:
            status, response_headers, answer = await self._ensure_client().request(url, headers, body)
        except DestinationRefusedError as exc:
            return SendResult(Outcome.PERMANENT, reason=str(exc)[:200])
        except (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout, OSError) as exc:
            return classify_network_error(exc)
        except httpcore.NetworkError as exc:  # read/write trouble: the request may have gone out
            return classify_network_error(exc, uncertain=True)
        except httpcore.TimeoutException as exc:
            return classify_network_error(exc, uncertain=True)
        except httpcore.ProtocolError as exc:
            return SendResult(Outcome.TRANSIENT, reason=f"HTTP/2 protocol error: {type(exc).__name__}")
        if status == 200:
            return SendResult(Outcome.SENT, provider_message_id=response_headers.get("apns-id"))
        result = classify_apns(status, answer, response_headers)
        if result.reason and any(r in result.reason for r in AUTH_REASONS):
            self._token = None  # a new JWT for the next send
        return result

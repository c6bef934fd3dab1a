"""The SMS aggregator flow's side of Optimove (reference §12): the `x-hub-signature` HMAC, and the
two calls we make to the tenant's `<BASE_URL>` (handshake, delivery report).

Both directions sign the same way: `x-hub-signature: sha256=<lower-hex HMAC-SHA256 of the raw body,
keyed with the shared secret>`. A signature is computed over the exact bytes sent, and checked over
the exact bytes received, before any JSON parsing. Body field names Optimove does not document
(UNCONFIRMED) are chosen in docs/flows/sms-aggregator.md and named here once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from optibridge.core.outbound import OutboundPolicy

SIGNATURE_HEADER = "x-hub-signature"
APP_KEY_HEADER = "app-api-key"
AGGREGATOR_KEY_HEADER = "X-API-Key"
SIGNATURE_PREFIX = "sha256="
HANDSHAKE_PATH = "/api/v1/aggregator/handshake"
DELIVERY_REPORT_PATH = "/api/v1/aggregator/delivery-report"
# UNCONFIRMED body fields of the handshake (docs/flows/sms-aggregator.md).
HANDSHAKE_URL_FIELD = "campaignSendUrl"
HANDSHAKE_KEY_FIELD = "aggregatorKey"


def signature(secret: str, body: bytes) -> str:
    """The header value for `body`: `sha256=` and the lower-hex HMAC-SHA256."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of a received `x-hub-signature` against the raw body. The `sha256=`
    prefix is required; hex digits are compared case-insensitively (RFC 4648 hex is either case)."""
    if not header or not secret or len(header) > 200:
        return False
    header = header.strip()
    if not header.lower().startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.lower().encode("ascii", "replace"))


def key_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class AggregatorError(Exception):
    """A call to the tenant's aggregator base URL did not succeed; `transient`: worth retrying."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


def classify(status: int) -> bool | None:
    """None: success; True: transient (retry); False: permanent."""
    if 200 <= status < 300:
        return None
    return status in (408, 425, 429) or status >= 500


@dataclass(frozen=True)
class AggregatorEndpoint:
    base_url: str
    app_api_key: str
    shared_secret: str

    def __repr__(self) -> str:
        return f"AggregatorEndpoint({self.base_url!r})"


class AggregatorClient:
    """Signed POSTs to `<BASE_URL>`; one aiohttp session per client, resolved through the operator's
    outbound policy (a base URL pointing inside is refused at connect time too)."""

    def __init__(
        self, outbound: OutboundPolicy | None, *, timeout_s: float = 10.0, max_connections: int = 32
    ) -> None:
        self._outbound = outbound
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 5.0))
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                resolver=self._outbound.resolver() if self._outbound is not None else None,
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, endpoint: AggregatorEndpoint, path: str, payload: dict[str, Any]) -> int:
        """POST one signed JSON body; the status on success, AggregatorError otherwise."""
        url = endpoint.base_url.rstrip("/") + path
        if self._outbound is not None and (why := self._outbound.check_url(url)) is not None:
            raise AggregatorError(
                f"aggregator base URL refused by the outbound policy: {why}", transient=False
            )
        body = encode(payload)
        headers = {
            "content-type": "application/json",
            APP_KEY_HEADER: endpoint.app_api_key,
            SIGNATURE_HEADER: signature(endpoint.shared_secret, body),
        }
        try:
            async with self._http().post(
                url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                text = (await resp.content.read(2048)).decode("utf-8", "replace")
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AggregatorError(f"{path}: {type(exc).__name__}: {str(exc)[:200]}", transient=True) from None
        verdict = classify(status)
        if verdict is None:
            return status
        raise AggregatorError(f"{path}: HTTP {status}: {text[:200]}", transient=verdict, status=status)

    async def handshake(
        self, endpoint: AggregatorEndpoint, campaign_send_url: str, aggregator_key: str
    ) -> int:
        return await self.post(
            endpoint,
            HANDSHAKE_PATH,
            {HANDSHAKE_URL_FIELD: campaign_send_url, HANDSHAKE_KEY_FIELD: aggregator_key},
        )

    async def delivery_report(self, endpoint: AggregatorEndpoint, report: dict[str, Any]) -> int:
        return await self.post(endpoint, DELIVERY_REPORT_PATH, report)

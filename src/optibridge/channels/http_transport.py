"""What the HTTP adapters share: one pooled, bounded, timed HTTP/1.1 client per provider.

The client (http1.Http1Client) keeps up to `max_connections` connections alive across messages;
`send_many` runs that many requests at once. Redirects are never followed (a redirect is a
misconfiguration, and following one could bypass the webhook's address guard), cookies are not
kept, and environment proxies are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from optibridge.channels.base import OutboundMessage, SendResult, send_bounded
from optibridge.channels.classify import classify_network_error
from optibridge.channels.http1 import Http1Client, HttpClientError, Reply
from optibridge.channels.settings import HttpOptions


class HttpChannel:
    """Base of the HTTP adapters: client lifecycle, bounded fan-out, one request helper."""

    kind: str
    name: str

    def __init__(self, options: HttpOptions) -> None:
        self._limit = options.max_connections
        self._timeout_s = options.timeout_s
        self._connect_timeout_s = options.connect_timeout_s
        self._client: Http1Client | None = None

    def _make_client(self) -> Http1Client:
        return Http1Client(
            limit=self._limit, timeout_s=self._timeout_s, connect_timeout_s=self._connect_timeout_s
        )

    def _ensure_client(self) -> Http1Client:
        # Synchronous, so concurrent first sends cannot race into creating two clients.
        client = self._client
        if client is None:
            client = self._client = self._make_client()
        return client

    async def open(self) -> None:
        self._ensure_client()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> HttpChannel:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, message: OutboundMessage) -> SendResult:
        raise NotImplementedError

    async def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return await send_bounded(self.send, messages, self._limit)

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes
    ) -> Reply | SendResult:
        """(status, headers, body) or, when no response came, the classified network failure."""
        try:
            return await self._ensure_client().request(method, url, headers, data)
        except HttpClientError as exc:
            return classify_network_error(exc, uncertain=exc.request_sent)
        except (OSError, TimeoutError) as exc:  # connecting: nothing was sent
            return self._network_failure(exc)

    def _network_failure(self, exc: BaseException) -> SendResult:
        return classify_network_error(exc)

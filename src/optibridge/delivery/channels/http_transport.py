"""What the HTTP adapters share: one aiohttp session per provider, bounded and timed.

One `ClientSession` with a `TCPConnector(limit=max_connections)` per provider keeps connections
alive across messages; `send_many` runs that many requests at once. Redirects are never followed
(a redirect is a misconfiguration, and following one could bypass the webhook's address guard),
cookies are not kept, and environment proxies are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aiohttp
from multidict import CIMultiDictProxy

from optibridge.delivery.channels.base import OutboundMessage, SendResult, send_bounded
from optibridge.delivery.channels.classify import classify_network_error
from optibridge.delivery.channels.settings import HttpOptions

Response = tuple[int, CIMultiDictProxy[str], bytes]


class HttpChannel:
    """Base of the HTTP adapters: session lifecycle, bounded fan-out, one request helper."""

    kind: str
    name: str

    def __init__(self, options: HttpOptions) -> None:
        self._limit = options.max_connections
        self._timeout = aiohttp.ClientTimeout(total=options.timeout_s, sock_connect=options.connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _connector(self) -> aiohttp.TCPConnector:
        return aiohttp.TCPConnector(limit=self._limit, limit_per_host=0)

    def _ensure_session(self) -> aiohttp.ClientSession:
        # Synchronous, so concurrent first sends cannot race into creating two sessions.
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                connector=self._connector(),
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                raise_for_status=False,
            )
        return session

    async def open(self) -> None:
        self._ensure_session()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

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
    ) -> Response | SendResult:
        """(status, headers, body) or, when no response came, the classified network failure."""
        try:
            async with self._ensure_session().request(
                method, url, data=data, headers=headers, allow_redirects=False
            ) as response:
                return response.status, response.headers, await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return self._network_failure(exc)

    def _network_failure(self, exc: BaseException) -> SendResult:
        return classify_network_error(exc)

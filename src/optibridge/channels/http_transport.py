"""What the HTTP adapters share: one pooled, bounded, timed HTTP/1.1 client per provider.

The client (http_client.HttpClient, aiohttp) keeps up to `max_connections` connections alive
across messages; `send_many` runs that many requests at once. Redirects are never followed (a
redirect is a misconfiguration, and following one could bypass the address guard), cookies are not
kept. Egress goes through the channel's `proxy_url`, else (unless the operator turned it off,
Settings.outbound_proxy_from_env) through HTTPS_PROXY/HTTP_PROXY minus NO_PROXY.

Every HTTP adapter connects through the outbound policy's resolver (core.outbound): each address
a host resolves to is checked on every new connection, so a provider URL whose name points (or is
re-pointed) inside is refused at connect time, not only when its settings were written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from aiohttp.abc import AbstractResolver

from optibridge.channels.base import OutboundMessage, Outcome, SendResult, send_bounded
from optibridge.channels.classify import classify_network_error
from optibridge.channels.http_client import HttpClient, HttpClientError, Reply
from optibridge.channels.http_options import HttpClientOptions
from optibridge.core.outbound import DestinationRefusedError, OutboundPolicy

STRICT = OutboundPolicy()


class RequestClient(Protocol):
    """What an adapter needs of a client: http_client.HttpClient and http2.Http2Client."""

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Reply: ...

    async def close(self) -> None: ...


class HttpChannel:
    """Base of the HTTP adapters: client lifecycle, bounded fan-out, one request helper."""

    kind: str
    name: str

    def __init__(
        self,
        options: HttpClientOptions,
        *,
        policy: OutboundPolicy = STRICT,
        resolver: AbstractResolver | None = None,
    ) -> None:
        """`policy`: the operator's outbound policy; `resolver` replaces the system DNS under the
        guard (tests simulate rebinding with it)."""
        self._limit = options.max_connections
        self._timeout_s = options.timeout_s
        self._connect_timeout_s = options.connect_timeout_s
        self._proxy = options.proxy_url
        self._proxy_login = options.proxy_login()
        self._proxy_from_env = True
        self._client: RequestClient | None = None
        self._policy = policy
        self._inner_resolver = resolver
        self._allowed_url: str | None = None

    def set_policy(self, policy: OutboundPolicy) -> None:
        """Use this outbound policy (before the first send; the factory calls it for every adapter)."""
        self._policy = policy
        self._allowed_url = None

    def set_proxy_from_env(self, honour: bool) -> None:
        """Whether HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply (before the first send; the operator's
        Settings.outbound_proxy_from_env)."""
        self._proxy_from_env = honour

    @property
    def policy(self) -> OutboundPolicy:
        return self._policy

    def _make_client(self) -> RequestClient:
        # No DNS cache: every new connection re-resolves and the guard re-checks (DNS rebinding).
        return HttpClient(
            limit=self._limit,
            timeout_s=self._timeout_s,
            connect_timeout_s=self._connect_timeout_s,
            resolver=self._policy.resolver(self._inner_resolver),
            plain_resolver=self._inner_resolver,
            proxy=self._proxy,
            proxy_login=self._proxy_login,
            proxy_from_env=self._proxy_from_env,
        )

    def _ensure_client(self) -> RequestClient:
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
        refused = self._literal_refused(url)
        if refused is not None:
            return refused
        if self._proxy is not None:
            reason = self._policy.check_url(self._proxy)  # a tenant's proxy is a destination too
            if reason is not None:
                return SendResult(Outcome.PERMANENT, reason=f"proxy refused: {reason}")
        try:
            return await self._ensure_client().request(method, url, headers, data)
        except HttpClientError as exc:
            return classify_network_error(exc, uncertain=exc.request_sent)
        except (OSError, TimeoutError) as exc:  # connecting: nothing was sent
            return self._network_failure(exc)

    def _literal_refused(self, url: str) -> SendResult | None:
        # The client connects to a literal IP without asking the resolver, so the guard never
        # sees it: judge such URLs here (settings are checked when written; this covers any
        # URL built later, e.g. from a stored row written before the policy existed).
        if url == self._allowed_url:  # adapters post to one URL: check it once
            return None
        reason = self._policy.check_url(url)
        if reason is None:
            self._allowed_url = url
            return None
        return SendResult(Outcome.PERMANENT, reason=f"destination refused: {reason}")

    def _network_failure(self, exc: BaseException) -> SendResult:
        cause: BaseException | None = exc
        for _ in range(5):  # the guard's refusal may come wrapped; walk a bounded chain
            if cause is None:
                break
            if isinstance(cause, DestinationRefusedError):
                return SendResult(Outcome.PERMANENT, reason=str(cause))
            cause = getattr(cause, "os_error", None) or cause.__cause__
        return classify_network_error(exc)

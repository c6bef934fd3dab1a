"""HTTP/2 for the push providers (FCM, APNs): httpx + h2, multiplexed, guarded, optionally proxied.

    client = Http2Client(limit=256, timeout_s=10.0, connect_timeout_s=5.0, policy=policy, proxy=None)
    status, headers, body = await client.request("POST", url, {"authorization": "..."}, b"{...}")
    await client.close()

- `limit`: requests at once (a semaphore); they share few connections - HTTP/2 multiplexes them,
  at most STREAMS_PER_CONNECTION on each: `connections` (default: ceil(limit / 100)) pools, each
  one HTTP/2 connection per origin, every request going to the pool with the fewest in flight.
  httpcore alone would not spread them: it counts an HTTP/2 connection as available however many
  streams it carries, so one pool keeps every request to an origin on one connection, and beyond
  its 100 streams they queue (measured by bench/http2_clients.py: 359 requests/s at 200 ms with
  500 allowed in flight, where 500 / 0.2 s = 2,500/s was possible).
- `timeout_s`: one request, connect to last byte, waiting for a free slot not counted;
  `connect_timeout_s`: connecting (DNS, TCP, TLS).
- `policy`: the outbound policy. Every new connection resolves the host and connects only to
  addresses the policy allows (DestinationRefusedError, an OSError, otherwise); literal IPs are
  judged the same way. No redirects, no cookies, environment proxies only if `proxy_from_env`.
- `proxy`: an http(s) proxy URL (CONNECT tunnel); the destination is resolved and judged here
  first, as in http_client.
- `http1`: also allow HTTP/1.1 when the server does not offer h2 in TLS ALPN (plain-http URLs are
  always HTTP/1.1: providers speak h2 over TLS only, and test servers on loopback often HTTP/1.1).
- Errors as in http_client: OSError/TimeoutError when nothing was sent (connect, TLS, the guard),
  HttpClientError (`request_sent`) after; answers over `max_response_bytes` raise
  ResponseTooLargeError.

Why httpx (docs/channels.md, "HTTP/2"): maintained, pure Python h2 underneath, an async pool that
multiplexes; aiohttp has no HTTP/2. Measured against niquests and aiohttp-over-HTTP/1.1 there.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import typing
from collections.abc import Mapping

import h2.events
import httpcore
import httpx
from multidict import CIMultiDict, CIMultiDictProxy

from optibridge.channels.http_client import (
    USER_AGENT,
    ConnectionClosedError,
    HttpClientError,
    MalformedResponseError,
    ProxyRefusedError,
    Reply,
    ResponseTimeoutError,
    ResponseTooLargeError,
    clean_headers,
    env_proxies,
    proxy_for,
)
from optibridge.channels.sockets import RESET_ON_CLOSE
from optibridge.core.logs import get_logger
from optibridge.core.outbound import DestinationRefusedError, OutboundPolicy, numeric_host

__all__ = ["Http2Client", "HttpClientError", "Reply"]

log = get_logger(__name__)

# httpcore's own cap on the streams it opens on one HTTP/2 connection (and about FCM's; APNs
# allows 1000): more requests than this on one connection wait for a stream.
STREAMS_PER_CONNECTION = 100


def pools_for(limit: int, connections: int | None = None) -> int:
    """How many pools (one HTTP/2 connection per origin each) carry `limit` requests at once."""
    if connections is not None:
        return max(1, connections)
    return max(1, -(-limit // STREAMS_PER_CONNECTION))


def least_busy(in_flight: list[int]) -> int:
    """The pool a request goes to: the one with the fewest requests in flight (the first of ties)."""
    return min(range(len(in_flight)), key=in_flight.__getitem__)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves every host it connects to and refuses addresses the policy forbids (except the
    operator's environment proxies, `exempt`)."""

    def __init__(self, policy: OutboundPolicy, exempt: frozenset[str]) -> None:
        self._inner: httpcore.AsyncNetworkBackend = httpcore.AnyIOBackend()
        self._policy = policy
        self._exempt = exempt

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host.lower().rstrip(".") in self._exempt:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        addresses = await self.allowed(host, port)
        failure: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(ip, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def allowed(self, host: str, port: int) -> list[str]:
        """The addresses of `host` the policy allows; DestinationRefusedError if none."""
        number = numeric_host(host.strip("[]"))
        if isinstance(number, str):
            raise DestinationRefusedError(f"destination refused: {number}")
        if number is not None:
            ips = [str(number)]
        else:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
        reasons = [r for r in (self._policy.check_address(ip) for ip in ips) if r is not None]
        allowed = [ip for ip in ips if self._policy.check_address(ip) is None]
        if not allowed:
            raise DestinationRefusedError(f"destination refused: {host} resolves to {'; '.join(reasons)}")
        return allowed

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# A request whose stream a GOAWAY left unprocessed is sent again on a new connection this many
# times at most (a server going away on every connection would otherwise be asked forever).
GOAWAY_RESENDS = 2


def unprocessed(exc: BaseException, streams: list[int]) -> bool:
    """Whether a failed HTTP/2 exchange certainly never reached the server's application (pure):
    the connection was ended by a GOAWAY whose last processed stream is below this request's
    stream (RFC 9113 6.8: "can be safely retried"), or before the request's headers were sent.
    httpcore resends such a request itself only in some cases (not when the GOAWAY names stream
    0, nor when another stream met the GOAWAY first) and otherwise raises RemoteProtocolError,
    which alone says nothing of whether the request was processed."""
    goaway = _connection_terminated(exc)
    if goaway is None or goaway.last_stream_id is None:
        return False
    if not streams:
        return True  # the headers were never sent on this connection
    return streams[-1] > goaway.last_stream_id


def _connection_terminated(exc: BaseException) -> h2.events.ConnectionTerminated | None:
    cause: BaseException | None = exc
    for _ in range(5):  # bounded: httpx wraps httpcore's error, which carries h2's event
        if cause is None:
            return None
        for arg in cause.args:
            if isinstance(arg, h2.events.ConnectionTerminated):
                return arg
        cause = cause.__cause__ or cause.__context__
    return None


def proxy_and_login(proxy: str, login: tuple[str, str] | None) -> tuple[str, tuple[str, str] | None]:
    """The proxy URL without user info, and the login to send it (pure): `login` if given, else
    the URL's own user:password@ (an operator's HTTPS_PROXY). httpcore, unlike httpx and aiohttp,
    ignores a proxy URL's user info: the proxy would answer 407 to every request."""
    url = httpx.URL(proxy)
    if url.username or url.password:
        login = login or (url.username, url.password)
        url = url.copy_with(username=None, password=None)
    return str(url), login


class Http2Client:
    """Multiplexed HTTP/2 (HTTP/1.1 fallback) to any number of origins; see the module docstring."""

    def __init__(
        self,
        *,
        limit: int,
        timeout_s: float,
        connect_timeout_s: float,
        policy: OutboundPolicy,
        proxy: str | None = None,
        proxy_login: tuple[str, str] | None = None,
        proxy_from_env: bool = False,
        max_connections: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        http1: bool = True,
        max_response_bytes: int = 1 << 20,
        dns_ttl_s: float = 30.0,
    ) -> None:
        self._limit = limit
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._policy = policy
        env = env_proxies() if proxy_from_env and proxy is None else {}
        self._env = env
        self._proxy = proxy
        self._proxy_login = proxy_login
        self._pools = pools_for(limit, max_connections)
        # Per pool: HTTP/1.1 (a server without h2) needs a connection per request in flight.
        self._max_connections = -(-limit // self._pools)
        self._ssl = ssl_context
        self._http1 = http1
        self._max_body = max_response_bytes
        self._dns_ttl_s = dns_ttl_s
        exempt = frozenset(
            (httpx.URL(url).host or "").lower()
            for scheme, url in env.items()
            if scheme != "no" and "://" in url
        )
        self._backend = _GuardedBackend(policy, exempt)
        self._clients: list[httpx.AsyncClient] = []
        self._busy: list[int] = []
        self._slots: asyncio.Semaphore | None = None
        self._checked: dict[str, float] = {}

    def _ensure_clients(self) -> list[httpx.AsyncClient]:
        if not self._clients:
            self._clients = [self._new_client() for _ in range(self._pools)]
            self._busy = [0] * self._pools
        return self._clients

    def _new_client(self) -> httpx.AsyncClient:
        mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
        direct = self._transport(None)
        if self._proxy is not None:
            direct = self._transport(self._proxy, self._proxy_login)
        else:
            for scheme in ("http", "https"):
                if self._env.get(scheme):
                    mounts[f"{scheme}://"] = self._transport(self._env[scheme])
        return httpx.AsyncClient(
            transport=direct,
            mounts=mounts,
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT},
            timeout=httpx.Timeout(self._timeout_s, connect=self._connect_timeout_s),
        )

    def _transport(self, proxy: str | None, login: tuple[str, str] | None = None) -> httpx.AsyncHTTPTransport:
        ssl_context = self._ssl or ssl.create_default_context()
        transport = httpx.AsyncHTTPTransport(
            http1=self._http1, http2=True, verify=ssl_context, trust_env=False
        )
        options = {
            "ssl_context": ssl_context,
            "max_connections": self._max_connections,
            "max_keepalive_connections": self._max_connections,
            "keepalive_expiry": 30.0,
            "http1": self._http1,
            "http2": True,
            "network_backend": self._backend,
            "socket_options": [RESET_ON_CLOSE],  # a request given up leaves nothing behind
        }
        # The pool is rebuilt with the guarded network backend (httpx does not take one).
        if proxy is None:
            transport._pool = httpcore.AsyncConnectionPool(**options)  # type: ignore[arg-type]
            return transport
        url, login = proxy_and_login(proxy, login)
        transport._pool = httpcore.AsyncHTTPProxy(
            proxy_url=url,
            proxy_auth=login,
            **options,  # type: ignore[arg-type]
        )
        return transport

    def _proxied(self, url: httpx.URL) -> bool:
        if self._proxy is not None:
            return True
        return bool(self._env) and proxy_for(url.scheme, url.host, self._env) is not None

    async def _check_destination(self, url: httpx.URL) -> None:
        now = time.monotonic()
        if self._checked.get(url.host, 0.0) > now:
            return
        async with asyncio.timeout(self._connect_timeout_s):
            await self._backend.allowed(url.host, url.port or (443 if url.scheme == "https" else 80))
        if len(self._checked) > 256:
            self._checked.clear()
        self._checked[url.host] = now + self._dns_ttl_s

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """(status, headers, body); see the module docstring for the errors."""
        sent_headers = clean_headers(headers)
        target = httpx.URL(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise ValueError(f"not an absolute http(s) URL: {url[:200]!r}")
        if self._proxied(target):
            await self._check_destination(target)
        clients = self._ensure_clients()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        async with self._slots:
            pool = least_busy(self._busy)
            client = clients[pool]
            self._busy[pool] += 1
            try:
                async with asyncio.timeout(self._timeout_s):
                    response, data = await self._exchange(client, method, target, sent_headers, body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError) as exc:
                cause = exc.__cause__ or exc.__context__
                while cause is not None and not isinstance(cause, DestinationRefusedError):
                    cause = cause.__cause__ or cause.__context__
                if cause is not None:
                    raise cause from exc
                if isinstance(exc, httpx.ConnectTimeout):
                    raise TimeoutError(str(exc)) from exc
                raise ConnectionError(str(exc) or type(exc).__name__) from exc
            except DestinationRefusedError:
                raise
            except TimeoutError as exc:
                raise ResponseTimeoutError("no complete answer within the request timeout") from exc
            except httpx.TimeoutException as exc:
                raise ResponseTimeoutError(f"no complete answer: {exc}") from exc
            except httpx.RemoteProtocolError as exc:
                raise MalformedResponseError(f"protocol error: {exc}") from exc
            except (httpx.TransportError, OSError) as exc:
                raise ConnectionClosedError(f"connection failed: {exc!r}") from exc
            finally:
                self._busy[pool] -= 1
        if response.status_code == 407 and self._proxied(target):
            # An http:// destination through a proxy that wants a login (http_client.ProxyRefusedError).
            raise ProxyRefusedError(response.status_code, response.reason_phrase)
        answer = CIMultiDictProxy(CIMultiDict(response.headers.multi_items()))
        return response.status_code, answer, data

    async def _exchange(
        self, client: httpx.AsyncClient, method: str, target: httpx.URL, headers: dict[str, str], body: bytes
    ) -> tuple[httpx.Response, bytes]:
        """One request, sent again (on a new connection) when a GOAWAY says the server never
        processed its stream (`unprocessed`); at most GOAWAY_RESENDS times."""
        streams: list[int] = []

        async def trace(event: str, info: dict[str, typing.Any]) -> None:
            if event == "http2.send_request_headers.started":
                streams.append(info["stream_id"])

        for resend in range(GOAWAY_RESENDS + 1):
            streams.clear()
            request = client.build_request(
                method, target, headers=headers, content=body, extensions={"trace": trace}
            )
            try:
                response = await client.send(request, stream=True)
                try:
                    return response, await self._read(response)
                finally:
                    await response.aclose()
            except httpx.RemoteProtocolError as exc:
                if resend == GOAWAY_RESENDS or not unprocessed(exc, streams):
                    raise
                log.info("http2: resent a request the server's GOAWAY left unprocessed", stream=streams)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _read(self, response: httpx.Response) -> bytes:
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise ResponseTooLargeError(f"response body over {self._max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self._max_body:
                raise ResponseTooLargeError(f"response body over {self._max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @property
    def http_versions(self) -> set[str]:
        """For tests: the protocol of the connections in the pool now ("HTTP/2", "HTTP/1.1")."""
        found: set[str] = set()
        for client in self._clients:
            transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
            for transport in transports:
                pool = getattr(transport, "_pool", None)
                for conn in getattr(pool, "connections", []):
                    info = conn.info()
                    found.add("HTTP/2" if "HTTP/2" in info else "HTTP/1.1")
        return found

    async def close(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()

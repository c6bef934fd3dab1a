"""The HTTP/1.1 client of the provider adapters: aiohttp, pooled, bounded, timed, optionally proxied.

One `HttpClient` per provider: a `TCPConnector` keeping up to `limit` keep-alive connections, at
most `limit` requests at once, no redirects (a redirect is a misconfiguration, and following one
could bypass the address guard), no cookie jar, no compression accepted (`Accept-Encoding:
identity`: a compressed answer could inflate past the size cap), answers capped (headers by
aiohttp's line limits, the body at `max_response_bytes`). A request's timeout runs from
connecting to the answer's last byte; waiting for a free slot does not count.

Failures keep the one distinction the send path needs (`HttpClientError.request_sent`): a failure
before the request could have been written (refused, unreachable, DNS, TLS verification, the
address guard, connect timeout, a proxy refusing the tunnel) raises OSError or TimeoutError - the
message can be sent again safely; a failure after (the server closed or reset the connection, a
malformed or oversized answer, the request timeout) raises HttpClientError with `request_sent` -
the provider may have acted on it.

Proxy (docs/channels.md, "Egress proxy"): `proxy` (a channel's `proxy_url`) or, when
`proxy_from_env`, HTTPS_PROXY / HTTP_PROXY / NO_PROXY as read at construction. The proxy resolves
the destination name itself, so before asking the proxy the client resolves the destination
through the guarded resolver and refuses it if any address is forbidden (kept for `dns_ttl_s`).
The residual risk: the proxy's DNS may answer differently from ours. The connector's resolver
guards every host it connects to - including a channel's own `proxy_url` - except the hosts of
the operator's environment proxies, which are operator-controlled and usually internal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.connector import Connection
from aiohttp.resolver import DefaultResolver
from aiohttp.tracing import Trace
from multidict import CIMultiDictProxy
from yarl import URL

from optibridge import __version__
from optibridge.channels.sockets import resetting_socket

Reply = tuple[int, CIMultiDictProxy[str], bytes]
USER_AGENT = f"optibridge/{__version__}"
# Framing and connection-management headers are the client's own: a caller's Transfer-Encoding
# beside the real Content-Length is the request-smuggling shape.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class HttpClientError(Exception):
    """The exchange failed without a usable answer.

    `request_sent`: the request may have been written, so the server may have acted on it (a
    caller that must not repeat a request treats the outcome as unknown).
    """

    request_sent = True


class ConnectionClosedError(HttpClientError):
    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class ProxyRefusedError(ConnectionClosedError):
    """The proxy answered an http:// destination's request itself with 407 (its login is missing
    or wrong): nothing reached the destination. (For https the CONNECT is refused instead:
    aiohttp's ClientHttpProxyError, same meaning.) No provider sends 407: it is a proxy's status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"proxy refused: {status} {reason}".rstrip(), request_sent=False)


class ResponseTimeoutError(HttpClientError, TimeoutError):
    """No complete answer within the request timeout (the request may have gone out)."""


class MalformedResponseError(HttpClientError):
    pass


class ResponseTooLargeError(HttpClientError):
    pass


_BREAK_OR_NUL = re.compile("[\r\n\x00]")  # per request: a regex, not a generator per header


def clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's headers without hop-by-hop ones; a CR, LF or NUL is refused (pure).

    aiohttp refuses CR/LF itself; a NUL is cut or kept differently by each server and proxy.
    """
    out: dict[str, str] = {}
    for name, value in headers.items():
        text = str(value)
        if _BREAK_OR_NUL.search(name) or _BREAK_OR_NUL.search(text):
            raise ValueError(f"line break or NUL in an HTTP request header: {name[:80]!r}")
        if name.lower() not in HOP_BY_HOP:
            out[name] = text
    return out


def env_proxies() -> dict[str, str]:
    """HTTP_PROXY / HTTPS_PROXY / NO_PROXY (either case), as urllib reads them."""
    return urllib.request.getproxies_environment()


def proxy_for(url_scheme: str, host: str, proxies: Mapping[str, str]) -> str | None:
    """The environment proxy for a destination, or None (direct; NO_PROXY honoured) (pure)."""
    proxy = proxies.get(url_scheme)
    if not proxy:
        return None
    if urllib.request.proxy_bypass_environment(host, dict(proxies)):  # type: ignore[attr-defined]
        return None
    return proxy


# Spaces, controls and non-ASCII are never valid raw in a request target: their UTF-8 is
# percent-encoded. The rest, %XX escapes included, is sent as written (a provider's signature may
# cover the exact path, and re-quoting "%2F" to "/" would change it).
_UNSAFE_IN_TARGET = re.compile(r"[^\x21-\x7e]+")


def request_url(url: str) -> URL:
    """The URL as sent: host IDNA-encoded, unsafe path/query characters percent-encoded, nothing else
    re-quoted, user info dropped (pure). ValueError for anything but an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url[:200]!r}")
    host = parts.hostname
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"  # IPv6, as a URL writes it

    def safe(text: str) -> str:
        return _UNSAFE_IN_TARGET.sub(lambda found: quote(found.group(), safe=""), text)

    return URL.build(
        scheme=parts.scheme,
        host=host,
        port=parts.port,
        path=safe(parts.path or "/"),
        query_string=safe(parts.query),
        encoded=True,
    )


class _CountingConnector(aiohttp.TCPConnector):
    """Counts new connections (tests and metrics: how often keep-alive did not apply), and never
    reuses an idle connection that received bytes nobody asked for."""

    opened = 0

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        # aiohttp checks only that an idle connection is still open: an answer the server sent
        # unasked while it idled (a 408 before closing, a duplicate) would be parsed and queued,
        # then taken for the next request's answer - another message's outcome.
        for _ in range(1024):
            conn = await super()._get(key, traces)
            if conn is None:
                return None
            proto = conn.protocol
            if proto is None or not proto.should_close:
                return conn
            conn.close()
        return None

    async def _create_connection(self, *args: Any, **kwargs: Any) -> Any:
        made = await super()._create_connection(*args, **kwargs)
        self.opened += 1
        return made


class _SplitResolver(AbstractResolver):
    """The guarded resolver for every host but the operator's proxies (resolved plainly)."""

    def __init__(self, guarded: AbstractResolver, plain: AbstractResolver, exempt: frozenset[str]) -> None:
        self._guarded = guarded
        self._plain = plain
        self._exempt = exempt

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        chosen = self._plain if host.lower().rstrip(".") in self._exempt else self._guarded
        return await chosen.resolve(host, port, family)

    async def close(self) -> None:
        await self._guarded.close()
        await self._plain.close()


class HttpClient:
    """Pooled HTTP/1.1 (aiohttp) to any number of origins; at most `limit` requests at once."""

    def __init__(
        self,
        *,
        limit: int,
        timeout_s: float,
        connect_timeout_s: float,
        resolver: AbstractResolver | None = None,
        plain_resolver: AbstractResolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        idle_s: float = 10.0,
        max_response_bytes: int = 1 << 20,
        proxy: str | None = None,
        proxy_login: tuple[str, str] | None = None,
        proxy_from_env: bool = False,
        dns_ttl_s: float = 30.0,
    ) -> None:
        """`resolver` guards destinations (the outbound policy's); `plain_resolver` resolves the
        environment proxies' hosts (default: the system's). `proxy_login`: (username, password)
        for `proxy` (an environment proxy carries its own as user:password@, which aiohttp uses)."""
        self._limit = limit
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._resolver = resolver
        self._plain_resolver = plain_resolver
        self._ssl = ssl_context
        # Shorter than common server keep-alive timeouts (nginx 75 s, aiohttp 75 s, ELB 60 s), so a
        # reused connection is rarely one the server is closing at that very moment.
        self._idle_s = idle_s
        self._max_body = max_response_bytes
        # aiohttp sends a proxy URL's user info as Proxy-Authorization (on the CONNECT for https
        # destinations, on the request itself for http ones). Only this client holds the URL with
        # the login; the channel's setting (which the guard checks) never carries it.
        self._proxy: URL | str | None = proxy
        if proxy is not None and proxy_login is not None:
            self._proxy = URL(proxy).with_user(proxy_login[0]).with_password(proxy_login[1])
        self._env = env_proxies() if proxy_from_env and proxy is None else {}
        self._dns_ttl_s = dns_ttl_s
        self._checked: dict[str, float] = {}  # destination host -> monotonic time its check expires
        self._proxy_of: dict[tuple[str, str], str | None] = {}
        self._slots: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None
        self._connector: _CountingConnector | None = None
        self._opened_before = 0  # connections of sessions closed since
        self._urls: dict[str, URL] = {}

    @property
    def connections_opened(self) -> int:
        """New connections made so far (for tests and metrics: how often keep-alive did not apply)."""
        now = self._connector.opened if self._connector is not None else 0
        return self._opened_before + now

    def _exempt_hosts(self) -> frozenset[str]:
        hosts = set()
        for scheme, url in self._env.items():
            host = urlsplit(url if "://" in url else f"http://{url}").hostname
            if host and scheme != "no":
                hosts.add(host.lower().rstrip("."))
        return frozenset(hosts)

    def _ensure_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            resolver: AbstractResolver | None = self._resolver
            if resolver is not None and self._env:
                resolver = _SplitResolver(
                    resolver, self._plain_resolver or DefaultResolver(), self._exempt_hosts()
                )
            if self._connector is not None:
                self._opened_before += self._connector.opened
            connector = self._connector = _CountingConnector(
                limit=self._limit,
                limit_per_host=0,
                resolver=resolver,
                use_dns_cache=False,  # every new connection re-resolves and the guard re-checks
                keepalive_timeout=self._idle_s,
                ssl=self._ssl if self._ssl is not None else True,
                socket_factory=resetting_socket,  # a request given up leaves nothing behind
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                # "identity" says no compression outright (an absent header allows any coding), and
                # it spares aiohttp its per-request skip-list merge (skip_auto_headers): ~3 % of a
                # worker's CPU per message at 50 ms (bench/send.py profile).
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
                timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout_s),
                trust_env=False,  # the environment proxies are read here, under `proxy_from_env`
                # A head is at most 64 fields of 8 KiB: the body cap alone would let a hostile
                # server stream headers until the timeout. Providers send a few dozen.
                max_headers=64,
                max_field_size=8190,
            )
        return session

    def _proxy_for(self, scheme: str, host: str) -> URL | str | None:
        if self._proxy is not None:
            return self._proxy
        if not self._env:
            return None
        key = (scheme, host)
        if key not in self._proxy_of:
            if len(self._proxy_of) > 256:  # providers use a handful of hosts; never grow without bound
                self._proxy_of.clear()
            self._proxy_of[key] = proxy_for(scheme, host, self._env)
        return self._proxy_of[key]

    async def _check_destination(self, host: str, port: int) -> None:
        """Through a proxy the connector never resolves the destination: resolve and judge it here
        (the guarded resolver raises DestinationRefusedError for a forbidden address)."""
        if self._resolver is None:
            return
        now = time.monotonic()
        if self._checked.get(host, 0.0) > now:
            return
        try:
            ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            pass
        else:
            return  # a literal: judged by the caller's URL check, as without a proxy
        async with asyncio.timeout(self._connect_timeout_s):
            await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        if len(self._checked) > 256:
            self._checked.clear()
        self._checked[host] = now + self._dns_ttl_s

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """(status, headers, body). Raises OSError or TimeoutError when nothing was sent (connecting,
        the guard, the proxy refusing), HttpClientError after (see its `request_sent`), ValueError
        for a header with a line break or NUL."""
        if method.upper() == "HEAD":
            raise ValueError("HEAD is not supported")
        sent_headers = clean_headers(headers)
        target = self._urls.get(url)
        if target is None:
            target = request_url(url)
            if len(self._urls) < 64:  # providers use a handful of URLs; never grow without bound
                self._urls[url] = target
        proxy = self._proxy_for(target.scheme, target.host or "")
        if proxy is not None:
            await self._check_destination(target.host or "", target.port or 0)
        session = self._ensure_session()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        async with self._slots:
            try:
                async with asyncio.timeout(self._timeout_s):
                    async with session.request(
                        method,
                        target,
                        headers=sent_headers,
                        data=body,
                        allow_redirects=False,
                        proxy=proxy,
                    ) as response:
                        if response.status == 407 and proxy is not None:
                            raise ProxyRefusedError(response.status, response.reason or "")
                        return (response.status, response.headers, await self._read(response))
            except (
                aiohttp.ClientHttpProxyError
            ) as exc:  # the proxy refused the tunnel: nothing reached the destination
                raise ConnectionClosedError(
                    f"proxy refused: {exc.status} {exc.message}", request_sent=False
                ) from exc
            except aiohttp.ClientConnectorCertificateError as exc:  # connecting: nothing was sent
                raise exc.certificate_error from exc
            except aiohttp.ClientConnectorError as exc:
                # The underlying error (refused, unreachable, the guard's DestinationRefusedError).
                raise exc.os_error from exc
            except aiohttp.ConnectionTimeoutError:
                raise
            except TimeoutError as exc:
                raise ResponseTimeoutError("no complete answer within the request timeout") from exc
            except aiohttp.ServerDisconnectedError as exc:
                raise ConnectionClosedError(f"server closed the connection: {exc}") from exc
            except aiohttp.ClientPayloadError as exc:
                raise ConnectionClosedError(f"server closed the connection mid-response: {exc}") from exc
            except aiohttp.ClientResponseError as exc:
                raise MalformedResponseError(f"malformed HTTP response: {exc.message}") from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise ConnectionClosedError(f"connection failed: {exc!r}") from exc

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        length = response.content_length
        if length is not None and length > self._max_body:
            response.close()  # never pooled: the rest of the body is still on the wire
            raise ResponseTooLargeError(f"response body over {self._max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await response.content.readany()
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self._max_body:
                response.close()
                raise ResponseTooLargeError(f"response body over {self._max_body} bytes")
            chunks.append(chunk)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

"""A lean HTTP/1.1 client for provider APIs: pooled keep-alive connections, one request at a time each.

Why not aiohttp's ClientSession here: per request it spends ~120 µs of CPU (URL and header
objects, tracing hooks, timers, payload classes), more than all of our own per-message work; the
SMS benchmark spent a third of each worker in it. Provider calls have one shape - a small body
POSTed to one origin, a small JSON answer - so the request head is a few joined strings and the
answer is parsed by httptools (llhttp, in C): ~50 µs per request, measured the same way.

What it does: keep-alive pooling up to `limit` connections, Content-Length, chunked and
read-until-close responses, `Connection: close`, interim 1xx answers skipped, caps on the answer's
size (headers 64 KiB, body 1 MiB by default), a timeout per request (connect to last byte, not
counting the wait for a free connection) and one for connecting, TLS (system CAs or a given
context), and a resolver hook (the webhook's SSRF guard checks every address it connects to). What
it leaves out on purpose: redirects (never followed), cookies, proxies, compression (none is asked
for), HEAD, streaming, HTTP/2, pipelining.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import select
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import quote, urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from optibridge import __version__

Reply = tuple[int, CIMultiDictProxy[str], bytes]
USER_AGENT = f"optibridge/{__version__}"
MAX_HEADER_BYTES = 64 * 1024


class HttpClientError(Exception):
    """The exchange failed without a usable answer.

    `request_sent`: the request had been written, so the server may have acted on it (a caller
    that must not repeat a request treats the outcome as unknown).
    """

    request_sent = True


class ConnectionClosedError(HttpClientError):
    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class ResponseTimeoutError(HttpClientError, TimeoutError):
    """The request went out; no complete answer came within the request timeout."""


class MalformedResponseError(HttpClientError):
    pass


class ResponseTooLargeError(HttpClientError):
    pass


class Resolver(Protocol):
    """aiohttp's AbstractResolver shape, so its resolvers (and the SSRF guard) plug in unchanged."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = ...) -> Any: ...


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Target:
    origin: Origin
    request_line_tail: str  # " /path?query HTTP/1.1\r\n"
    host: str  # the Host header's value: host[:port], IDNA, IPv6 bracketed


def parse_target(url: str) -> Target:
    """Origin and the fixed part of the request head for an absolute http(s) URL (pure)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = host if host.isascii() else host.encode("idna").decode("ascii")  # what DNS and TLS use
    shown = f"[{shown}]" if ":" in shown else shown
    if port != default:
        shown = f"{shown}:{port}"
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    path = _UNSAFE_IN_TARGET.sub(lambda found: quote(found.group(), safe=""), path)
    _check_header_text(path)
    return Target(Origin(parts.scheme, host, port), f" {path} HTTP/1.1\r\n", shown)


# Spaces, controls and non-ASCII are never valid raw in a request target (a space would split the
# request line): their UTF-8 is percent-encoded, as aiohttp did. The rest, %XX escapes included, is
# sent as written.
_UNSAFE_IN_TARGET = re.compile(r"[^\x21-\x7e]+")


def _check_header_text(text: str) -> None:
    # A CR or LF would let a value end the header and inject another (or a whole request); a NUL
    # is cut or kept differently by each server and proxy on the way.
    if "\r" in text or "\n" in text or "\x00" in text:
        raise ValueError(f"line break or NUL in an HTTP request head: {text[:80]!r}")


def request_head(method: str, target: Target, headers: Any, body_length: int) -> bytes:
    """The request's head, ending with the blank line (pure).

    A caller's Host replaces the URL's (as aiohttp allowed); a caller's Content-Length and
    Transfer-Encoding are dropped: the body is always sent whole with its real length, and a
    second framing header beside it is the request-smuggling shape.
    """
    lines = [method, target.request_line_tail, ""]
    host = target.host
    has_user_agent = False
    for name, value in headers.items():
        value = str(value)
        _check_header_text(name)
        _check_header_text(value)
        lowered = name.lower()
        if lowered == "host":
            host = value
        elif lowered not in ("content-length", "transfer-encoding"):
            lines.append(f"{name}: {value}\r\n")
            if lowered == "user-agent":
                has_user_agent = True
    lines[2] = f"Host: {host}\r\n"
    if not has_user_agent:
        lines.append(f"User-Agent: {USER_AGENT}\r\n")
    lines.append(f"Content-Length: {body_length}\r\n\r\n")
    return "".join(lines).encode("utf-8")  # only header values can be non-ASCII; aiohttp sent UTF-8 too


class _Connection(asyncio.Protocol):
    """One connection: feeds received bytes to llhttp and resolves the waiting request."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[Reply, bool]] | None = None
        self.closed = False
        self.idle_since = 0.0
        self._poller: Any = None  # select.poll on this socket, made at the first reuse check
        self._reset()

    def _reset(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.delimited = False  # has Content-Length or chunked: the end is in the stream, not the close

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the stream cannot be trusted any more
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponseError(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool:
        self.closed = True
        return False  # let the transport close; connection_lost settles a read-until-close answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and not self.delimited:
            self._finish(keep_alive=False)  # the body was "everything until the server closed"
        else:
            why = "mid-response" if self.headers_done or self.headers else "before answering"
            waiter.set_exception(ConnectionClosedError(f"server closed the connection {why}"))

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            # More answers than requests, in the same read as the answer (or before the request's
            # task resumed): the connection is out of step; never pool it, or the next exchange
            # would get these bytes mixed into its answer.
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.size += len(name) + len(value)
        if self.size > MAX_HEADER_BYTES:  # the body cap alone would let headers stream forever
            self._fail(MalformedResponseError(f"response headers over {MAX_HEADER_BYTES} bytes"))
            return
        key = name.decode("latin-1")
        lowered = key.lower()
        if lowered == "content-length" or (lowered == "transfer-encoding" and b"chunked" in value.lower()):
            self.delimited = True
        self.headers.append((key, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.size = 0  # from here on it counts the body
        status = self.parser.get_status_code()
        if status in (204, 304) or 100 <= status < 200:
            self.delimited = True  # no body by definition

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            self._fail(ResponseTooLargeError(f"response body over {self.max_body} bytes"))
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            self._reset()  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            return
        self._finish(keep_alive=self.parser.should_keep_alive())

    # -- helpers --

    def _finish(self, *, keep_alive: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        headers = CIMultiDictProxy(CIMultiDict(self.headers))
        reply = (self.parser.get_status_code(), headers, b"".join(self.body))
        self._reset()
        waiter.set_result((reply, keep_alive))

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def has_unread_input(self) -> bool:
        """Whether the kernel holds bytes or an EOF for this socket that the loop has not delivered.

        An idle connection with either is not reusable: the server closed it (or sent something
        unasked) and the loop has not run the read yet - always so when the server closes right
        after an answer and the next request follows in the same loop pass, often under load.
        """
        if self._poller is None:  # once per connection: its socket never changes
            sock = self.transport.get_extra_info("socket") if self.transport is not None else None
            if sock is None or not hasattr(select, "poll"):  # no poll() on Windows: rely on `closed`
                return False
            fd = sock.fileno()
            if fd < 0:
                return True
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN)
        return bool(self._poller.poll(0))  # readable, hung up or in error: all mean "do not reuse"

    async def exchange(self, data: bytes, deadline: float) -> tuple[Reply, bool]:
        """Send `data`, wait for the answer until the loop's clock reaches `deadline`."""
        if self.transport is None or self.closed:
            raise ConnectionClosedError("connection closed before the request was sent", request_sent=False)
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        timer = loop.call_at(deadline, self._expire)
        try:
            self.transport.write(data)
            return await self.waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _expire(self) -> None:
        self._fail(ResponseTimeoutError("no complete answer within the request timeout"))


class Http1Client:
    """Pooled HTTP/1.1 to any number of origins; at most `limit` requests (and connections) at once."""

    def __init__(
        self,
        *,
        limit: int,
        timeout_s: float,
        connect_timeout_s: float,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        idle_s: float = 10.0,
        max_response_bytes: int = 1 << 20,
    ) -> None:
        self._limit = limit
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._resolver = resolver
        self._ssl = ssl_context
        # Shorter than common server keep-alive timeouts (nginx 75 s, aiohttp 75 s, ELB 60 s), so a
        # reused connection is rarely one the server is closing at that very moment.
        self._idle_s = idle_s
        self._max_body = max_response_bytes
        self._slots: asyncio.Semaphore | None = None
        self._idle: dict[Origin, list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._targets: dict[str, Target] = {}
        self.connections_opened = 0  # for tests and metrics: how often keep-alive did not apply

    async def request(self, method: str, url: str, headers: Any, body: bytes) -> Reply:
        """(status, headers, body). Raises OSError or TimeoutError while connecting (nothing was
        sent), HttpClientError after (see its `request_sent`)."""
        if method.upper() == "HEAD":
            raise ValueError("HEAD is not supported")
        target = self._targets.get(url)
        if target is None:
            target = parse_target(url)
            if len(self._targets) < 64:  # providers use a handful of URLs; never grow without bound
                self._targets[url] = target
        data = request_head(method, target, headers, len(body)) + body
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        async with self._slots:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._timeout_s
            conn = self._take_idle(target.origin)
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect(target.origin)
            try:
                # A bare timer, not asyncio.timeout: this runs per message, and the context
                # manager's task bookkeeping costs several times more.
                reply, keep_alive = await conn.exchange(data, deadline)
            except BaseException:
                self._discard(conn)
                raise
            if keep_alive and not conn.closed:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(target.origin, []).append(conn)
            else:
                self._discard(conn)
            return reply

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed
            if not conn.closed and now - conn.idle_since < self._idle_s and not conn.has_unread_input():
                return conn
            self._discard(conn)
        return None

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._all.discard(conn)

    async def _addresses(self, origin: Origin) -> list[tuple[int, str, int]]:
        """(family, ip, port) to try in order; a resolver may refuse (the SSRF guard raises)."""
        host = origin.host
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            return [(family, host, origin.port)]
        if self._resolver is not None:
            found = await self._resolver.resolve(host, origin.port, family=socket.AF_UNSPEC)
            return [(r["family"], r["host"], r["port"] or origin.port) for r in found]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, origin.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        return [(family, str(sockaddr[0]), origin.port) for family, _, _, _, sockaddr in infos]

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = origin.scheme == "https"
        if tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        failure: OSError | None = None
        async with asyncio.timeout(self._connect_timeout_s):
            for family, ip, port in await self._addresses(origin):
                try:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self._max_body),
                        ip,
                        port,
                        family=family,
                        ssl=self._ssl if tls else None,
                        server_hostname=origin.host if tls else None,
                    )
                except OSError as exc:  # refused, unreachable, TLS verification failed: next address
                    failure = exc
                    continue
                self.connections_opened += 1
                self._all.add(conn)
                return conn
        raise failure or OSError(f"{origin.host} resolved to no address")

    async def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let transports run their close callbacks

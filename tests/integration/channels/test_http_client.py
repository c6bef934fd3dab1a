"""The providers' HTTP/1.1 client (aiohttp underneath) against real servers on 127.0.0.1: aiohttp.web,
and raw asyncio servers for the answers aiohttp.web never gives (interim 1xx, read-until-close,
garbage, closing mid-body). What it must keep: failures before vs after the request was written
(request_sent), no redirects, size caps, refusal of line breaks and NUL in headers, hop-by-hop
headers dropped.

Every wait is bounded: requests carry the client's own timeout, server waits use asyncio.timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from optibridge.channels.http_client import (
    USER_AGENT,
    ConnectionClosedError,
    HttpClient,
    HttpClientError,
    MalformedResponseError,
    ResponseTooLargeError,
)

from servicekit import free_port

LOOPBACK = "127.0.0.1"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def make_client(**overrides: Any) -> HttpClient:
    options: dict[str, Any] = {"limit": 4, "timeout_s": 5.0, "connect_timeout_s": 2.0, **overrides}
    return HttpClient(**options)


@contextlib.asynccontextmanager
async def running_client(**overrides: Any) -> AsyncIterator[HttpClient]:
    client = make_client(**overrides)
    try:
        yield client
    finally:
        await client.close()


# -- an aiohttp server that counts the connections it served --


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AiohttpServer:
    """aiohttp.web on 127.0.0.1:<free port>; remembers every transport a request came on."""

    def __init__(
        self,
        routes: Iterable[tuple[str, str, Handler]],
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_timeout: float = 75.0,
    ) -> None:
        self.transports: set[object] = set()  # strong references: no id reuse, exact count
        self.requests = 0
        self._ssl = ssl_context
        self._keepalive_timeout = keepalive_timeout
        self.app = web.Application(middlewares=[self._track])
        for method, path, handler in routes:
            self.app.router.add_route(method, path, handler)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @web.middleware
    async def _track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        self.transports.add(request.transport)
        return await handler(request)

    @property
    def connections(self) -> int:
        return len(self.transports)

    def url(self, path: str) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}{path}"

    async def __aenter__(self) -> AiohttpServer:
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, keepalive_timeout=self._keepalive_timeout
        )
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0, ssl_context=self._ssl)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def ok_handler(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


# -- a raw asyncio server: one scripted behaviour per request path --


@dataclass
class RawRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    """The next request on the connection, or None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    method, path, version = request_line.split(" ")
    assert version == "HTTP/1.1"
    headers: dict[str, str] = {}
    for line in lines:
        name, value = line.split(":", 1)
        assert name.lower() not in headers, f"repeated header {name}"
        headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawRequest(method, path, headers, body)


async def wait_for_close(reader: asyncio.StreamReader) -> None:
    """Read and drop whatever comes until the client closes the connection."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


# A behaviour answers one request; it returns True to keep the connection for the next one.
Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


def replies(*parts: bytes, keep: bool = True, pause: float = 0.0) -> Behaviour:
    """Write `parts` (flushing, and pausing `pause` s, between them), then keep or close."""

    async def behave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        for index, part in enumerate(parts):
            if index and pause:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        return keep

    return behave


async def closes_silently(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    return False


async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    await wait_for_close(reader)
    return False


@dataclass
class RawServer:
    """asyncio.start_server on 127.0.0.1; dispatches each request by its path to a behaviour."""

    behaviours: dict[str, Behaviour]
    accepted: int = 0
    requests: list[RawRequest] = field(default_factory=list)
    closed_connections: int = 0  # connections whose handling has ended (either side closed)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while (request := await read_request(reader)) is not None:
                self.requests.append(request)
                if not await self.behaviours.get(request.path, replies(OK))(reader, writer):
                    break
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self.closed_connections += 1
            self._tasks.discard(task)
            self._writers.discard(writer)

    async def wait_closed_connections(self, count: int, within: float = 3.0) -> None:
        async with asyncio.timeout(within):
            while self.closed_connections < count:
                await asyncio.sleep(0.005)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):  # ends every handler: its reads see the close
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3.0)
        for task in list(self._tasks):  # only a handler stuck elsewhere: never expected
            task.cancel()
        await self._server.wait_closed()


# ---------------------------------------------------------------------------------------------
# Scenarios shared by the default asyncio loop and uvloop (see test_core_scenarios_on_each_loop).
# ---------------------------------------------------------------------------------------------


async def scenario_keep_alive() -> None:
    """50 sequential requests ride one connection, seen from both ends."""
    async with AiohttpServer([("POST", "/echo", echo_handler)]) as server, running_client() as client:
        for n in range(50):
            status, _, body = await client.request(
                "POST", server.url(f"/echo?n={n}"), {"Content-Type": "text/plain"}, f"m{n}".encode()
            )
            assert (status, body) == (200, f"POST /echo?n={n} m{n}".encode())
        assert client.connections_opened == 1
        assert server.connections == 1
        assert server.requests == 50


async def echo_handler(request: web.Request) -> web.StreamResponse:
    text = await request.text()
    return web.Response(text=f"{request.method} {request.path_qs} {text}")


async def scenario_errors_leave_the_client_usable() -> None:
    """Each failure discards its connection only; the next request succeeds on a fresh one."""
    behaviours: dict[str, Behaviour] = {
        "/closes": closes_silently,
        "/mid-body": replies(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", keep=False),
        "/garbage": replies(b"SSH-2.0-OpenSSH_9.6\r\n", keep=False),
        "/hangs": never_answers,
        "/until-close": replies(b"HTTP/1.0 200 OK\r\n\r\nall of ", b"it", keep=False, pause=0.02),
    }
    async with RawServer(behaviours) as server, running_client(timeout_s=0.3) as client:
        with pytest.raises(ConnectionClosedError):
            await client.request("POST", server.url("/closes"), {}, b"x")
        status, _, body = await client.request("POST", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")
        with pytest.raises(ConnectionClosedError):
            await client.request("POST", server.url("/mid-body"), {}, b"x")
        with pytest.raises(MalformedResponseError):
            await client.request("POST", server.url("/garbage"), {}, b"x")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.request("POST", server.url("/hangs"), {}, b"x")
        assert time.monotonic() - started < 3.0
        status, _, body = await client.request("POST", server.url("/until-close"), {}, b"")
        assert (status, body) == (200, b"all of it")
        status, _, body = await client.request("POST", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert [r.path for r in server.requests] == [
            "/closes",
            "/ok",
            "/mid-body",
            "/garbage",
            "/hangs",
            "/until-close",
            "/ok",
        ]
        # The first /ok connection was kept and reused for /mid-body; each other request needed one.
        assert client.connections_opened == server.accepted == 6


async def scenario_server_closes_after_answering(*, wait: bool) -> None:
    """The close is not advertised (no `Connection: close`); the connection must still not be reused.

    At once: the FIN has reached the client's socket but the loop has not read it yet when the next
    request looks for an idle connection.
    """
    async with RawServer({"/once": replies(OK, keep=False)}) as server, running_client() as client:
        for round_ in range(3):
            status, _, _ = await client.request("GET", server.url("/once"), {}, b"")
            assert status == 200
            if wait:
                await server.wait_closed_connections(round_ + 1)
                await asyncio.sleep(0.05)  # the FIN reaches the client and the loop reads it
        status, _, body = await client.request("GET", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert client.connections_opened == server.accepted == 4


async def scenario_tls(cert_path: str, server_context: ssl.SSLContext) -> None:
    trusting = ssl.create_default_context(cafile=cert_path)
    async with AiohttpServer([("GET", "/", ok_handler)], ssl_context=server_context) as server:
        async with running_client(ssl_context=trusting) as client:
            for _ in range(3):
                status, _, body = await client.request("GET", server.url("/"), {}, b"")
                assert (status, body) == (200, b"ok")
            assert client.connections_opened == 1
            assert server.connections == 1
        async with running_client() as client:  # the system CAs do not know this certificate
            with pytest.raises(ssl.SSLCertVerificationError) as failure:
                await client.request("GET", server.url("/"), {}, b"")
            assert isinstance(failure.value, OSError)  # what the adapters catch
        assert server.requests == 3


# ---------------------------------------------------------------------------------------------
# The tests.
# ---------------------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection() -> None:
    await scenario_keep_alive()


async def test_failures_leave_the_client_usable() -> None:
    await scenario_errors_leave_the_client_usable()


async def test_tls_with_a_trusted_certificate_and_without(
    tls_files: tuple[str, str], server_tls: ssl.SSLContext
) -> None:
    await scenario_tls(tls_files[0], server_tls)


def _run_on(loop_factory: Callable[[], asyncio.AbstractEventLoop], scenario: Awaitable[None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(30):
            await scenario

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(bounded())


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_core_scenarios_on_each_loop(
    loop_name: str, tls_files: tuple[str, str], server_tls: ssl.SSLContext
) -> None:
    """Production runs on uvloop, whose transports are not asyncio.Transport subclasses."""
    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        loop_factory = asyncio.new_event_loop

    async def all_scenarios() -> None:
        loop = asyncio.get_running_loop()
        assert (type(loop).__module__.split(".")[0] == "uvloop") == (loop_name == "uvloop")
        await scenario_keep_alive()
        await scenario_errors_leave_the_client_usable()
        await scenario_server_closes_after_answering(wait=False)
        await scenario_tls(tls_files[0], server_tls)

    _run_on(loop_factory, all_scenarios())


# -- what the server receives --


async def test_the_request_arrives_intact() -> None:
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.path_qs, dict(request.headers), await request.read()))
        return web.json_response({"sid": "SM1"}, status=201)

    body = '{"to":"+15550001111","text":"Zoë ☃"}'.encode()
    async with AiohttpServer([("PUT", "/v1/send", record)]) as server, running_client() as client:
        status, headers, answer = await client.request(
            "PUT",
            server.url("/v1/send?x=1&y=%2F"),
            {"Content-Type": "application/json", "Authorization": "Bearer t0k"},
            body,
        )
    assert (status, answer) == (201, b'{"sid": "SM1"}')
    assert headers["Content-Type"].startswith("application/json")
    [(method, path_qs, sent, received)] = seen
    assert (method, path_qs, received) == ("PUT", "/v1/send?x=1&y=%2F", body)
    assert sent["Host"] == f"{LOOPBACK}:{server.port}"
    assert sent["User-Agent"] == USER_AGENT
    assert sent["Content-Length"] == str(len(body))
    assert sent["Authorization"] == "Bearer t0k"
    # No compressed answer may be offered: it could inflate past the body cap.
    assert sent["Accept-Encoding"] == "identity"


async def test_non_ascii_in_the_url_and_headers_arrives_as_utf8() -> None:
    seen: list[tuple[str, str, str]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append((request.path, request.query["name"], request.headers["X-Name"]))
        return web.Response(text="ok")

    async with AiohttpServer([("POST", "/hook/{tail}", record)]) as server, running_client() as client:
        status, _, _ = await client.request(
            "POST", server.url("/hook/zoë ☃?name=Zoë ☃"), {"X-Name": "Zoë ☃"}, b"{}"
        )
    assert status == 200
    assert seen == [("/hook/zoë ☃", "Zoë ☃", "Zoë ☃")]


async def test_head_requests_are_refused() -> None:
    async with running_client() as client:
        with pytest.raises(ValueError, match="HEAD"):
            await client.request("head", f"http://{LOOPBACK}:{free_port()}/", {}, b"")
        assert client.connections_opened == 0


# -- pooling --


async def test_concurrency_is_limited_to_the_pool_size() -> None:
    in_flight = 0
    most = 0

    async def slow(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.05)
        finally:
            in_flight -= 1
        return web.Response(text=request.query["n"])

    async with AiohttpServer([("GET", "/slow", slow)]) as server, running_client(limit=4) as client:
        replies_ = await asyncio.gather(
            *(client.request("GET", server.url(f"/slow?n={n}"), {}, b"") for n in range(20))
        )
        assert [body for _, _, body in replies_] == [str(n).encode() for n in range(20)]
        assert most == 4  # the limit was reached, never passed
        assert client.connections_opened <= 4
        assert server.connections <= 4
        assert server.requests == 20


async def test_waiting_for_a_free_connection_does_not_count_against_the_timeout() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.15)
        return web.Response(text="ok")

    async with AiohttpServer([("GET", "/slow", slow)]) as server:
        async with running_client(limit=1, timeout_s=0.5) as client:
            started = time.monotonic()
            results = await asyncio.gather(
                *(client.request("GET", server.url("/slow"), {}, b"") for _ in range(5))
            )
            assert time.monotonic() - started > 0.5  # longer in all than one request's timeout
        assert [status for status, _, _ in results] == [200] * 5
        assert client.connections_opened == 1


async def test_each_origin_has_its_own_connections() -> None:
    async with (
        AiohttpServer([("GET", "/", ok_handler)]) as first,
        AiohttpServer([("GET", "/", ok_handler)]) as second,
        running_client() as client,
    ):
        for _ in range(3):
            for server in (first, second):
                status, _, _ = await client.request("GET", server.url("/"), {}, b"")
                assert status == 200
        assert client.connections_opened == 2
        assert (first.connections, second.connections) == (1, 1)


# -- response bodies --


async def test_content_length_body() -> None:
    payload = os.urandom(100_000)

    async def blob(request: web.Request) -> web.StreamResponse:
        return web.Response(body=payload, content_type="application/octet-stream")

    async with AiohttpServer([("GET", "/blob", blob)]) as server, running_client() as client:
        status, headers, body = await client.request("GET", server.url("/blob"), {}, b"")
        assert (status, body) == (200, payload)
        assert headers["content-length"] == str(len(payload))


async def test_chunked_body_and_the_connection_is_reused_after_it() -> None:
    pieces = [os.urandom(size) for size in (1, 10, 1000, 30_000, 7)]

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
        await response.write_eof()
        return response

    async with (
        AiohttpServer([("GET", "/chunked", chunked), ("GET", "/", ok_handler)]) as server,
        running_client() as client,
    ):
        status, headers, body = await client.request("GET", server.url("/chunked"), {}, b"")
        assert (status, body) == (200, b"".join(pieces))
        assert headers["transfer-encoding"].lower() == "chunked"
        status, _, body = await client.request("GET", server.url("/"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert client.connections_opened == 1 == server.connections


async def test_raw_chunked_body_with_extensions_and_trailers() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n"
        b"1\r\n \r\n"
        b"5\r\nworld\r\n"
        b"0\r\nX-Trailer: t\r\n\r\n"
    )
    async with RawServer({"/chunked": replies(answer)}) as server, running_client() as client:
        status, _, body = await client.request("GET", server.url("/chunked"), {}, b"")
        assert (status, body) == (200, b"hello world")
        status, _, body = await client.request("GET", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert client.connections_opened == server.accepted == 1


@pytest.mark.parametrize(
    "answer",
    [
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"read until ", b"the server closes"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"read until ", b"the server closes"),
    ],
    ids=["http/1.0", "http/1.1-connection-close"],
)
async def test_body_without_length_ends_when_the_server_closes(answer: tuple[bytes, ...]) -> None:
    behaviours = {"/until-close": replies(*answer, keep=False, pause=0.05)}
    async with RawServer(behaviours) as server, running_client() as client:
        status, _, body = await client.request("GET", server.url("/until-close"), {}, b"")
        assert (status, body) == (200, b"read until the server closes")
        status, _, body = await client.request("GET", server.url("/ok"), {}, b"")  # a new connection
        assert (status, body) == (200, b"ok")
        assert client.connections_opened == server.accepted == 2


async def test_no_content_and_not_modified_have_no_body() -> None:
    async def no_content(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={"X-Request-Id": "r1"})

    async def not_modified(request: web.Request) -> web.StreamResponse:
        return web.Response(status=304)

    async with (
        AiohttpServer([("DELETE", "/thing", no_content), ("GET", "/thing", not_modified)]) as server,
        running_client() as client,
    ):
        for _ in range(2):
            status, headers, body = await client.request("DELETE", server.url("/thing"), {}, b"")
            assert (status, body, headers["x-request-id"]) == (204, b"", "r1")
            status, _, body = await client.request("GET", server.url("/thing"), {}, b"")
            assert (status, body) == (304, b"")
        assert client.connections_opened == 1  # neither answer waits for a close


async def test_response_headers_are_case_insensitive_and_keep_repeats() -> None:
    async def many(request: web.Request) -> web.StreamResponse:
        response = web.Response(text="{}", content_type="application/json")
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        response.headers["Retry-After"] = "7"
        return response

    async with AiohttpServer([("GET", "/", many)]) as server, running_client() as client:
        status, headers, _ = await client.request("GET", server.url("/"), {}, b"")
    assert status == 200
    assert headers["content-type"] == headers["CONTENT-TYPE"] == "application/json; charset=utf-8"
    assert headers["retry-after"] == "7"
    assert headers.getall("set-cookie") == ["a=1", "b=2"]


async def test_error_statuses_are_answers_not_exceptions() -> None:
    async def throttled(request: web.Request) -> web.StreamResponse:
        return web.Response(status=429, text="slow down", headers={"Retry-After": "3"})

    async with AiohttpServer([("POST", "/", throttled)]) as server, running_client() as client:
        status, headers, body = await client.request("POST", server.url("/"), {}, b"{}")
        assert (status, headers["retry-after"], body) == (429, "3", b"slow down")
        status, _, _ = await client.request("POST", server.url("/nowhere"), {}, b"{}")
        assert status == 404
        assert client.connections_opened == 1


async def test_interim_answers_are_skipped() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nX-Final: yes\r\nContent-Length: 4\r\n\r\ndone",
    )
    async with RawServer({"/send": replies(*answer, pause=0.01)}) as server, running_client() as client:
        status, headers, body = await client.request("POST", server.url("/send"), {}, b"x")
        assert (status, body) == (201, b"done")
        assert headers["x-final"] == "yes"
        assert "link" not in headers  # the interim answer's headers are not mixed in
        status, _, body = await client.request("POST", server.url("/ok"), {}, b"")  # same connection
        assert (status, body) == (200, b"ok")
        assert client.connections_opened == server.accepted == 1


async def test_interim_and_final_answer_in_one_packet() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes"
    async with RawServer({"/send": replies(answer)}) as server, running_client() as client:
        status, _, body = await client.request("POST", server.url("/send"), {}, b"x")
        assert (status, body) == (200, b"yes")


# -- Connection: close and idle connections --


async def test_connection_close_from_the_server_opens_a_new_connection_next_time() -> None:
    async def closing(request: web.Request) -> web.StreamResponse:
        response = web.Response(text="bye")
        response.force_close()
        return response

    async with (
        AiohttpServer([("GET", "/close", closing), ("GET", "/", ok_handler)]) as server,
        running_client() as client,
    ):
        status, headers, body = await client.request("GET", server.url("/close"), {}, b"")
        assert (status, body, headers["connection"].lower()) == (200, b"bye", "close")
        status, _, body = await client.request("GET", server.url("/"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert client.connections_opened == server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",  # 1.0 without keep-alive: one request
    ],
    ids=["connection-close", "http/1.0"],
)
async def test_a_connection_announced_as_closing_is_not_reused_even_if_left_open(answer: bytes) -> None:
    async with RawServer({"/bye": replies(answer, keep=True)}) as server, running_client() as client:
        status, _, body = await client.request("GET", server.url("/bye"), {}, b"")
        assert (status, body) == (200, b"bye")
        status, _, body = await client.request("GET", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert client.connections_opened == server.accepted == 2
        await server.wait_closed_connections(1)  # and the client hung up the first one itself


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async with (
        AiohttpServer([("GET", "/", ok_handler)], keepalive_timeout=0.1) as server,
        running_client() as client,
    ):
        status, _, _ = await client.request("GET", server.url("/"), {}, b"")
        await asyncio.sleep(0.4)  # the server's keep-alive (0.1 s) runs out and it closes
        status, _, body = await client.request("GET", server.url("/"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert client.connections_opened == server.connections == 2


@pytest.mark.parametrize("wait", [False, True], ids=["next-request-at-once", "after-the-close-arrived"])
async def test_a_raw_server_closing_after_its_answer_is_not_reused(wait: bool) -> None:
    """HTTP/1.1 keep-alive by default, but the server closes right after answering."""
    await scenario_server_closes_after_answering(wait=wait)


async def test_idle_connections_older_than_idle_s_are_not_reused() -> None:
    async with AiohttpServer([("GET", "/", ok_handler)]) as server, running_client(idle_s=0.05) as client:
        await client.request("GET", server.url("/"), {}, b"")
        await client.request("GET", server.url("/"), {}, b"")  # at once: reused
        assert client.connections_opened == 1
        await asyncio.sleep(0.15)
        status, _, _ = await client.request("GET", server.url("/"), {}, b"")
        assert status == 200
        assert client.connections_opened == server.connections == 2


async def test_an_unsolicited_answer_on_an_idle_connection_is_not_taken_for_the_next_one() -> None:
    """E.g. a 408 a server sends before closing an idle connection: the stream is no longer usable."""
    late = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 7\r\n\r\ntimeout"

    async def answers_then_speaks_unasked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(late)
        await writer.drain()
        await wait_for_close(reader)
        return False

    async with (
        RawServer({"/first": answers_then_speaks_unasked}) as server,
        running_client() as client,
    ):
        await client.request("GET", server.url("/first"), {}, b"")
        await asyncio.sleep(0.2)  # the unasked answer has arrived
        status, _, body = await client.request("GET", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")  # never the 408
        assert client.connections_opened == server.accepted == 2


async def test_extra_bytes_after_an_answer_are_not_mixed_into_the_next_answer() -> None:
    """A second, unasked answer in the same packet as the first must not leak into the next exchange."""
    extra = b"HTTP/1.1 200 OK\r\nX-Stale: 1\r\nContent-Length: 5\r\n\r\nstale"
    async with RawServer({"/first": replies(OK + extra)}) as server, running_client() as client:
        status, headers, body = await client.request("GET", server.url("/first"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert "x-stale" not in headers
        status, headers, body = await client.request("GET", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert "x-stale" not in headers
        assert client.connections_opened == server.accepted == 2  # the out-of-step one was dropped


async def test_half_an_extra_answer_after_an_answer_does_not_poison_the_connection() -> None:
    async with (
        RawServer({"/first": replies(OK + b"HTTP/1.1 200 OK\r\nX-Sta")}) as server,
        running_client() as client,
    ):
        await client.request("GET", server.url("/first"), {}, b"")
        status, headers, body = await client.request("GET", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert list(headers) == ["Content-Type", "Content-Length"]


# -- failures, each followed by a successful request --


@pytest.mark.parametrize(
    "behaviour",
    [
        closes_silently,
        replies(b"HTTP/1.1 200 OK\r\nContent-Ty", keep=False),
        replies(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", keep=False),
        replies(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", keep=False),
    ],
    ids=["before-answering", "mid-head", "mid-body-content-length", "mid-body-chunked"],
)
async def test_server_closing_early_is_connection_closed(behaviour: Behaviour) -> None:
    async with RawServer({"/fail": behaviour}) as server, running_client() as client:
        with pytest.raises(ConnectionClosedError) as failure:
            await client.request("POST", server.url("/fail"), {}, b"payload")
        assert isinstance(failure.value, HttpClientError)
        status, _, body = await client.request("POST", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")
        assert [r.body for r in server.requests] == [b"payload", b""]


async def test_server_resetting_the_connection_is_connection_closed() -> None:
    async def resets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False  # close with linger 0: an RST, not a FIN

    async with RawServer({"/reset": resets}) as server, running_client() as client:
        with pytest.raises(ConnectionClosedError):
            await client.request("POST", server.url("/reset"), {}, b"x")
        status, _, _ = await client.request("POST", server.url("/ok"), {}, b"")
        assert status == 200


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS handshake: https served on an http URL
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    ],
    ids=["ssh-banner", "tls-bytes", "bad-status", "bad-length", "bad-chunk-size", "two-lengths"],
)
async def test_garbage_is_malformed_response(garbage: bytes) -> None:
    async def speaks_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(garbage)
        await writer.drain()
        await wait_for_close(reader)  # stays open: the client must not wait for a close to give up
        return False

    async with RawServer({"/garbage": speaks_garbage}) as server, running_client(timeout_s=15.0) as client:
        started = time.monotonic()
        with pytest.raises(MalformedResponseError):
            await client.request("GET", server.url("/garbage"), {}, b"")
        assert time.monotonic() - started < 5.0  # well before the 15 s response timeout
        status, _, _ = await client.request("GET", server.url("/ok"), {}, b"")
        assert status == 200


async def test_https_url_on_a_plain_http_server_fails_cleanly() -> None:
    async with AiohttpServer([("GET", "/", ok_handler)]) as server, running_client() as client:
        with pytest.raises((OSError, HttpClientError)):
            await client.request("GET", f"https://{LOOPBACK}:{server.port}/", {}, b"")
        status, _, _ = await client.request("GET", server.url("/"), {}, b"")
        assert status == 200


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
async def test_body_over_the_cap_is_too_large(framing: str) -> None:
    cap = 1000
    exact = b"e" * cap
    too_big = b"b" * (cap + 1)

    def answer(body: bytes) -> Behaviour:
        if framing == "content-length":
            return replies(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        if framing == "chunked":
            half = len(body) // 2
            chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
            return replies(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
        return replies(b"HTTP/1.0 200 OK\r\n\r\n", body, keep=False, pause=0.01)

    behaviours = {"/exact": answer(exact), "/big": answer(too_big)}
    async with RawServer(behaviours) as server, running_client(max_response_bytes=cap) as client:
        status, _, body = await client.request("GET", server.url("/exact"), {}, b"")
        assert (status, body) == (200, exact)
        with pytest.raises(ResponseTooLargeError):
            await client.request("GET", server.url("/big"), {}, b"")
        status, _, body = await client.request("GET", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")


async def test_aiohttp_body_over_the_cap_is_too_large() -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 50_000)

    async with (
        AiohttpServer([("GET", "/big", big), ("GET", "/", ok_handler)]) as server,
        running_client(max_response_bytes=10_000) as client,
    ):
        with pytest.raises(ResponseTooLargeError):
            await client.request("GET", server.url("/big"), {}, b"")
        status, _, _ = await client.request("GET", server.url("/"), {}, b"")
        assert status == 200


@pytest.mark.parametrize(
    "behaviour",
    [never_answers, replies(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", keep=True)],
    ids=["never-answers", "stalls-mid-body"],
)
async def test_a_silent_server_times_out_within_timeout_s(behaviour: Behaviour) -> None:
    async def then_waits(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await behaviour(reader, writer)
        await wait_for_close(reader)
        return False

    async with RawServer({"/slow": then_waits}) as server, running_client(timeout_s=0.3) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.request("GET", server.url("/slow"), {}, b"")
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 3.0
        await server.wait_closed_connections(1)  # the timed-out connection was closed, not pooled
        status, _, _ = await client.request("GET", server.url("/ok"), {}, b"")
        assert status == 200
        assert client.connections_opened == server.accepted == 2


async def test_connection_refused_is_an_oserror() -> None:
    async with running_client() as client:
        with pytest.raises(ConnectionRefusedError):
            await client.request("POST", f"http://{LOOPBACK}:{free_port()}/", {}, b"x")
        assert client.connections_opened == 0
        async with AiohttpServer([("POST", "/", ok_handler)]) as server:
            status, _, _ = await client.request("POST", server.url("/"), {}, b"x")
        assert status == 200


# -- TLS --


async def test_tls_hostname_is_checked_against_the_url_host(
    tls_files: tuple[str, str], server_tls: ssl.SSLContext
) -> None:
    """The certificate names 127.0.0.1; reaching the same server as `api.provider.test` must fail."""
    trusting = ssl.create_default_context(cafile=tls_files[0])
    async with AiohttpServer([("GET", "/", ok_handler)], ssl_context=server_tls) as server:
        resolver = FakeResolver({"api.provider.test": LOOPBACK})
        async with running_client(ssl_context=trusting, resolver=resolver) as client:
            with pytest.raises(ssl.SSLCertVerificationError):
                await client.request("GET", f"https://api.provider.test:{server.port}/", {}, b"")
            status, _, _ = await client.request("GET", server.url("/"), {}, b"")
            assert status == 200
        assert server.requests == 1


# -- the resolver hook --


class FakeResolver:
    """aiohttp's resolver shape: made-up names to loopback addresses, and a record of the calls."""

    def __init__(self, names: dict[str, str | list[tuple[str, int]] | BaseException]) -> None:
        self.names = names
        self.calls: list[tuple[str, int, socket.AddressFamily]] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[dict[str, Any]]:
        self.calls.append((host, port, family))
        answer = self.names[host]
        if isinstance(answer, BaseException):
            raise answer
        addresses = [(answer, port)] if isinstance(answer, str) else answer
        return [
            {"hostname": host, "host": ip, "port": to_port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for ip, to_port in addresses
        ]

    async def close(self) -> None:
        return None


async def test_a_resolver_points_a_made_up_name_at_the_server() -> None:
    seen_hosts: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen_hosts.append(request.headers["Host"])
        return web.Response(text="ok")

    async with AiohttpServer([("POST", "/hook", record)]) as server:
        resolver = FakeResolver({"api.provider.test": LOOPBACK})
        async with running_client(resolver=resolver) as client:
            for _ in range(2):
                status, _, body = await client.request(
                    "POST", f"http://api.provider.test:{server.port}/hook", {}, b"{}"
                )
                assert (status, body) == (200, b"ok")
    assert seen_hosts == [f"api.provider.test:{server.port}"] * 2
    assert resolver.calls == [("api.provider.test", server.port, socket.AF_UNSPEC)]  # once per connection


async def test_a_resolver_answer_may_change_the_port_and_is_tried_in_order() -> None:
    async with AiohttpServer([("GET", "/", ok_handler)]) as server:
        dead = free_port()
        resolver = FakeResolver({"api.provider.test": [(LOOPBACK, dead), (LOOPBACK, server.port)]})
        async with running_client(resolver=resolver) as client:
            status, _, _ = await client.request("GET", "http://api.provider.test/", {}, b"")
        assert status == 200
        assert server.connections == 1
        assert client.connections_opened == 1


async def test_an_ip_literal_does_not_ask_the_resolver() -> None:
    resolver = FakeResolver({})
    async with (
        AiohttpServer([("GET", "/", ok_handler)]) as server,
        running_client(resolver=resolver) as client,
    ):
        status, _, _ = await client.request("GET", server.url("/"), {}, b"")
    assert status == 200
    assert resolver.calls == []


async def test_a_resolver_refusal_is_raised() -> None:
    class Refused(OSError):
        pass

    refusal = Refused("destination refused: internal.test resolves to 10.0.0.1 is private")
    resolver = FakeResolver({"internal.test": refusal})
    async with running_client(resolver=resolver) as client:
        with pytest.raises(Refused) as failure:
            await client.request("POST", "http://internal.test/hook", {}, b"{}")
        assert failure.value is refusal
        assert client.connections_opened == 0


async def test_a_hanging_resolver_is_bounded_by_the_connect_timeout() -> None:
    class Hangs:
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[dict[str, Any]]:
            await asyncio.sleep(60)
            return []

    async with running_client(resolver=Hangs(), timeout_s=10.0, connect_timeout_s=0.2) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.request("GET", "http://slow-dns.test/", {}, b"")
        assert time.monotonic() - started < 3.0


# -- close() --


async def test_close_closes_connections_and_the_client_reconnects_after() -> None:
    async with RawServer({}) as server:
        client = make_client()
        try:
            status, _, _ = await client.request("GET", server.url("/ok"), {}, b"")
            assert status == 200
            assert server.closed_connections == 0  # kept alive
            await client.close()
            await server.wait_closed_connections(1)  # the server saw EOF
            status, _, body = await client.request("GET", server.url("/ok"), {}, b"")
            assert (status, body) == (200, b"ok")
            assert client.connections_opened == server.accepted == 2
        finally:
            await client.close()
        await server.wait_closed_connections(2)


async def test_close_during_a_request_fails_that_request() -> None:
    async with RawServer({"/hangs": never_answers}) as server:
        client = make_client(timeout_s=5.0)
        try:
            pending = asyncio.ensure_future(client.request("GET", server.url("/hangs"), {}, b""))
            async with asyncio.timeout(3):
                while not server.requests:
                    await asyncio.sleep(0.005)
            await client.close()
            with pytest.raises(ConnectionClosedError):
                async with asyncio.timeout(3):
                    await pending
        finally:
            await client.close()


async def test_endless_response_headers_are_cut_off() -> None:
    """The body cap alone would let a hostile server stream headers until the timeout."""
    header = b"X-Filler: " + b"y" * 1000 + b"\r\n"
    endless = replies(b"HTTP/1.1 200 OK\r\n", *([header] * 200), keep=True)
    async with RawServer({"/headers": endless}) as server, running_client(timeout_s=5.0) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(MalformedResponseError, match=r"(?i)header"):
            await client.request("GET", server.url("/headers"), {}, b"")
        assert asyncio.get_running_loop().time() - started < 4.0
        status, _, body = await client.request("GET", server.url("/ok"), {}, b"")
        assert (status, body) == (200, b"ok")


# -- what the send path relies on: uncertainty, no redirects, header refusal, framing --


async def test_a_failure_after_the_request_was_written_is_uncertain_and_before_is_not() -> None:
    """The message may be sent again only when the server cannot have seen it."""
    async with RawServer({"/fail": closes_silently}) as server, running_client() as client:
        with pytest.raises(HttpClientError) as after:
            await client.request("POST", server.url("/fail"), {}, b"payload")
        assert after.value.request_sent is True
        assert [r.body for r in server.requests] == [b"payload"]  # it did arrive
    async with running_client() as client:
        with pytest.raises(ConnectionRefusedError) as before:  # nothing left this machine
            await client.request("POST", f"http://{LOOPBACK}:{free_port()}/", {}, b"x")
        assert not isinstance(before.value, HttpClientError)


async def test_redirects_are_answers_never_followed() -> None:
    hits: list[str] = []

    async def redirect(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.Response(text="followed")

    routes = [
        ("POST", "/start", redirect),
        ("POST", "/elsewhere", elsewhere),
        ("GET", "/elsewhere", elsewhere),
    ]
    async with AiohttpServer(routes) as server, running_client() as client:
        status, headers, _ = await client.request("POST", server.url("/start"), {}, b"x")
    assert (status, headers["Location"]) == (302, "/elsewhere")
    assert hits == ["/start"]


@pytest.mark.parametrize("bad", ["a\r\nX-Injected: 1", "a\nb", "a\x00b"])
async def test_line_breaks_and_nul_in_a_header_are_refused_before_sending(bad: str) -> None:
    async with AiohttpServer([("POST", "/", ok_handler)]) as server, running_client() as client:
        with pytest.raises(ValueError, match="line break or NUL"):
            await client.request("POST", server.url("/"), {"X-Value": bad}, b"x")
        with pytest.raises(ValueError, match="line break or NUL"):
            await client.request("POST", server.url("/"), {bad: "v"}, b"x")
    assert server.requests == 0


async def test_a_callers_framing_headers_are_dropped() -> None:
    """A caller's Transfer-Encoding beside the real Content-Length is the request-smuggling shape."""
    seen: list[tuple[dict[str, str], bytes]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    async with AiohttpServer([("POST", "/", record)]) as server, running_client() as client:
        await client.request(
            "POST",
            server.url("/"),
            {"Transfer-Encoding": "chunked", "Content-Length": "1", "Connection": "upgrade", "X-Keep": "1"},
            b"hello",
        )
    [(headers, body)] = seen
    assert body == b"hello"
    assert headers["Content-Length"] == "5"
    assert "Transfer-Encoding" not in headers
    assert headers.get("Connection", "keep-alive").lower() != "upgrade"
    assert headers["X-Keep"] == "1"

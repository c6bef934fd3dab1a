"""The HTTP/2 client (channels/http2.py) against Hypercorn serving h2 over TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from optibridge.channels.fcm import FcmPushProvider
from optibridge.channels.http2 import Http2Client, least_busy, pools_for
from optibridge.channels.http_client import HttpClient, ResponseTimeoutError, ResponseTooLargeError
from optibridge.channels.settings import FcmSettings
from optibridge.core.outbound import DestinationRefusedError, OutboundPolicy

from servicekit import free_port

LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])


@dataclass
class H2Server:
    port: int = 0
    delay_s: float = 0.0
    body_size: int = 2
    requests: list[tuple[str, str, str, bytes]] = field(default_factory=list)  # version, method, path, body
    peers: set[tuple[str, int]] = field(default_factory=set)
    in_flight: int = 0
    most_in_flight: int = 0  # requests held at once: proof of concurrency that no clock can flake

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        self.requests.append((scope["http_version"], scope["method"], scope["path"], body))
        if scope.get("client"):
            self.peers.add(tuple(scope["client"]))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        answer = b"x" * self.body_size if scope["path"] == "/big" else b"ok"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-seen", b"1")]})
        await send({"type": "http.response.body", "body": answer})


@contextlib.asynccontextmanager
async def h2_server(tls_files: tuple[str, str]) -> AsyncIterator[H2Server]:
    server = H2Server(port=free_port())
    config = Config()
    config.bind = [f"127.0.0.1:{server.port}"]
    config.certfile, config.keyfile = tls_files
    config.alpn_protocols = ["h2", "http/1.1"]
    config.h2_max_concurrent_streams = 1000
    config.accesslog = None
    config.errorlog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(server.app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 10
        while True:  # bounded: until it listens
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "hypercorn did not start"
                await asyncio.sleep(0.05)
        yield server
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task


def trusting(tls_files: tuple[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=tls_files[0])


async def test_many_requests_are_multiplexed_on_few_connections(tls_files: tuple[str, str]) -> None:
    """200 allowed at once: two HTTP/2 connections of up to 100 streams each, the requests spread
    over both. httpcore alone kept them all on one connection, 100 at a time (bench/http2_clients.py:
    359 requests/s at 200 ms where 2,500 were possible)."""
    async with h2_server(tls_files) as server:
        server.delay_s = 0.4
        client = Http2Client(
            limit=200, timeout_s=10, connect_timeout_s=2, policy=LOOPBACK, ssl_context=trusting(tls_files)
        )
        try:
            await client.request("POST", server.url("/warm"), {}, b"0")
            started = time.monotonic()
            replies = await asyncio.gather(
                *(client.request("POST", server.url(f"/m{i}"), {"x-n": str(i)}, b"{}") for i in range(400))
            )
            elapsed = time.monotonic() - started
            assert client.http_versions == {"HTTP/2"}
        finally:
            await client.close()
    assert all(status == 200 and body == b"ok" for status, _, body in replies)
    assert replies[0][1]["X-Seen"] == "1"
    assert {version for version, *_ in server.requests} == {"2"}
    assert len(server.peers) == 2  # ceil(200 / 100) connections, no more
    # More than one connection's 100 streams were held at once (impossible on one connection, and
    # requests in series never overlap); at most the client's limit. The clock backs it up loosely
    # (in series: 160 s).
    assert 100 < server.most_in_flight <= 200
    assert elapsed < 60.0


async def test_a_small_limit_keeps_one_connection(tls_files: tuple[str, str]) -> None:
    async with h2_server(tls_files) as server:
        server.delay_s = 0.1
        client = Http2Client(
            limit=50, timeout_s=10, connect_timeout_s=2, policy=LOOPBACK, ssl_context=trusting(tls_files)
        )
        try:
            replies = await asyncio.gather(
                *(client.request("GET", server.url(f"/s{i}"), {}, b"") for i in range(120))
            )
        finally:
            await client.close()
    assert [status for status, *_ in replies] == [200] * 120
    assert len(server.peers) == 1
    assert server.most_in_flight <= 50


def test_pools_and_the_least_busy_pick() -> None:
    assert [pools_for(n) for n in (1, 100, 101, 512)] == [1, 1, 2, 6]
    assert pools_for(512, connections=2) == 2
    assert pools_for(10, connections=0) == 1
    assert least_busy([3, 1, 1, 2]) == 1
    assert least_busy([0]) == 0


async def test_the_guard_refuses_a_name_pointing_inside(tls_files: tuple[str, str]) -> None:
    async with h2_server(tls_files) as server:
        client = Http2Client(limit=4, timeout_s=5, connect_timeout_s=2, policy=OutboundPolicy())
        try:
            with pytest.raises(DestinationRefusedError):
                await client.request("POST", f"https://localhost:{server.port}/x", {}, b"{}")
            with pytest.raises(DestinationRefusedError):
                await client.request("POST", server.url("/x"), {}, b"{}")
        finally:
            await client.close()
    assert server.requests == []


async def test_timeout_and_size_cap(tls_files: tuple[str, str]) -> None:
    async with h2_server(tls_files) as server:
        client = Http2Client(
            limit=4, timeout_s=0.3, connect_timeout_s=2, policy=LOOPBACK, ssl_context=trusting(tls_files),
            max_response_bytes=1000,
        )  # fmt: skip
        try:
            server.body_size = 5000
            with pytest.raises(ResponseTooLargeError):
                await client.request("GET", server.url("/big"), {}, b"")
            server.delay_s = 1.0
            with pytest.raises(ResponseTimeoutError) as failure:
                await client.request("POST", server.url("/slow"), {}, b"{}")
            assert failure.value.request_sent
        finally:
            await client.close()


async def test_connection_refused_is_not_sent() -> None:
    client = Http2Client(limit=4, timeout_s=2, connect_timeout_s=1, policy=LOOPBACK)
    try:
        with pytest.raises(ConnectionError) as failure:
            await client.request("POST", f"https://127.0.0.1:{free_port()}/x", {}, b"{}")
        assert not getattr(failure.value, "request_sent", False)
    finally:
        await client.close()


async def test_fcm_uses_http2_for_an_https_base_url_and_http1_otherwise(
    service_account: dict[str, str],
) -> None:
    account = service_account
    https = FcmPushProvider(FcmSettings(type="fcm", credentials=account), policy=LOOPBACK)
    assert isinstance(https._ensure_client(), Http2Client)
    plain = FcmSettings(type="fcm", credentials=account, base_url="http://127.0.0.1:9")
    assert isinstance(FcmPushProvider(plain, policy=LOOPBACK)._ensure_client(), HttpClient)
    off = FcmSettings(type="fcm", credentials=account, http2=False)
    assert isinstance(FcmPushProvider(off, policy=LOOPBACK)._ensure_client(), HttpClient)

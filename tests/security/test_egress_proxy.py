"""Egress through an HTTP proxy (issue 15): a real proxy (the `proxy.py` package) on loopback.

What must hold: a channel's `proxy_url` and the operator's HTTP(S)_PROXY carry the provider
requests; NO_PROXY is honoured; and the outbound policy still decides the *destination* - the proxy
would resolve and reach any name it is given, so the client resolves and judges it first. A
tenant's own proxy_url is a destination like any other (it cannot point inside).

Run: pytest tests/security/test_egress_proxy.py -q -n 0
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from outboundkit import own_hostname_inside, recorder

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.channels.generic_json import GenericJsonProvider
from optibridge.channels.http2 import Http2Client
from optibridge.channels.http_client import HttpClient, HttpClientError
from optibridge.core.outbound import OutboundPolicy
from optibridge.testing.tls import loopback_certificate

LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])
STRICT = OutboundPolicy()
TEMPLATE = '{"to": "{{to}}", "text": "{{body}}"}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_lines(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if "access_log" in line]


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    with running_proxy(tmp_path) as started:
        yield started


@contextlib.contextmanager
def running_proxy(tmp_path: Path, *extra: str) -> Iterator[Proxy]:
    port = free_port()
    log = tmp_path / f"proxy-{port}.log"
    with log.open("w") as out:
        args = ["--hostname", "127.0.0.1", "--port", str(port), "--num-workers", "1", "--num-acceptors", "1"]
        args += extra
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", *args, "--log-level", "i"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 15
        while True:  # bounded: 15 s for the proxy to listen
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "proxy.py did not start"
            time.sleep(0.1)
        yield Proxy(port, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def message(to: str = "+15550001111") -> OutboundMessage:
    return OutboundMessage(
        message_id=str(uuid.uuid4()), tenant_id="t1", campaign_id=7, customer_id="c1",
        template_id=3, to=to, subject=None, body="hello",
    )  # fmt: skip


def json_provider(url: str, policy: OutboundPolicy, **settings: Any) -> GenericJsonProvider:
    config = {"type": "json", "url": url, "body_template": TEMPLATE, "timeout_s": 5, **settings}
    provider = build_provider("sms", config, callback_base_url="https://hooks.example", policy=policy)
    assert isinstance(provider, GenericJsonProvider)
    return provider


def wait_for_access(proxy: Proxy, path: str, timeout_s: float = 3.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # proxy.py writes its access log after answering
        found = [line for line in proxy.access_lines() if path in line]
        if found:
            return found
        time.sleep(0.05)
    return []


async def test_a_channel_proxy_url_carries_the_requests(proxy: Proxy) -> None:
    with recorder(status=200) as internal:
        url = internal.url(path="/via-proxy")
        async with json_provider(url, LOOPBACK, proxy_url=proxy.url) as provider:
            result = await provider.send(message())
        assert result.outcome is Outcome.SENT, result.reason
        assert internal.requests == [("POST", "/via-proxy")]
        assert wait_for_access(proxy, "/via-proxy"), proxy.log.read_text()[-2000:]


async def test_a_dead_proxy_fails_the_send_it_never_goes_direct() -> None:
    with recorder(status=200) as internal:
        dead = f"http://127.0.0.1:{free_port()}"
        async with json_provider(internal.url(path="/x"), LOOPBACK, proxy_url=dead) as provider:
            result = await provider.send(message())
        assert result.outcome is not Outcome.SENT
        assert not result.uncertain  # the proxy refused the connection: nothing was sent
        assert internal.requests == []


async def test_environment_proxy_is_used_and_no_proxy_honoured(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with recorder(status=200) as internal:
        async with json_provider(internal.url(path="/env-proxied"), LOOPBACK) as provider:
            assert (await provider.send(message())).outcome is Outcome.SENT
        assert wait_for_access(proxy, "/env-proxied")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with json_provider(internal.url(path="/direct"), LOOPBACK) as provider:
            assert (await provider.send(message())).outcome is Outcome.SENT
        assert internal.requests == [("POST", "/env-proxied"), ("POST", "/direct")]
        assert not wait_for_access(proxy, "/direct", timeout_s=0.5)
        # The operator turned environment proxies off: direct even though HTTP_PROXY is set.
        monkeypatch.delenv("NO_PROXY")
        provider = json_provider(internal.url(path="/off"), LOOPBACK)
        provider.set_proxy_from_env(False)
        async with provider:
            assert (await provider.send(message())).outcome is Outcome.SENT
        assert not wait_for_access(proxy, "/off", timeout_s=0.5)


async def test_attack_a_name_pointing_inside_is_refused_before_the_proxy_is_asked(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy would resolve `localhost.` (or a rebinding name) and reach the internal service;
    the client resolves the destination through the guard first and never asks the proxy."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)  # operator's proxy: itself on loopback, allowed
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    inside = own_hostname_inside()
    if inside is None:
        pytest.skip("this machine's name does not resolve to an inside address")
    with recorder(status=200) as internal:
        # A name, not a literal or "localhost" (the URL check alone would catch those), that
        # resolves to an inside address - as a rebinding name does after the write-time check.
        url = f"http://{inside}:{internal.port}/steal"
        assert STRICT.check_url(url) is None
        provider = json_provider(f"https://api.example.com:{internal.port}/x", STRICT)
        provider.url = url
        async with provider:
            result = await provider.send(message())
        assert result.outcome is Outcome.PERMANENT
        assert "refused" in (result.reason or "")
        assert internal.requests == []
        assert not wait_for_access(proxy, "/steal", timeout_s=0.5)


async def test_attack_a_tenant_proxy_url_pointing_inside_is_refused(proxy: Proxy) -> None:
    """A tenant's proxy_url is a destination: under the strict policy a loopback proxy (which would
    then relay to anything) is refused, as a loopback provider URL would be."""
    with recorder(status=200) as internal:
        provider = json_provider("https://api.example.com/x", STRICT, proxy_url=proxy.url)
        async with provider:
            result = await provider.send(message())
        assert result.outcome is Outcome.PERMANENT
        assert "proxy refused" in (result.reason or "")
        assert internal.requests == []
        assert proxy.access_lines() == []


# --- an authenticating proxy (Basic; proxy.py --basic-auth) ----------------------------------------

LOGIN = ("egress", "s3cret:with@signs")


@pytest.fixture
def auth_proxy(tmp_path: Path) -> Iterator[Proxy]:
    with running_proxy(tmp_path, "--basic-auth", f"{LOGIN[0]}:{LOGIN[1]}") as started:
        yield started


@dataclass
class TlsSite:
    """An https server on loopback (aiohttp, HTTP/1.1): what a CONNECT tunnel leads to."""

    port: int
    trusting: ssl.SSLContext
    paths: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def tls_site(tmp_path: Path) -> AsyncIterator[TlsSite]:
    folder = tmp_path / "tls"
    folder.mkdir(exist_ok=True)
    cert, key = loopback_certificate(folder)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    site = TlsSite(free_port(), ssl.create_default_context(cafile=cert))

    async def answer(request: web.Request) -> web.Response:
        site.paths.append(request.path)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", site.port, ssl_context=serving).start()
    try:
        yield site
    finally:
        await runner.cleanup()


def clients(site: TlsSite, **proxying: Any) -> list[HttpClient | Http2Client]:
    """The two clients every HTTP provider sends through, both via the same proxy settings."""
    common: dict[str, Any] = {"limit": 4, "timeout_s": 10.0, "connect_timeout_s": 5.0, **proxying}
    return [
        HttpClient(resolver=LOOPBACK.resolver(None), ssl_context=site.trusting, **common),
        Http2Client(policy=LOOPBACK, ssl_context=site.trusting, **common),
    ]


async def test_an_authenticating_proxy_tunnels_https_with_the_channel_login(
    auth_proxy: Proxy, tmp_path: Path
) -> None:
    async with tls_site(tmp_path) as site:
        for n, client in enumerate(clients(site, proxy=auth_proxy.url, proxy_login=LOGIN)):
            try:
                status, _, body = await client.request("POST", site.url(f"/tunnel-{n}"), {}, b"{}")
            finally:
                await client.close()
            assert (status, body) == (200, b'{"ok": true}'), type(client).__name__
        assert site.paths == ["/tunnel-0", "/tunnel-1"]


@pytest.mark.parametrize("login", [None, (LOGIN[0], "wrong")], ids=["no-login", "wrong-password"])
async def test_a_refused_login_sends_nothing_and_says_so(
    auth_proxy: Proxy, tmp_path: Path, login: tuple[str, str] | None
) -> None:
    """407 on the CONNECT: nothing reached the provider, so the message is safe to send again
    (not `uncertain`), and the reason names the proxy, not the provider."""
    async with tls_site(tmp_path) as site:
        for client in clients(site, proxy=auth_proxy.url, proxy_login=login):
            try:
                with pytest.raises((OSError, HttpClientError)) as refused:
                    await client.request("POST", site.url("/never"), {}, b"{}")
            finally:
                await client.close()
            assert getattr(refused.value, "request_sent", False) is False, type(client).__name__
            assert "407" in str(refused.value), str(refused.value)
            assert LOGIN[1] not in str(refused.value)  # a login never ends up in a stored reason
            assert "wrong" not in str(refused.value)
        assert site.paths == []


async def test_an_environment_proxy_login_in_its_url_is_sent(
    auth_proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's HTTPS_PROXY=http://user:password@host:port: aiohttp sends the login itself;
    httpcore (the HTTP/2 client's) ignored a proxy URL's user info, and every FCM or APNs send got
    407 - the client now takes the login out of the URL and sends it."""
    user, password = quote(LOGIN[0], safe=""), quote(LOGIN[1], safe="")
    monkeypatch.setenv("HTTPS_PROXY", f"http://{user}:{password}@127.0.0.1:{auth_proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with tls_site(tmp_path) as site:
        for n, client in enumerate(clients(site, proxy_from_env=True)):
            try:
                status, _, _ = await client.request("POST", site.url(f"/env-{n}"), {}, b"{}")
            finally:
                await client.close()
            assert status == 200, type(client).__name__
        assert site.paths == ["/env-0", "/env-1"]


async def test_a_channel_with_a_proxy_login_sends_through_it(auth_proxy: Proxy) -> None:
    """The settings path end to end (proxy_username/proxy_password -> HttpChannel -> client), to an
    http:// destination: the login rides on the forwarded request; without it the proxy answers
    407 itself, which is the proxy's refusal, not the provider's answer."""
    with recorder(status=200) as internal:
        url = internal.url(path="/with-login")
        login = {"proxy_username": LOGIN[0], "proxy_password": LOGIN[1]}
        async with json_provider(url, LOOPBACK, proxy_url=auth_proxy.url, **login) as provider:
            result = await provider.send(message())
        assert result.outcome is Outcome.SENT, result.reason
        assert wait_for_access(auth_proxy, "/with-login"), auth_proxy.log.read_text()[-2000:]
        async with json_provider(
            internal.url(path="/no-login"), LOOPBACK, proxy_url=auth_proxy.url
        ) as provider:
            refused = await provider.send(message())
        assert refused.outcome is Outcome.TRANSIENT, refused
        assert not refused.uncertain
        assert "proxy refused: 407" in (refused.reason or "")
        assert internal.requests == [("POST", "/with-login")]

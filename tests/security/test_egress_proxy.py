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
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from outboundkit import own_hostname_inside, recorder

from optibridge.channels import OutboundMessage, Outcome, build_provider
from optibridge.channels.generic_json import GenericJsonProvider
from optibridge.core.outbound import OutboundPolicy

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
    port = free_port()
    log = tmp_path / "proxy.log"
    with log.open("w") as out:
        args = ["--hostname", "127.0.0.1", "--port", str(port), "--num-workers", "1", "--num-acceptors", "1"]
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

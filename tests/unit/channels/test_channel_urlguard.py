"""The outbound policy (SSRF guard): which destinations the service may reach for a tenant."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from optibridge.channels.urlguard import (
    DestinationRefusedError,
    GuardedResolver,
    OutboundPolicy,
    check_address,
    check_url,
)
from optibridge.core.config import Settings
from optibridge.core.outbound import parse_networks

LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8", "::1/128"])


@pytest.mark.parametrize(
    ("ip", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "240.0.0.1 is"),  # reserved (Python files it under private too)
        ("100.64.0.1", "not globally routable"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("100.127.255.254", "not globally routable"),  # carrier-grade NAT, top of the range
        ("198.18.0.1", "198.18.0.1 is"),  # benchmarking range
        ("::ffff:7f00:1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
    ],
)
def test_forbidden_addresses(ip: str, label: str) -> None:
    reason = check_address(ip)
    assert reason is not None
    assert label in reason


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34"])
def test_public_addresses_are_allowed(ip: str) -> None:
    assert check_address(ip) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http:///nohost", "no host"),
        ("http://127.0.0.1:8080/x", "loopback"),
        ("http://[::1]/x", "loopback"),
        ("http://[::ffff:127.0.0.1]/x", "loopback"),
        ("http://169.254.169.254/latest", "metadata"),
        ("http://[fd00:ec2::254]/latest", "metadata"),
        # Numbers in every spelling inet_aton and browsers accept mean an address: judged as it.
        ("http://2130706433/x", "127.0.0.1 is loopback"),
        ("http://0x7f.1/x", "127.0.0.1 is loopback"),
        ("http://0x7f000001/x", "127.0.0.1 is loopback"),
        ("http://0177.0.0.1/x", "127.0.0.1 is loopback"),
        ("http://127.1/x", "127.0.0.1 is loopback"),
        ("http://127.0.0.1./x", "127.0.0.1 is loopback"),
        ("http://017700000001/x", "127.0.0.1 is loopback"),
        ("http://167772161/x", "10.0.0.1 is private"),
        ("http://0xa9fea9fe/x", "169.254.169.254 is a cloud metadata address"),
        ("http://[::ffff:a9fe:a9fe]/x", "metadata"),
        ("http://[0:0:0:0:0:ffff:127.0.0.1]/x", "loopback"),
        ("http://[::]/x", "unspecified"),
        ("http://0/x", "0.0.0.0 is unspecified"),
        ("http://999.1.1.1/x", "not an IP address"),
        ("http://1.2.3.4.5/x", "not an IP address"),
        ("http://localhost/x", "loopback"),
        ("http://LOCALHOST./x", "loopback"),
        ("http://api.localhost/x", "loopback"),
        ("http://localhost.localdomain/x", "loopback"),
        ("http://ip6-localhost/x", "loopback"),
        ("http://[fe80::1%25eth0]/x", "link-local"),
        ("http://100.64.0.1/x", "not globally routable"),
        ("http://example.com\r\nX-Evil: 1/x", "control characters"),
        ("http://1.2.3.example/x", None),  # a name whose labels happen to be digits: DNS decides
        ("http://example.com:99999/x", "malformed"),
        ("https://hooks.example.com/x", None),
    ],
)
def test_check_url(url: str, fragment: str | None) -> None:
    reason = check_url(url)
    assert reason == OutboundPolicy().check_url(url)
    if fragment is None:
        assert reason is None
    else:
        assert reason is not None
        assert fragment in reason


def test_operator_networks_open_exactly_those_destinations() -> None:
    assert LOOPBACK.check_url("http://127.0.0.1:8080/x") is None
    assert LOOPBACK.check_url("http://[::1]/x") is None
    assert LOOPBACK.check_url("http://localhost:9/x") is None
    assert LOOPBACK.check_url("http://127.1/x") is None
    assert LOOPBACK.check_url("http://[::ffff:127.0.0.1]/x") is None
    assert LOOPBACK.check_url("http://10.0.0.1/x") == "10.0.0.1 is private"
    assert LOOPBACK.check_url("http://169.254.169.254/x") is not None
    assert LOOPBACK.check_url("gopher://127.0.0.1/x") is not None  # still http(s) only
    private = OutboundPolicy.from_strings(["10.20.0.0/16"])
    assert private.check_url("http://10.20.3.4/x") is None
    assert private.check_url("http://10.21.3.4/x") is not None
    assert private.check_url("http://localhost/x") is not None  # loopback not opened by 10/8


def test_default_policy_refuses_loopback_names_and_numbers() -> None:
    strict = OutboundPolicy()
    for url in ("http://127.0.0.1/", "http://localhost/", "http://2130706433/", "http://[::1]/"):
        assert strict.check_url(url) is not None, url


def test_settings_carry_the_policy_and_refuse_bad_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().outbound_policy == OutboundPolicy()
    monkeypatch.setenv("OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS", '["127.0.0.0/8", "::1/128"]')
    assert Settings().outbound_policy == LOOPBACK
    monkeypatch.setenv("OPTIBRIDGE_ALLOW_PRIVATE_DESTINATIONS", '["not-a-network"]')
    with pytest.raises(ValueError, match="not an IP network"):
        Settings()
    with pytest.raises(ValueError, match="not an IP network"):
        parse_networks(["10.0.0.0/33"])


class _FixedAnswers(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {"hostname": host, "host": a, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_resolver_keeps_only_allowed_addresses() -> None:
    resolver = GuardedResolver(_FixedAnswers("127.0.0.1", "93.184.216.34", "10.0.0.1"))
    assert [r["host"] for r in await resolver.resolve("mixed.example", 443)] == ["93.184.216.34"]


async def test_resolver_refuses_a_name_with_only_forbidden_addresses() -> None:
    resolver = GuardedResolver(_FixedAnswers("169.254.169.254"))
    with pytest.raises(
        DestinationRefusedError, match=r"metadata\.example resolves to 169\.254\.169\.254 is a cloud metadata"
    ):
        await resolver.resolve("metadata.example", 80)


async def test_policy_resolver_lets_operator_networks_through() -> None:
    answers = _FixedAnswers("127.0.0.1", "10.0.0.1")
    assert [r["host"] for r in await LOOPBACK.resolver(answers).resolve("svc.internal", 80)] == ["127.0.0.1"]
    with pytest.raises(DestinationRefusedError):
        await OutboundPolicy().resolver(answers).resolve("svc.internal", 80)


async def test_write_time_lookup_refuses_a_name_that_resolves_inside() -> None:
    own = socket.gethostname()  # resolves to this machine: loopback or a private address here
    reason = await OutboundPolicy().check_resolved(f"http://{own}:9/x")
    assert reason is not None
    assert own in reason
    assert await OutboundPolicy().check_resolved("http://does-not-resolve.invalid/x") is None

"""The SSRF guard: which destinations a webhook may reach."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from optibridge.channels.urlguard import (
    DestinationRefusedError,
    GuardedResolver,
    check_address,
    check_url,
)


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
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "240.0.0.1 is"),  # reserved (Python files it under private too)
        ("100.64.0.1", "not globally routable"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
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
        ("http://169.254.169.254/latest", "link-local"),
        ("http://2130706433/x", "not a canonical IP"),
        ("http://0x7f.1/x", None),  # not numeric to aiohttp: the resolver judges it at connect
        ("http://127.1/x", "not a canonical IP"),
        ("http://localhost/x", "loopback"),
        ("http://api.localhost/x", "loopback"),
        ("http://example.com:99999/x", "malformed"),
        ("https://hooks.example.com/x", None),
    ],
)
def test_check_url(url: str, fragment: str | None) -> None:
    reason = check_url(url)
    if fragment is None:
        assert reason is None
    else:
        assert reason is not None
        assert fragment in reason


def test_allow_private_still_requires_http() -> None:
    assert check_url("http://127.0.0.1/x", allow_private=True) is None
    assert check_url("gopher://127.0.0.1/x", allow_private=True) is not None


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
        DestinationRefusedError, match=r"metadata\.example resolves to 169\.254\.169\.254 is link-local"
    ):
        await resolver.resolve("metadata.example", 80)

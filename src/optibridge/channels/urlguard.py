"""Keep webhooks away from internal networks (SSRF).

A tenant-supplied webhook URL must not reach the service's own loopback, the cloud metadata
endpoint (169.254.169.254) or private networks. Two layers:

- `check_url`, when settings are validated: scheme, and any literal IP in the URL;
- `GuardedResolver`, on every new connection: each resolved address is checked, so a hostname
  that resolves (or is re-pointed, DNS rebinding) to a forbidden address is refused at connect
  time. Redirects are never followed, so a 30x cannot lead elsewhere.

`allow_private=True` switches both off (tests on loopback, receivers on the same private network).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefusedError(OSError):
    """The destination resolves only to addresses that webhooks may not reach."""


def check_address(ip: str | IPAddress) -> str | None:
    """Why this address is forbidden as a webhook destination, or None if it is allowed."""
    if isinstance(ip, str):
        try:
            ip = ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            return f"{ip!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            reason = check_address(mapped)
            return None if reason is None else f"{ip} maps to {reason}"
    for test, label in (
        (ip.is_loopback, "loopback"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
    ):
        if test:
            return f"{ip} is {label}"
    if not ip.is_global:  # e.g. 100.64.0.0/10 carrier-grade NAT
        return f"{ip} is not globally routable"
    return None


def _looks_numeric(host: str) -> bool:
    # aiohttp's own heuristic for "this is an IP, skip the resolver": such hosts must be judged
    # here, since the GuardedResolver never sees them.
    return ":" in host or host.replace(".", "").isdigit()


def check_url(url: str, *, allow_private: bool = False) -> str | None:
    """Why this URL is not an acceptable webhook destination, or None. No DNS lookups."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError for a malformed port
    except ValueError as exc:
        return f"malformed URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not http or https"
    if not host:
        return "URL has no host"
    if allow_private:
        return None
    if _looks_numeric(host):
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return f"numeric host {host!r} is not a canonical IP address"
        return check_address(ip)
    if host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost"):
        return f"{host} is loopback"
    return None


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default, then drops every address `check_address` forbids."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = []
        reasons = []
        for result in results:
            reason = check_address(result["host"])
            if reason is None:
                allowed.append(result)
            else:
                reasons.append(reason)
        if not allowed:
            raise DestinationRefusedError(f"destination refused: {host} resolves to {'; '.join(reasons)}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()

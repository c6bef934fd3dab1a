"""Where the service may connect on a tenant's behalf: one outbound URL policy (SSRF).

Every URL a tenant can influence (its Optimove API base, provider URLs, FCM token URIs, webhook
URLs, delivery lookups) must not reach the service's own loopback, the cloud metadata endpoint or
the networks it sits in. Two layers, both built from one `OutboundPolicy`:

- `check_url`, when settings are written (API, CLI, config file): scheme, host, and any host that
  is a number in some spelling (`127.1`, `0x7f.1`, `2130706433`, `[::ffff:127.0.0.1]`) or a
  loopback name (`localhost`);
- `resolver()`, on every new connection: each resolved address is checked, so a hostname that
  resolves (or is re-pointed, DNS rebinding) to a forbidden address is refused at connect time.
  Clients using it follow no redirects, so a 30x cannot lead elsewhere.

Only the operator can open the guard, network by network, with the deployment setting
`allow_private_destinations` (CIDR list): tests and demos on loopback, receivers on the same
private network. A tenant cannot.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names that mean "this machine" whatever DNS says (RFC 6761 `.localhost`, Debian's /etc/hosts).
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))


class DestinationRefusedError(OSError):
    """The destination resolves only to addresses the outbound policy forbids."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings as networks; ValueError names the first bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP network (CIDR, e.g. 127.0.0.0/8)") from None
    return tuple(out)


def _forbidden_reason(ip: IPAddress) -> str | None:
    if ip in _METADATA:
        return f"{ip} is a cloud metadata address"
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


def check_address(ip: str | IPAddress, allowed: tuple[IPNetwork, ...] = ()) -> str | None:
    """Why this address is forbidden as a destination, or None; `allowed` networks always pass."""
    if isinstance(ip, str):
        try:
            ip = ipaddress.ip_address(ip.strip("[]").split("%", 1)[0])
        except ValueError:
            return f"{ip!r} is not an IP address"
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 (mapped, 6to4, NAT64-free spellings) is judged as itself.
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is not None:
            reason = check_address(inner, allowed)
            return None if reason is None else f"{ip} maps to {reason}"
    return _forbidden_reason(ip)


def numeric_host(host: str) -> IPAddress | str | None:
    """The address a numeric host means, None for a name, or a reason string for a bad number.

    Browsers and the C resolver (inet_aton) read `127.1`, `0x7f.0.0.1`, `0177.0.0.1` and
    `2130706433` as 127.0.0.1: a host whose last label is a number is an IPv4 address in some
    spelling (the WHATWG URL rule), so it is judged as the address it means.
    """
    bare = host.strip("[]").split("%", 1)[0]
    if ":" in bare:
        try:
            return ipaddress.ip_address(bare)
        except ValueError:
            return f"numeric host {host!r} is not an IP address"
    last = bare.rstrip(".").rpartition(".")[2].lower()
    if not last or not (last.isdigit() or (last.startswith("0x") and _is_hex(last[2:]))):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare.rstrip(".")))
    except (OSError, ValueError):
        return f"numeric host {host!r} is not an IP address"


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def is_loopback_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name in _LOOPBACK_NAMES or name.endswith(".localhost")


@dataclass(frozen=True)
class OutboundPolicy:
    """Which destinations outbound connections may reach; the default forbids every internal one."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_strings(cls, networks: Iterable[str]) -> OutboundPolicy:
        return cls(parse_networks(networks))

    def check_address(self, ip: str | IPAddress) -> str | None:
        return check_address(ip, self.allowed_networks)

    def check_url(self, url: str) -> str | None:
        """Why this URL is not an acceptable destination, or None. No DNS lookups."""
        return check_url(url, self.allowed_networks)

    def resolver(self, inner: AbstractResolver | None = None) -> GuardedResolver:
        """A resolver that drops every address this policy forbids (`inner` does the lookups)."""
        return GuardedResolver(inner, self.allowed_networks)

    async def check_resolved(self, url: str, timeout_s: float = 3.0) -> str | None:
        """`check_url`, then the addresses the host resolves to now; None if all are allowed.

        For write time, so that a name pointing inside is refused with a clear reason at once; a
        name that does not resolve (yet) is accepted, and the connect-time guard still decides.
        """
        import asyncio

        reason = self.check_url(url)
        if reason is not None:
            return reason
        host = urlsplit(url).hostname or ""
        if isinstance(numeric_host(host), ipaddress.IPv4Address | ipaddress.IPv6Address):
            return None  # judged above
        try:
            async with asyncio.timeout(timeout_s):
                infos = await asyncio.get_running_loop().getaddrinfo(host, 0, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError):
            return None
        for info in infos:
            reason = self.check_address(str(info[4][0]))
            if reason is not None:
                return f"{host} resolves to {reason}"
        return None


def check_url(url: str, allowed: tuple[IPNetwork, ...] = ()) -> str | None:
    """Why this URL is not an acceptable destination, or None. No DNS lookups."""
    if any(c in url for c in "\r\n\x00\t "):
        return "URL contains whitespace or control characters"
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
    number = numeric_host(host)
    if isinstance(number, str):
        return number
    if number is not None:
        return check_address(number, allowed)
    if is_loopback_name(host):
        if check_address("127.0.0.1", allowed) is None:
            return None
        return f"{host} is loopback"
    return None


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default, then drops every address the policy forbids."""

    def __init__(self, inner: AbstractResolver | None = None, allowed: tuple[IPNetwork, ...] = ()) -> None:
        self._inner = inner if inner is not None else DefaultResolver()
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = []
        reasons = []
        for result in results:
            reason = check_address(result["host"], self._allowed)
            if reason is None:
                allowed.append(result)
            else:
                reasons.append(reason)
        if not allowed:
            raise DestinationRefusedError(f"destination refused: {host} resolves to {'; '.join(reasons)}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()

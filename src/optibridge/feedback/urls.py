"""Validation of the URLs a click token may redirect to: absolute http(s) only."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

MAX_URL = 2048
# Control characters, spaces, backslashes and non-ASCII: browsers "repair" them in ways that can
# change the host a URL points at, and a Location header must be ASCII, so a URL containing any is
# not carried at all (`to_ascii_url` first turns an IRI into a URL).
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]|[^\x00-\x7f]")
_SAFE = "/%:@!$&'()*+,;=-._~?#[]"


class InvalidUrl(ValueError):
    pass


def validate_target_url(url: str) -> str:
    """`url` unchanged if it is an absolute http(s) URL with a host; InvalidUrl otherwise."""
    if not url or len(url) > MAX_URL or _FORBIDDEN.search(url):
        raise InvalidUrl("empty, too long, or contains spaces/control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError on a malformed port
    except ValueError:
        raise InvalidUrl("malformed URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise InvalidUrl("not an absolute http(s) URL")
    return url


def to_ascii_url(url: str) -> str:
    """An IRI as an ASCII URL: host IDNA-encoded, other non-ASCII characters percent-encoded."""
    if url.isascii():
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
        netloc = parts.netloc.replace(host, ascii_host, 1) if host else parts.netloc
    except (ValueError, UnicodeError):
        raise InvalidUrl("host cannot be IDNA-encoded") from None
    return urlunsplit(
        (
            parts.scheme,
            quote(netloc, safe=_SAFE),
            quote(parts.path, safe=_SAFE),
            quote(parts.query, safe=_SAFE),
            quote(parts.fragment, safe=_SAFE),
        )
    )


def is_trackable(url: str) -> bool:
    try:
        validate_target_url(to_ascii_url(url))
    except InvalidUrl:
        return False
    return True

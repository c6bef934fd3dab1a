"""Checks shared by every provider settings model (channels.settings and channels.provider_settings,
which settings imports, so neither can hold them for the other)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

# A CR, LF or NUL in a string that ends up in a mail header, an HTTP request line or a header
# would inject headers (a Bcc into every mail).
CONTROL = re.compile(r"[\r\n\x00]")


def check_http_url(url: str, *, base_only: bool = False) -> str:
    """http(s) with a host: no other scheme (ftp://, file://, gopher://) ever reaches a client.
    `base_only`: no query, fragment or user either. Returned without a trailing slash."""
    if CONTROL.search(url) or any(c in url for c in " \t"):
        raise ValueError("must be a URL without spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a malformed port
    except ValueError:
        raise ValueError("must be a well-formed http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not url.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    if base_only and (parts.query or parts.fragment or parts.username is not None):
        raise ValueError("must be a base URL (no query, fragment or user)")
    return url.rstrip("/")


def multi_line_field(fields: Iterable[tuple[str, object]], multiline: frozenset[str]) -> str | None:
    """The first single-line string field holding a CR, LF or NUL (its name, never its value)."""
    for name, value in fields:
        if name not in multiline and isinstance(value, str) and CONTROL.search(value):
            return name
    return None

"""The lean HTTP/1.1 client's pure parts: the request target and the request head (no sockets)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from multidict import CIMultiDict

from optibridge.channels.http1 import USER_AGENT, Origin, parse_target, request_head


def head_of(
    url: str, headers: Mapping[str, str] | None = None, body: bytes = b"", method: str = "POST"
) -> str:
    return request_head(method, parse_target(url), headers or {}, len(body)).decode("utf-8")


def header_lines(head: str) -> list[str]:
    """The header lines of a head (no request line, no final blank line)."""
    assert head.endswith("\r\n\r\n")
    return head[: -len("\r\n\r\n")].split("\r\n")[1:]


# -- parse_target: origin and Host --


@pytest.mark.parametrize(
    ("url", "origin", "host_header"),
    [
        ("http://api.example.com/x", Origin("http", "api.example.com", 80), "api.example.com"),
        ("https://api.example.com/x", Origin("https", "api.example.com", 443), "api.example.com"),
        ("http://api.example.com:80/x", Origin("http", "api.example.com", 80), "api.example.com"),
        ("https://api.example.com:443/x", Origin("https", "api.example.com", 443), "api.example.com"),
        ("http://api.example.com:8080/x", Origin("http", "api.example.com", 8080), "api.example.com:8080"),
        ("https://api.example.com:80/x", Origin("https", "api.example.com", 80), "api.example.com:80"),
        ("http://api.example.com:443/x", Origin("http", "api.example.com", 443), "api.example.com:443"),
        ("http://127.0.0.1:9/x", Origin("http", "127.0.0.1", 9), "127.0.0.1:9"),
        ("http://[::1]/x", Origin("http", "::1", 80), "[::1]"),
        ("https://[2001:db8::1]:8443/x", Origin("https", "2001:db8::1", 8443), "[2001:db8::1]:8443"),
        ("HTTPS://API.Example.COM/x", Origin("https", "api.example.com", 443), "api.example.com"),
        ("http://user:secret@api.example.com/x", Origin("http", "api.example.com", 80), "api.example.com"),
    ],
)
def test_origin_and_host_header(url: str, origin: Origin, host_header: str) -> None:
    target = parse_target(url)
    assert target.origin == origin
    assert header_lines(head_of(url))[0] == f"Host: {host_header}"


def test_credentials_in_the_url_are_not_sent() -> None:
    assert "secret" not in head_of("http://user:secret@api.example.com/x")


@pytest.mark.parametrize(
    ("url", "request_line"),
    [
        ("http://h.example", "GET / HTTP/1.1"),
        ("http://h.example/", "GET / HTTP/1.1"),
        ("http://h.example?a=1", "GET /?a=1 HTTP/1.1"),
        (
            "http://h.example/2010-04-01/Accounts/AC1/Messages.json",
            "GET /2010-04-01/Accounts/AC1/Messages.json HTTP/1.1",
        ),
        ("http://h.example/p?a=1&b=%20x", "GET /p?a=1&b=%20x HTTP/1.1"),
        ("http://h.example/p?a=1#fragment", "GET /p?a=1 HTTP/1.1"),
        ("http://h.example/a%2Fb", "GET /a%2Fb HTTP/1.1"),
    ],
)
def test_request_line_keeps_path_and_query_and_drops_the_fragment(url: str, request_line: str) -> None:
    assert head_of(url, method="GET").split("\r\n")[0] == request_line


@pytest.mark.parametrize(
    ("url", "request_line"),
    [
        ("http://h.example/a b", "GET /a%20b HTTP/1.1"),
        ("http://h.example/p?q=x y&r=1", "GET /p?q=x%20y&r=1 HTTP/1.1"),
        ("http://h.example/zo\u00eb", "GET /zo%C3%AB HTTP/1.1"),
        ("http://h.example/\u2603?s=\u2603", "GET /%E2%98%83?s=%E2%98%83 HTTP/1.1"),
        ("http://h.example/x\x00y\x7f", "GET /x%00y%7F HTTP/1.1"),
        ("http://h.example/already%20escaped%C3%AB", "GET /already%20escaped%C3%AB HTTP/1.1"),
        ("http://h.example/a|b{c}", "GET /a|b{c} HTTP/1.1"),
        ("http://h.example/a/../b/./c", "GET /a/../b/./c HTTP/1.1"),
    ],
)
def test_spaces_controls_and_non_ascii_in_the_target_are_percent_encoded(url: str, request_line: str) -> None:
    """A raw space would split the request line; non-ASCII is never valid raw in a request target."""
    assert head_of(url, method="GET").split("\r\n")[0] == request_line


@pytest.mark.parametrize(
    ("url", "host", "host_header"),
    [
        ("http://b\u00fccher.example/", "b\u00fccher.example", "xn--bcher-kva.example"),
        ("https://\u0434\u043e\u043c.example:8443/", "\u0434\u043e\u043c.example", "xn--d1aqf.example:8443"),
    ],
)
def test_an_international_host_name_is_sent_as_punycode(url: str, host: str, host_header: str) -> None:
    target = parse_target(url)
    assert target.origin.host == host  # resolved and checked by TLS as such (both encode it to IDNA)
    assert header_lines(head_of(url))[0] == f"Host: {host_header}"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h.example/file",
        "file:///etc/passwd",
        "ws://h.example/socket",
        "mailto:someone@example.com",
        "/relative/path",
        "h.example/no-scheme",
        "//h.example/scheme-relative",
        "http:///no-host",
        "http://",
        "",
    ],
)
def test_not_an_absolute_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not an absolute http"):
        parse_target(url)


@pytest.mark.parametrize("url", ["http://h.example:99999/", "http://h.example:port/", "http://h.example:-1/"])
def test_a_malformed_port_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"[Pp]ort"):
        parse_target(url)


def test_target_is_reusable_across_heads() -> None:
    target = parse_target("https://h.example/send")
    first = request_head("POST", target, {"A": "1"}, 3)
    second = request_head("POST", target, {"B": "2"}, 4)
    assert first.startswith(b"POST /send HTTP/1.1\r\nHost: h.example\r\n")
    assert second.startswith(b"POST /send HTTP/1.1\r\nHost: h.example\r\n")
    assert b"A: 1" in first
    assert b"A: 1" not in second


# -- request_head: header injection --


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Ok": "fine\r\nX-Injected: yes"},
        {"X-Ok": "fine\nX-Injected: yes"},
        {"X-Ok": "fine\rX-Injected: yes"},
        {"X-Ok": "fine\r\n\r\nGET /smuggled HTTP/1.1"},
        {"X-Bad\r\nX-Injected": "yes"},
        {"X-Bad\n": "yes"},
        {"X-Bad\r": "yes"},
    ],
)
def test_line_breaks_in_header_names_or_values_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="line break"):
        request_head("POST", parse_target("http://h.example/"), headers, 0)


@pytest.mark.parametrize(
    "url", ["http://h.example/a\r\nX-Injected: yes", "http://h.example/a?q=1\r\nX-Injected: yes"]
)
def test_line_breaks_in_a_url_never_reach_the_head(url: str) -> None:
    """Python's urlsplit removes CR/LF/tab from URLs (bpo-43882): no header can be injected."""
    head = head_of(url)
    assert "\r\nX-Injected" not in head
    assert all(":" in line for line in header_lines(head))
    assert [line.split(":", 1)[0] for line in header_lines(head)] == ["Host", "User-Agent", "Content-Length"]


# -- request_head: User-Agent and Content-Length --


def test_default_user_agent_when_the_caller_gives_none() -> None:
    lines = header_lines(head_of("http://h.example/", {"Content-Type": "application/json"}))
    assert lines.count(f"User-Agent: {USER_AGENT}") == 1
    assert USER_AGENT.startswith("optibridge/")


@pytest.mark.parametrize("name", ["User-Agent", "user-agent", "USER-AGENT", "uSeR-aGeNt"])
def test_callers_user_agent_replaces_the_default_whatever_its_case(name: str) -> None:
    lines = header_lines(head_of("http://h.example/", {name: "provider-sdk/2.0"}))
    assert f"{name}: provider-sdk/2.0" in lines
    assert [line for line in lines if line.lower().startswith("user-agent:")] == [f"{name}: provider-sdk/2.0"]


@pytest.mark.parametrize("body", [b"", b"x", b'{"to":"+15550001111","body":"Zo\xc3\xab"}', bytes(70_000)])
def test_content_length_is_the_body_length(body: bytes) -> None:
    lines = header_lines(head_of("http://h.example/", {"Content-Type": "application/json"}, body))
    assert lines[-1] == f"Content-Length: {len(body)}"
    assert sum(line.lower().startswith("content-length:") for line in lines) == 1


def test_head_layout_and_header_order() -> None:
    head = request_head(
        "PUT",
        parse_target("https://api.example.com:8443/v1/send?x=1"),
        {"Authorization": "Bearer t0k", "Content-Type": "application/json", "X-Count": 3},
        12,
    )
    assert head == (
        b"PUT /v1/send?x=1 HTTP/1.1\r\n"
        b"Host: api.example.com:8443\r\n"
        b"Authorization: Bearer t0k\r\n"
        b"Content-Type: application/json\r\n"
        b"X-Count: 3\r\n"
        b"User-Agent: " + USER_AGENT.encode() + b"\r\n"
        b"Content-Length: 12\r\n"
        b"\r\n"
    )


def test_non_ascii_header_values_are_sent_as_utf8() -> None:
    head = request_head("POST", parse_target("http://h.example/"), {"X-Name": "Zo\u00eb \u2603"}, 0)
    assert b"\r\nX-Name: Zo\xc3\xab \xe2\x98\x83\r\n" in head
    assert head.startswith(b"POST / HTTP/1.1\r\nHost: h.example\r\n")


def test_headers_may_be_a_multidict_with_repeated_names() -> None:
    headers: CIMultiDict[str] = CIMultiDict([("Accept", "application/json"), ("Accept", "text/plain")])
    lines = header_lines(head_of("http://h.example/", headers))
    assert lines[1:3] == ["Accept: application/json", "Accept: text/plain"]


def test_callers_host_replaces_the_urls_and_callers_content_length_is_dropped() -> None:
    target = parse_target("http://127.0.0.1:8080/x")
    head = request_head("POST", target, {"host": "api.example", "Content-Length": "999"}, 3).decode()
    assert head.count("Host:") + head.count("host:") == 1
    assert "Host: api.example\r\n" in head
    assert "999" not in head
    assert head.endswith("Content-Length: 3\r\n\r\n")


def test_a_callers_transfer_encoding_is_dropped_beside_the_real_length() -> None:
    """Content-Length and Transfer-Encoding together is the request-smuggling shape."""
    target = parse_target("http://h.example/x")
    head = request_head("POST", target, {"Transfer-Encoding": "chunked", "X-A": "1"}, 5).decode()
    assert "transfer-encoding" not in head.lower()
    assert head.endswith("Content-Length: 5\r\n\r\n")
    assert "X-A: 1\r\n" in head


@pytest.mark.parametrize("headers", [{"X-Ok": "a\x00b"}, {"X-Bad\x00": "yes"}])
def test_nul_in_header_names_or_values_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="NUL"):
        request_head("POST", parse_target("http://h.example/"), headers, 0)

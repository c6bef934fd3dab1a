"""The HTTP client's pure parts: the URL as sent, the caller's headers, the environment proxy choice."""

from __future__ import annotations

import h2.events
import httpcore
import httpx
import pytest

from optibridge.channels.http2 import proxy_and_login, unprocessed
from optibridge.channels.http_client import HOP_BY_HOP, clean_headers, proxy_for, request_url
from optibridge.channels.settings import JsonSettings, WebhookSettings


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("http://api.example.com/x", "http://api.example.com/x"),
        ("https://api.example.com:8443/v1/send?x=1&y=%2F", "https://api.example.com:8443/v1/send?x=1&y=%2F"),
        ("http://user:secret@api.example.com/x", "http://api.example.com/x"),
        ("http://api.example.com", "http://api.example.com/"),
        ("http://api.example.com/a b?q=Zoë", "http://api.example.com/a%20b?q=Zo%C3%AB"),
        ("http://bücher.example/x", "http://xn--bcher-kva.example/x"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ],
)
def test_the_url_as_sent(url: str, sent: str) -> None:
    assert str(request_url(url)) == sent


@pytest.mark.parametrize("url", ["ftp://h.example/", "/relative", "http:///nohost", "file:///etc/passwd"])
def test_not_an_absolute_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        request_url(url)


@pytest.mark.parametrize(
    "headers", [{"X-Ok": "a\r\nX-Injected: 1"}, {"X-Ok": "a\nb"}, {"X-Ok": "a\x00b"}, {"X-Bad\x00": "v"}]
)
def test_line_breaks_and_nul_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="line break or NUL"):
        clean_headers(headers)


def test_hop_by_hop_headers_are_dropped_whatever_their_case() -> None:
    given = {"Transfer-Encoding": "chunked", "content-length": "3", "CONNECTION": "close", "X-Keep": "1"}
    assert clean_headers(given) == {"X-Keep": "1"}
    assert {"transfer-encoding", "content-length", "connection", "upgrade"} <= HOP_BY_HOP


def test_settings_drop_hop_by_hop_headers_when_written() -> None:
    common = {"url": "https://api.example.com/send", "body_template": '{"to": "{{to}}"}'}
    headers = {"Transfer-Encoding": "chunked", "X-Api": "1"}
    assert JsonSettings(type="json", headers=headers, **common).headers == {"X-Api": "1"}
    hook = WebhookSettings(type="webhook", url="https://h.example/", signing_secret="s" * 16, headers=headers)
    assert hook.headers == {"X-Api": "1"}


def test_proxy_url_must_be_http_or_https() -> None:
    common = {"url": "https://api.example.com/send", "body_template": '{"to": "{{to}}"}'}
    assert JsonSettings(type="json", proxy_url="http://proxy.example:3128", **common).proxy_url
    with pytest.raises(ValueError, match="http"):
        JsonSettings(type="json", proxy_url="socks5://proxy.example:1080", **common)


@pytest.mark.parametrize(
    ("scheme", "host", "expected"),
    [
        ("https", "api.twilio.com", "http://proxy.internal:3128"),
        ("http", "api.twilio.com", "http://proxy.internal:3129"),
        ("https", "fcm.googleapis.com", None),  # NO_PROXY suffix
        ("https", "internal.corp", None),
    ],
)
def test_environment_proxy_choice(scheme: str, host: str, expected: str | None) -> None:
    proxies = {
        "https": "http://proxy.internal:3128",
        "http": "http://proxy.internal:3129",
        "no": "googleapis.com,internal.corp",
    }
    assert proxy_for(scheme, host, proxies) == expected


def test_no_environment_proxy_means_direct() -> None:
    assert proxy_for("https", "api.twilio.com", {}) is None


@pytest.mark.parametrize(
    ("proxy", "login", "url", "sent_login"),
    [
        ("http://proxy.example:3128", None, "http://proxy.example:3128", None),
        ("http://proxy.example:3128", ("a", "b"), "http://proxy.example:3128", ("a", "b")),
        # An operator's HTTPS_PROXY with its login: taken out of the URL (decoded), sent as the login.
        ("http://us%40er:p%3Ass@proxy.example:3128", None, "http://proxy.example:3128", ("us@er", "p:ss")),
        # A channel's own login wins over one in the URL.
        ("https://x:y@proxy.example", ("a", "b"), "https://proxy.example", ("a", "b")),
    ],
)
def test_the_http2_proxy_url_and_its_login(
    proxy: str, login: tuple[str, str] | None, url: str, sent_login: tuple[str, str] | None
) -> None:
    got_url, got_login = proxy_and_login(proxy, login)
    assert got_url.rstrip("/") == url
    assert got_login == sent_login


def _goaway(last_stream_id: int | None) -> BaseException:
    """httpx's error as the HTTP/2 client meets it: httpcore's, carrying h2's GOAWAY event."""
    event = h2.events.ConnectionTerminated()
    event.error_code, event.last_stream_id = 0, last_stream_id
    wrapped = httpx.RemoteProtocolError(str(event))
    wrapped.__cause__ = httpcore.RemoteProtocolError(event)
    return wrapped


@pytest.mark.parametrize(
    ("error", "streams", "resend"),
    [
        (_goaway(9), [11], True),  # above the last processed stream: never processed
        (_goaway(0), [1], True),  # the server processed nothing (httpcore did not resend this one)
        (_goaway(9), [], True),  # its headers never went out on that connection
        (_goaway(9), [9], False),  # the server may have acted on it: uncertain, not resent
        (_goaway(9), [3], False),
        (_goaway(None), [11], False),  # no last stream named: nothing can be concluded
        (httpx.RemoteProtocolError("Server disconnected"), [], False),  # no GOAWAY at all
    ],
)
def test_only_a_request_a_goaway_left_unprocessed_is_resent(
    error: BaseException, streams: list[int], resend: bool
) -> None:
    assert unprocessed(error, streams) is resend

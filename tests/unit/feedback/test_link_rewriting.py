"""Link rewriting at render time, and the URLs and headers the dispatcher puts in a message."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from optibridge.feedback.keys import TrackingKeys
from optibridge.feedback.links import (
    instrument_html,
    list_unsubscribe_headers,
    rewrite_links,
    tracking_urls,
)
from optibridge.feedback.tokens import TokenKind, decode

KEYS = TrackingKeys.from_secret_keys(["t8Rt2Yg3T8xw0N5aV1pLrJ6kQm4sC9dFh2ZbWcXeUyA="])
WHEN = datetime(2024, 3, 1, tzinfo=UTC)


def mark(url: str) -> str:
    return f"TRACK[{url}]"


def test_http_links_are_rewritten_with_the_unescaped_url() -> None:
    html = (
        '<p><a class="x" href="https://a.example/p?x=1&amp;y=2">A</a> <A HREF=\'http://b.example\'>B</A></p>'
    )
    out = rewrite_links(html, mark)
    assert 'href="TRACK[https://a.example/p?x=1&amp;y=2]"' in out  # escaped back in the attribute
    assert 'HREF="TRACK[http://b.example]"' in out
    assert 'class="x"' in out


def test_non_http_anchor_unsubscribe_and_opted_out_links_are_left_alone() -> None:
    html = (
        '<a href="mailto:x@y.z">m</a><a href="tel:+1555">t</a><a href="#top">a</a>'
        '<a href="/relative">r</a><a href="javascript:void(0)">j</a>'
        '<a href="https://x.example/unsubscribe?u=1">u</a>'
        '<a data-no-track href="https://x.example/keep">k</a><a name="anchor">n</a>'
    )
    assert rewrite_links(html, mark) == html


def test_instrumented_html_has_tracked_links_and_the_pixel_before_body_end() -> None:
    mid = uuid.uuid4()
    t = tracking_urls("https://track.example/", mid, KEYS, issued_at=WHEN)
    out = instrument_html('<html><body><a href="https://shop.example/">go</a></body></html>', t)
    assert out.endswith("</body></html>")
    assert t.open_url in out
    click = out.split('href="', 1)[1].split('"', 1)[0]
    assert click.startswith("https://track.example/t/c/")
    assert decode(KEYS, click.rsplit("/", 1)[1], TokenKind.CLICK).url == "https://shop.example/"
    assert t.unsubscribe_url.startswith("https://track.example/t/u/")


def test_list_unsubscribe_headers_follow_rfc_8058() -> None:
    assert list_unsubscribe_headers("https://t.example/t/u/abc") == {
        "List-Unsubscribe": "<https://t.example/t/u/abc>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    with_mail = list_unsubscribe_headers("https://t.example/t/u/abc", mailto="unsub@t.example")
    assert with_mail["List-Unsubscribe"] == "<https://t.example/t/u/abc>, <mailto:unsub@t.example>"


def test_non_ascii_links_become_ascii_urls_that_a_location_header_can_carry() -> None:
    t = tracking_urls("https://track.example", uuid.uuid4(), KEYS, issued_at=WHEN)
    click = t.click_url("https://bücher.example/straße?q=ü")
    url = decode(KEYS, click.rsplit("/", 1)[1], TokenKind.CLICK).url
    assert url == "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC"

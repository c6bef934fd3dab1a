"""What the dispatcher puts into a message: tracking URLs, rewritten links, unsubscribe headers.

All pure: no I/O, time passed in. Typical use for an email at render time:

    tracking = tracking_urls(public_url, message.id, keys, issued_at=now)
    html = instrument_html(rendered_html, tracking)       # links rewritten, pixel appended
    headers = list_unsubscribe_headers(tracking.unsubscribe_url)
"""

from __future__ import annotations

import html as htmllib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from optibridge.feedback.keys import TrackingKeys
from optibridge.feedback.tokens import Token, TokenKind, encode
from optibridge.feedback.urls import is_trackable, to_ascii_url

OPEN_PATH = "/t/o/"
CLICK_PATH = "/t/c/"
UNSUBSCRIBE_PATH = "/t/u/"
TWILIO_PATH = "/r/twilio/"
GENERIC_PATH = "/r/generic/"

# An <a> start tag; attributes are parsed separately (order and quoting vary).
_A_TAG = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(
    r"""(?P<pre>\shref\s*=\s*)(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<uq>[^\s"'=<>`]+))""",
    re.IGNORECASE,
)
# Links that must keep working as they are: unsubscribe/preference pages (a rewritten unsubscribe
# link would count as a click, and some mailbox providers check that it points at the sender), and
# anything the template author marked.
_NO_TRACK_ATTR = re.compile(r"\sdata-(?:no-?track|optibridge-notrack)\b", re.IGNORECASE)
_UNSUBSCRIBE_HINT = re.compile(r"unsubscribe|opt-?out|list-manage|preferences", re.IGNORECASE)


def _base(public_url: str) -> str:
    return public_url.rstrip("/")


@dataclass(frozen=True, slots=True)
class MessageTracking:
    """The tracking URLs of one message."""

    public_url: str
    message_id: uuid.UUID
    issued_at: datetime
    open_url: str
    unsubscribe_url: str
    keys: TrackingKeys

    def click_url(self, target: str) -> str:
        url = to_ascii_url(target)
        token = encode(self.keys, Token(TokenKind.CLICK, self.message_id, self.issued_at, url))
        return f"{_base(self.public_url)}{CLICK_PATH}{token}"


def tracking_urls(
    public_url: str, message_id: uuid.UUID | str, keys: TrackingKeys, *, issued_at: datetime
) -> MessageTracking:
    """Open, unsubscribe and click URLs for a message; `issued_at` is the render (≈ send) time.

    `issued_at` travels in the tokens so the endpoints can tell a scanner's prefetch (seconds after
    sending) from a person, without a database lookup.
    """
    mid = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(message_id)
    base = _base(public_url)
    unsubscribe_token = encode(keys, Token(TokenKind.UNSUBSCRIBE, mid, issued_at))
    return MessageTracking(
        public_url=public_url,
        message_id=mid,
        issued_at=issued_at,
        open_url=f"{base}{OPEN_PATH}{encode(keys, Token(TokenKind.OPEN, mid, issued_at))}",
        unsubscribe_url=f"{base}{UNSUBSCRIBE_PATH}{unsubscribe_token}",
        keys=keys,
    )


def twilio_status_callback_url(
    public_url: str, message_id: uuid.UUID | str, keys: TrackingKeys, *, issued_at: datetime
) -> str:
    """The StatusCallback URL to give Twilio for one SMS."""
    mid = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(message_id)
    return f"{_base(public_url)}{TWILIO_PATH}{encode(keys, Token(TokenKind.SMS_STATUS, mid, issued_at))}"


def generic_receipt_url(public_url: str, tenant_id: str) -> str:
    """Where a provider posts generic delivery reports for a tenant (signed per tenant)."""
    return f"{_base(public_url)}{GENERIC_PATH}{tenant_id}"


def list_unsubscribe_headers(unsubscribe_url: str, *, mailto: str | None = None) -> dict[str, str]:
    """RFC 2369 + RFC 8058 one-click headers; `mailto` adds a mail alternative for old clients."""
    value = f"<{unsubscribe_url}>"
    if mailto:
        value += f", <mailto:{mailto}>"
    return {"List-Unsubscribe": value, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


# Our own tracking and unsubscribe endpoints ({{ unsubscribe_url }} in a template): wrapping
# them in a click redirect would count an unsubscribe as a click.
_OWN_ENDPOINT = re.compile(r"/t/[ocu]/[A-Za-z0-9_-]{20,}")


def _should_track(tag: str, url: str) -> bool:
    if _NO_TRACK_ATTR.search(tag) or _UNSUBSCRIBE_HINT.search(url) or _OWN_ENDPOINT.search(url):
        return False
    return is_trackable(url)


def rewrite_links(html: str, make_click_url: Callable[[str], str]) -> str:
    """Replace the href of every trackable <a> with `make_click_url(original)`.

    Trackable: absolute http(s). Left alone: mailto:, tel:, #anchors, relative and javascript:
    links, unsubscribe/preference links, and tags with a `data-no-track` attribute. The href is
    HTML-unescaped before use (`&amp;` in a query string is `&` in the real URL) and the new one is
    escaped back, so the attribute stays valid whatever the quoting.
    """

    def tag_sub(match: re.Match[str]) -> str:
        tag = match.group(0)
        href = _HREF.search(tag)
        if href is None:
            return tag
        raw = href.group("dq") if href.group("dq") is not None else href.group("sq") or href.group("uq")
        if raw is None:
            return tag
        url = htmllib.unescape(raw).strip()
        if not _should_track(tag, url):
            return tag
        new_attr = f'{href.group("pre")}"{htmllib.escape(make_click_url(url), quote=True)}"'
        return tag[: href.start()] + new_attr + tag[href.end() :]

    return _A_TAG.sub(tag_sub, html)


def open_pixel(open_url: str) -> str:
    return (
        f'<img src="{htmllib.escape(open_url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0" />'
    )


_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def instrument_html(html: str, tracking: MessageTracking) -> str:
    """Links rewritten and the open pixel added (before </body>, or at the end)."""
    out = rewrite_links(html, tracking.click_url)
    pixel = open_pixel(tracking.open_url)
    matches = list(_BODY_END.finditer(out))
    if matches:
        at = matches[-1].start()
        return out[:at] + pixel + out[at:]
    return out + pixel

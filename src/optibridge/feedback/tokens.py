"""Signed tracking tokens: what a tracking or callback URL carries, and proof that we made it.

Layout, base64url without padding:

    version (1) | kind (1) | issued_at (4, unix seconds) | message id (16) | url (clicks) | tag (16)

`tag` is HMAC-SHA256 over everything before it, truncated to 128 bits. Validating needs no
database: a token that verifies was made by us for that message, that kind and (for clicks) that
URL, so the redirect can never be pointed elsewhere (no open redirect). The customer id, campaign
and template are not in the token (they are private and would lengthen every link); the recorder
finds them from the message id in the same INSERT that records the event.

`issued_at` is when the message was rendered. A provider status callback (SMS_STATUS) is refused
once older than `callback_max_age`: the reporting window (results go to Optimove for that long
after sending) plus a day; a receipt later than that can change nothing we report, so a leaked
callback URL stops working then. Open, click and unsubscribe links do not expire: a recipient may
unsubscribe from an old mail, and must be able to.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from optibridge.feedback.keys import TrackingKeys
from optibridge.feedback.urls import InvalidUrl, validate_target_url

VERSION = 1
TAG_BYTES = 16
_HEAD = struct.Struct(">BBI16s")
MIN_RAW = _HEAD.size + TAG_BYTES
# A 2 KB URL makes a ~2.8 KB token; anything much longer was not made by us.
MAX_TOKEN_CHARS = 4096


class TokenKind(enum.IntEnum):
    OPEN = 1
    CLICK = 2
    UNSUBSCRIBE = 3
    SMS_STATUS = 4  # provider status callback (Twilio StatusCallback)


# Past the reporting window, how long a late provider callback is still taken.
CALLBACK_GRACE = timedelta(days=1)


def callback_max_age(reporting_window: timedelta) -> timedelta:
    """How old a status-callback token may be: the reporting window plus `CALLBACK_GRACE`."""
    return reporting_window + CALLBACK_GRACE


def expired(token: Token, now: datetime, max_age: timedelta) -> bool:
    """Whether `token` was issued more than `max_age` before `now`."""
    return now - token.issued_at > max_age


class InvalidToken(ValueError):
    """Not a token we made (malformed, tampered, wrong kind); callers answer 404."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    message_id: uuid.UUID
    issued_at: datetime
    url: str | None = None


def _tag(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()[:TAG_BYTES]


def encode(keys: TrackingKeys, token: Token) -> str:
    issued = int(token.issued_at.timestamp())
    if not 0 <= issued < 2**32:
        raise ValueError("issued_at out of range")
    body = b""
    if token.kind is TokenKind.CLICK:
        if token.url is None:
            raise ValueError("a click token needs a URL")
        body = validate_target_url(token.url).encode()
    elif token.url is not None:
        raise ValueError("only click tokens carry a URL")
    data = _HEAD.pack(VERSION, int(token.kind), issued, token.message_id.bytes) + body
    raw = data + _tag(keys.signing, data)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(keys: TrackingKeys, text: str, expect: TokenKind) -> Token:
    """The token's content if it verifies and is of kind `expect`; InvalidToken otherwise."""
    if not 0 < len(text) <= MAX_TOKEN_CHARS or not text.isascii():
        raise InvalidToken("bad length or characters")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("not base64url") from None
    if len(raw) < MIN_RAW:
        raise InvalidToken("too short")
    data, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    ok = False
    for key in keys.verifying:
        ok |= hmac.compare_digest(_tag(key, data), tag)
    if not ok:
        raise InvalidToken("bad signature")
    version, kind, issued, mid = _HEAD.unpack_from(data)
    if version != VERSION or kind != int(expect):
        raise InvalidToken("wrong version or kind")
    url: str | None = None
    rest = data[_HEAD.size :]
    if expect is TokenKind.CLICK:
        try:
            url = validate_target_url(rest.decode())
        except (UnicodeDecodeError, InvalidUrl):
            raise InvalidToken("bad URL") from None
    elif rest:
        raise InvalidToken("unexpected payload")
    return Token(expect, uuid.UUID(bytes=mid), datetime.fromtimestamp(issued, UTC), url)

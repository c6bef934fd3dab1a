"""Signed tracking tokens: they round-trip, and nothing else verifies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optibridge.feedback.keys import TrackingKeys, sign_body, verify_body_signature
from optibridge.feedback.tokens import InvalidToken, Token, TokenKind, decode, encode
from optibridge.feedback.urls import InvalidUrl

KEY_A = "t8Rt2Yg3T8xw0N5aV1pLrJ6kQm4sC9dFh2ZbWcXeUyA="
KEY_B = "Zm9vYmFyYmF6cXV4cXV1eHh5enp5MTIzNDU2Nzg5MDE="
KEYS = TrackingKeys.from_secret_keys([KEY_A])
MID = uuid.UUID("12345678-1234-5678-1234-567812345678")
WHEN = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", [TokenKind.OPEN, TokenKind.UNSUBSCRIBE, TokenKind.SMS_STATUS])
def test_tokens_round_trip_with_message_and_issue_time(kind: TokenKind) -> None:
    token = encode(KEYS, Token(kind, MID, WHEN))
    assert decode(KEYS, token, kind) == Token(kind, MID, WHEN)
    assert len(token) < 80
    assert token.replace("-", "").replace("_", "").isalnum()


def test_click_tokens_carry_their_url() -> None:
    url = "https://shop.example/a?b=1&c=%20d#frag"
    token = encode(KEYS, Token(TokenKind.CLICK, MID, WHEN, url))
    assert decode(KEYS, token, TokenKind.CLICK).url == url


def test_a_token_of_one_kind_is_refused_as_another() -> None:
    token = encode(KEYS, Token(TokenKind.OPEN, MID, WHEN))
    for other in (TokenKind.CLICK, TokenKind.UNSUBSCRIBE, TokenKind.SMS_STATUS):
        with pytest.raises(InvalidToken):
            decode(KEYS, token, other)


def test_any_changed_character_invalidates_the_token() -> None:
    token = encode(KEYS, Token(TokenKind.CLICK, MID, WHEN, "https://a.example/"))
    for i in range(len(token)):
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(InvalidToken):
            decode(KEYS, changed, TokenKind.CLICK)


def test_another_key_does_not_verify_but_a_rotated_one_still_does() -> None:
    token = encode(KEYS, Token(TokenKind.OPEN, MID, WHEN))
    with pytest.raises(InvalidToken):
        decode(TrackingKeys.from_secret_keys([KEY_B]), token, TokenKind.OPEN)
    rotated = TrackingKeys.from_secret_keys([KEY_B, KEY_A])  # new key first, old one kept
    assert decode(rotated, token, TokenKind.OPEN).message_id == MID


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "//evil.example/", "/relative", "https:///nohost", "http://a b/", "http:\\\\x"],
)
def test_only_absolute_http_urls_can_be_put_in_a_click_token(url: str) -> None:
    with pytest.raises(InvalidUrl):
        encode(KEYS, Token(TokenKind.CLICK, MID, WHEN, url))


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_random_text_never_verifies_and_only_raises_invalid_token(text: str) -> None:
    for kind in TokenKind:
        with pytest.raises(InvalidToken):
            decode(KEYS, text, kind)


def test_receipt_signatures_are_per_tenant_and_checked_in_constant_time_form() -> None:
    body = b'{"a":1}'
    header = sign_body(KEYS.receipt_secret("t1"), body)
    assert verify_body_signature(KEYS.receipt_keys("t1"), body, header)
    assert not verify_body_signature(KEYS.receipt_keys("t2"), body, header)
    assert not verify_body_signature(KEYS.receipt_keys("t1"), body + b" ", header)
    assert not verify_body_signature(KEYS.receipt_keys("t1"), body, "sha256=zz")
    assert not verify_body_signature(KEYS.receipt_keys("t1"), body, None)

"""Webhook signatures: HMAC-SHA256 over "timestamp.body", checked in constant time with a window."""

from __future__ import annotations

import hashlib
import hmac

from optibridge.channels.signing import sign, verify

SECRET = b"whsec-test-secret"
BODY = b'{"customer": "c1", "text": "Zo\xc3\xab"}'


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", BODY) == f"sha256={expected}"


def test_verify_accepts_fresh_and_rejects_tampered_stale_or_foreign() -> None:
    signature = sign(SECRET, "1700000000", BODY)
    assert verify(SECRET, "1700000000", BODY, signature, now=1_700_000_100)
    assert not verify(SECRET, "1700000000", BODY + b" ", signature, now=1_700_000_100)
    assert not verify(SECRET, "1700000001", BODY, signature, now=1_700_000_100)  # timestamp is signed
    assert not verify(SECRET, "1700000000", BODY, signature, now=1_700_000_000 + 301)
    assert not verify(b"other", "1700000000", BODY, signature, now=1_700_000_100)
    assert not verify(SECRET, "not-a-number", BODY, signature, now=1_700_000_100)

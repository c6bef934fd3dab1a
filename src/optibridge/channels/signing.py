"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", as Stripe-style receivers expect.

The timestamp is signed with the body so a captured request cannot be replayed later: receivers
reject signatures older than a tolerance (five minutes by default).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Optibridge-Signature"
TIMESTAMP_HEADER = "X-Optibridge-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Optibridge-Signature value: "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: bytes, timestamp: str, body: bytes, signature: str, *, now: float, tolerance_s: float = 300.0
) -> bool:
    """True when `signature` is ours for this body and the timestamp is recent enough."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)

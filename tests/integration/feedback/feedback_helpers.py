"""Shared by the feedback integration tests: constants and the seeded-state record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from optibridge.testing.feedback import FeedbackStack, MutableClock, SeededMessage

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
TENANT = "t1"
EMAIL, SMS = 504, 505
TWILIO_AUTH_TOKEN = "twilio-auth-token-of-t1"
TWILIO_SETTINGS = {"type": "twilio", "account_sid": "AC1", "from_number": "+15550001111"}
BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15"}


@dataclass
class Seeded:
    stack: FeedbackStack
    clock: MutableClock
    email: list[SeededMessage]
    sms: list[SeededMessage]

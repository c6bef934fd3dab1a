"""Pure rules that turn provider replies into an `Outcome`.

Kept apart from the I/O so each rule is a unit test, and so the table in docs/channels.md has one
place to be checked against. The principles:

- Back-pressure (SMTP 421/451/452/454, HTTP 429, Twilio 20429, FCM QUOTA_EXCEEDED) is THROTTLED,
  never a failure: listmonk lost half a campaign by failing on SES 454.
- Trouble that would hit every message alike (5xx, timeouts, dropped connections, rejected
  credentials, redirects) is TRANSIENT: the message waits for the provider or the operator's fix
  instead of being failed with the rest of its campaign.
- What is about this one message is PERMANENT, with `bounce` when the recipient itself is bad
  (unknown mailbox, invalid number, dead push token), so the caller can suppress it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from optibridge.channels.base import SENT, Outcome, SendResult

# Used when a throttling reply gives no hint. SMTP servers throttle for minutes (greylisting,
# hourly quotas); HTTP APIs throttle per second.
DEFAULT_SMTP_RETRY_AFTER = 30.0
DEFAULT_HTTP_RETRY_AFTER = 1.0
MAX_REASON = 300

SMTP_THROTTLE_CODES = frozenset({421, 451, 452, 454})
# Enhanced status codes (RFC 3463) whose subject says the recipient is bad: X.1.x addressing
# (unknown user, bad domain) and X.2.x mailbox (disabled, full).
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_RETRY_HINT = re.compile(
    r"(?:retry|try again|wait)\D{0,20}?(\d{1,6}(?:\.\d+)?)\s*"
    r"(s|sec|secs|seconds?|m|mins?|minutes?|h|hours?)\b",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}

# HTTP statuses that are the same for every message (credentials, proxy, timeouts): not this
# message's fault, so they must not fail it.
HTTP_TRANSIENT_4XX = frozenset({401, 403, 407, 408, 425})

# Twilio REST API error codes (https://www.twilio.com/docs/api/errors).
TWILIO_THROTTLE_CODES = frozenset({20429, 14107})
TWILIO_BAD_RECIPIENT_CODES = frozenset(
    {
        21211,  # invalid 'To' phone number
        21214,  # 'To' phone number cannot be reached
        21217,  # phone number does not appear to be valid
        21610,  # recipient replied STOP (unsubscribed)
        21612,  # 'To' number is not reachable via SMS
        21614,  # 'To' number is not a valid mobile number
    }
)
TWILIO_TRANSIENT_CODES = frozenset({20003, 20005, 20500, 20503})  # auth, suspended account, 5xx

FCM_UNREGISTERED_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
FCM_TRANSIENT_CODES = frozenset({"UNAVAILABLE", "INTERNAL", "THIRD_PARTY_AUTH_ERROR", "UNAUTHENTICATED"})


def _clip(text: str) -> str:
    text = " ".join(text.split())  # replies span lines; reasons are one line
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def retry_hint_seconds(text: str) -> float | None:
    """Seconds from an SMTP reply such as '421 4.7.0 Try again in 5 minutes', or None."""
    match = _RETRY_HINT.search(text)
    if match is None:
        return None
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)[0].lower()]


def classify_smtp_reply(
    code: int, text: str, *, recipient: bool = False, default_retry_after: float = DEFAULT_SMTP_RETRY_AFTER
) -> SendResult:
    """Classify a non-success SMTP reply.

    `recipient` is True when the reply answered RCPT TO, where a 5xx without an enhanced code
    still means "this mailbox": 550/551/553 there are bounces.
    """
    reason = _clip(f"{code} {text}")
    if code in SMTP_THROTTLE_CODES:
        hint = retry_hint_seconds(text)
        return SendResult(
            Outcome.THROTTLED, retry_after=default_retry_after if hint is None else hint, reason=reason
        )
    if 400 <= code < 500:
        return SendResult(Outcome.TRANSIENT, retry_after=retry_hint_seconds(text), reason=reason)
    if 500 <= code < 600:
        enhanced = _ENHANCED.search(text[:40])
        if enhanced is not None and enhanced.group(1) == "5":
            bounce = enhanced.group(2) in ("1", "2")
        else:
            bounce = recipient and code in (550, 551, 553)
        return SendResult(Outcome.PERMANENT, reason=reason, bounce=bounce)
    return SendResult(Outcome.TRANSIENT, reason=_clip(f"{code} {text} (unexpected reply)"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    return max(seconds, 0.0)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp's headers are case-insensitive; plain dicts in tests and fakes may not be.
    return headers.get(name) or headers.get(name.lower())


def _status_label(status: int) -> str:
    if status == 429:
        return "rate limited"
    if status >= 500:
        return "server error"
    if 400 <= status < 500:
        return "client error"
    if 300 <= status < 400:
        return "redirect, not followed"
    return "unexpected status"


def http_summary(status: int, body: bytes | str) -> str:
    """Our words for an HTTP failure: status, its class and the body's size, never the body.

    A provider's answer can quote anything (an internal page, a stack trace, another tenant's
    data); message reasons are shown to tenants and logged, so they carry none of it.
    """
    return f"HTTP {status} ({_status_label(status)}, {len(body)}-byte body)"


_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _code_text(code: object) -> str:
    # A provider's error code is vocabulary (20429, UNREGISTERED), not free text: kept only if it
    # looks like one.
    text = str(code)
    return text if _CODE.fullmatch(text) else "?"


def classify_http(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: float | None = None,
    default_retry_after: float = DEFAULT_HTTP_RETRY_AFTER,
) -> SendResult:
    """Classify a plain HTTP response; 2xx is SENT (the caller extracts the provider id)."""
    if 200 <= status < 300:
        return SENT
    reason = http_summary(status, body)
    retry_after = parse_retry_after(_header(headers, "Retry-After"), now=now)
    if status == 429:
        return SendResult(
            Outcome.THROTTLED,
            retry_after=default_retry_after if retry_after is None else retry_after,
            reason=reason,
        )
    if status >= 500 or status in HTTP_TRANSIENT_4XX or 300 <= status < 400 or status < 200:
        return SendResult(Outcome.TRANSIENT, retry_after=retry_after, reason=reason)
    return SendResult(Outcome.PERMANENT, reason=reason)


def _json_object(body: bytes | str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def classify_twilio(
    status: int, headers: Mapping[str, str], body: bytes | str, *, now: float | None = None
) -> SendResult:
    """Classify a Twilio Messages API response by its error `code` first, then its HTTP status."""
    if 200 <= status < 300:
        return SENT
    error = _json_object(body)
    code = error.get("code")
    if not isinstance(code, int):
        return classify_http(status, headers, body, now=now)
    reason = f"Twilio {_code_text(code)} ({http_summary(status, body)})"
    retry_after = parse_retry_after(_header(headers, "Retry-After"), now=now)
    if code in TWILIO_THROTTLE_CODES or status == 429:
        return SendResult(
            Outcome.THROTTLED,
            retry_after=DEFAULT_HTTP_RETRY_AFTER if retry_after is None else retry_after,
            reason=reason,
        )
    if code in TWILIO_BAD_RECIPIENT_CODES:
        return SendResult(Outcome.PERMANENT, reason=reason, bounce=True)
    if code in TWILIO_TRANSIENT_CODES:
        return SendResult(Outcome.TRANSIENT, retry_after=retry_after, reason=reason)
    generic = classify_http(status, headers, body, now=now)
    return SendResult(generic.outcome, retry_after=generic.retry_after, reason=reason)


def _fcm_error_code(error: Mapping[str, Any]) -> str:
    """The FcmError `errorCode` from `details`, else the canonical `status`."""
    details = error.get("details")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict) and isinstance(detail.get("errorCode"), str):
                return str(detail["errorCode"])
    status = error.get("status")
    return status if isinstance(status, str) else ""


def _fcm_blames_token(error: Mapping[str, Any]) -> bool:
    """INVALID_ARGUMENT is about the token (rather than the payload) when FCM says so."""
    details = error.get("details")
    if isinstance(details, list):
        for detail in details:
            violations = detail.get("fieldViolations") if isinstance(detail, dict) else None
            if isinstance(violations, list) and any(
                isinstance(v, dict) and v.get("field") == "message.token" for v in violations
            ):
                return True
    message = error.get("message")
    return isinstance(message, str) and "registration token" in message.lower()


def classify_fcm(
    status: int, headers: Mapping[str, str], body: bytes | str, *, now: float | None = None
) -> SendResult:
    """Classify an FCM HTTP v1 `messages:send` response."""
    if 200 <= status < 300:
        return SENT
    error = _json_object(body).get("error")
    if not isinstance(error, dict):
        return classify_http(status, headers, body, now=now)
    code = _fcm_error_code(error)
    reason = f"FCM {_code_text(code or status)} ({http_summary(status, body)})"
    retry_after = parse_retry_after(_header(headers, "Retry-After"), now=now)
    if code == "QUOTA_EXCEEDED" or status == 429:
        return SendResult(
            Outcome.THROTTLED,
            retry_after=DEFAULT_HTTP_RETRY_AFTER if retry_after is None else retry_after,
            reason=reason,
        )
    if code in FCM_UNREGISTERED_CODES or (code == "INVALID_ARGUMENT" and _fcm_blames_token(error)):
        return SendResult(Outcome.PERMANENT, reason=reason, bounce=True, unregistered=True)
    if code in FCM_TRANSIENT_CODES:
        return SendResult(Outcome.TRANSIENT, retry_after=retry_after, reason=reason)
    generic = classify_http(status, headers, body, now=now)
    return SendResult(generic.outcome, retry_after=generic.retry_after, reason=reason)


def classify_network_error(exc: BaseException, *, uncertain: bool = False) -> SendResult:
    """Timeouts, refused or dropped connections: the provider may be fine a moment later.

    `uncertain`: the request (or the SMTP DATA) had gone out, so the provider may have taken it.
    """
    if isinstance(exc, TimeoutError):
        reason = "timeout"
    else:
        reason = _clip(f"connection error: {type(exc).__name__}: {exc}")
    if uncertain:
        reason = _clip(f"no answer after sending ({reason})")
    return SendResult(Outcome.TRANSIENT, reason=reason, uncertain=uncertain)

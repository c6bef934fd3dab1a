"""Pure parsing of provider receipts into events (no I/O; every rule is a unit test).

Twilio status callbacks (form-encoded): MessageSid, MessageStatus, ErrorCode. Twilio sends no
event id; a message's status changes are each reported once (and retried as a whole), so
(MessageSid, MessageStatus) identifies an event. Each callback is signed by Twilio
(X-Twilio-Signature, `twilio_signature_valid`) with the auth token of the account that sent it.

Generic delivery reports (JSON, one event or a list):
    {"message_id": uuid, "status": delivered|bounced|failed|complained|opened|clicked|unsubscribed,
     "event_id": str, "occurred_at": ISO-8601 (optional), "reason": str (optional)}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from optibridge.feedback.events import Event, EventKind, Source

# Twilio error codes (https://www.twilio.com/docs/api/errors) that say the number itself is bad:
# a hard bounce, suppressed.
TWILIO_BAD_NUMBER = frozenset({21211, 21214, 21217, 21612, 21614, 30005, 30006})
# The recipient opted out (replied STOP): an unsubscribe.
TWILIO_OPTED_OUT = frozenset({21610})
_TWILIO_IGNORED = frozenset(
    {"queued", "sending", "sent", "accepted", "scheduled", "receiving", "received", "canceled"}
)
_SID = re.compile(r"^[A-Za-z0-9]{2,64}$")
MAX_EVENT_ID = 200
# Receipts dated far in the future are clamped: a wrong provider clock must not reorder reports.
MAX_CLOCK_SKEW = timedelta(minutes=5)


class InvalidReceipt(ValueError):
    """The body is not a receipt we understand (the endpoint answers 400, records nothing)."""


MAX_FORM_FIELDS = 100  # a status callback has a few dozen at most


def form_pairs(body: bytes) -> list[tuple[str, str]]:
    """A form-encoded receipt's fields, in order (signatures cover them as sent); InvalidReceipt
    for bytes that are not UTF-8 or over MAX_FORM_FIELDS fields (parse_qsl's ValueError)."""
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidReceipt("malformed form body") from None


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """X-Twilio-Signature as Twilio computes it (https://www.twilio.com/docs/usage/security).

    base64(HMAC-SHA1(auth token, URL + each POST parameter as name+value)), parameters sorted by
    name, then by value, a repeated (name, value) pair counted once -- exactly what Twilio's own
    RequestValidator does, so a callback it signs verifies here. The URL is the one Twilio
    requested, query string included.
    """
    payload = url + "".join(name + value for name, value in sorted(set(params)))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> tuple[str, ...]:
    """The URL as given, without and with the scheme's default port.

    Twilio signs some callbacks with the port written out (":443") and some without; its own
    validator accepts both, and so does this.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return (url,)
    host = parts.netloc.rsplit("@", 1)[-1]
    userinfo = parts.netloc[: -len(host)] if host != parts.netloc else ""
    bare = host if port is None else host[: host.rfind(":")]
    default = 443 if parts.scheme == "https" else 80
    without = urlunsplit(parts._replace(netloc=userinfo + bare))
    with_port = urlunsplit(parts._replace(netloc=f"{userinfo}{bare}:{port or default}"))
    return (url, without, with_port)


def twilio_auth_tokens(provider_settings: Mapping[str, Any]) -> list[str]:
    """The auth tokens of the Twilio providers in a channel's settings (one, or a failover list)."""
    listed = provider_settings.get("providers")
    entries = listed if isinstance(listed, list) else [provider_settings]
    return [
        e["auth_token"]
        for e in entries
        if isinstance(e, Mapping) and e.get("type") == "twilio" and isinstance(e.get("auth_token"), str)
    ]


def twilio_signature_valid(
    auth_tokens: Sequence[str], url: str, params: Sequence[tuple[str, str]], signature: str | None
) -> bool:
    """Whether `signature` is Twilio's signature of (url, params) under one of `auth_tokens`.

    No tokens or no signature: False (an unsigned callback is refused, never trusted).
    """
    if not signature or not auth_tokens:
        return False
    given = signature.strip().encode()
    ok = False
    for token in auth_tokens:
        for variant in _url_variants(url):
            ok |= hmac.compare_digest(twilio_signature(token, variant, params).encode(), given)
    return ok


def twilio_event(form: Mapping[str, str], message_id: uuid.UUID, now: datetime) -> Event | None:
    """The event a Twilio status callback means, or None for statuses that mean nothing new.

    'sent' and the states before it are ignored: sent is counted from our own message state.
    """
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not status or len(status) > 40:
        raise InvalidReceipt("MessageStatus missing")
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    if sid and not _SID.match(sid):
        raise InvalidReceipt("malformed MessageSid")
    code_text = (form.get("ErrorCode") or "").strip()
    code = int(code_text) if code_text.isdigit() and len(code_text) <= 9 else None
    if status in _TWILIO_IGNORED:
        return None
    if status == "delivered":
        kind = EventKind.DELIVERED
    elif status == "read":  # WhatsApp read receipts
        kind = EventKind.OPENED
    elif status in ("undelivered", "failed"):
        if code in TWILIO_OPTED_OUT:
            kind = EventKind.UNSUBSCRIBED
        elif code in TWILIO_BAD_NUMBER:
            kind = EventKind.BOUNCED
        else:
            kind = EventKind.FAILED
    else:
        raise InvalidReceipt(f"unknown MessageStatus {status[:40]!r}")
    reason = f"twilio {status}" + (f" {code}" if code is not None else "")
    return Event(
        message_id=message_id,
        kind=kind,
        source=Source.TWILIO,
        dedupe_key=f"twilio:{sid or message_id}:{status}",
        occurred_at=now,
        reason=reason,
    )


GENERIC_STATUSES: dict[str, EventKind] = {
    "delivered": EventKind.DELIVERED,
    "bounced": EventKind.BOUNCED,
    "failed": EventKind.FAILED,
    "complained": EventKind.COMPLAINED,
    "opened": EventKind.OPENED,
    "clicked": EventKind.CLICKED,
    "unsubscribed": EventKind.UNSUBSCRIBED,
}


def _parse_time(value: Any, now: datetime) -> datetime:
    if value is None:
        return now
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidReceipt("occurred_at must be an ISO-8601 string")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidReceipt("occurred_at is not ISO-8601") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(when.astimezone(UTC), now + MAX_CLOCK_SKEW)


def _generic_one(item: Any, tenant_id: str, now: datetime) -> Event:
    if not isinstance(item, dict):
        raise InvalidReceipt("each event must be a JSON object")
    try:
        mid = uuid.UUID(str(item.get("message_id", "")))
    except ValueError:
        raise InvalidReceipt("message_id must be a UUID") from None
    status = item.get("status")
    kind = GENERIC_STATUSES.get(status) if isinstance(status, str) else None
    if kind is None:
        raise InvalidReceipt(f"status must be one of {', '.join(GENERIC_STATUSES)}")
    event_id = item.get("event_id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID or not event_id.isprintable():
        raise InvalidReceipt(f"event_id must be a printable string of 1..{MAX_EVENT_ID} characters")
    reason = item.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidReceipt("reason must be a string")
    url = item.get("url") if kind is EventKind.CLICKED else None
    if url is not None and not isinstance(url, str):
        raise InvalidReceipt("url must be a string")
    return Event(
        message_id=mid,
        kind=kind,
        source=Source.GENERIC,
        dedupe_key=f"generic:{event_id}",
        occurred_at=_parse_time(item.get("occurred_at"), now),
        reason=reason[:500] if reason else None,
        url=url[:2048] if url else None,
        tenant_id=tenant_id,
    )


def generic_events(body: Any, tenant_id: str, now: datetime, *, max_events: int) -> list[Event]:
    """All the events of a generic report, or InvalidReceipt for the first bad one (all or none)."""
    items = body if isinstance(body, list) else [body]
    if not items:
        raise InvalidReceipt("no events")
    if len(items) > max_events:
        raise InvalidReceipt(f"at most {max_events} events per request")
    return [_generic_one(item, tenant_id, now) for item in items]

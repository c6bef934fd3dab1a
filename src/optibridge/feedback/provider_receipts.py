"""Receipts of the e-mail and SMS providers users already have: verification and parsing, pure.

Each provider proves its webhooks its own way, as it documents it; each function here is that
check, or the mapping of one provider's events to ours (no I/O; the web layer fetches keys and
certificates and records the events):

- Amazon SES, through SNS: an RSA signature (SignatureVersion 1: SHA1, 2: SHA256) over the
  documented string to sign, by the certificate at SigningCertURL (which must sit under the
  configured SNS base URL), from a topic the channel names. `sns_string_to_sign`,
  `sns_signature_valid`, `ses_events`.
- SendGrid's signed Event Webhook: ECDSA P-256 / SHA-256 over timestamp + raw body, base64 DER
  in X-Twilio-Email-Event-Webhook-Signature. `sendgrid_signature_valid`, `sendgrid_events`.
- Mailgun: hex HMAC-SHA256 of timestamp + token with the webhook signing key, inside the body.
  `mailgun_signature_valid`, `mailgun_events`.
- Postmark: basic auth credentials on the webhook URL. `basic_auth_valid`, `postmark_events`.
- Vonage delivery receipts: the `sig` parameter (HMAC of the sorted "&key=value" pairs, or MD5
  with the secret appended: "md5hash"), as Vonage's SDK computes it. `vonage_signature`,
  `vonage_events`.
- Plivo: X-Plivo-Signature-V3, base64 HMAC-SHA256 of URL + sorted parameters + "." + nonce, as
  Plivo's SDK computes it. `plivo_signature_v3`, `plivo_events`.

Our message id travels with each message (SES tag, SendGrid custom arg, Mailgun user variable,
Postmark metadata, Vonage client-ref, Plivo callback URL query). Events without it are not ours
(mail sent from the same account by another system) and are skipped. De-duplication keys are the
provider's own event ids where it has them, else (provider message id, status): a replayed or
retried webhook inserts nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from optibridge.feedback.events import Event, EventKind, Source
from optibridge.feedback.receipt_parsing import MAX_CLOCK_SKEW, InvalidReceipt

MESSAGE_KEY = "optibridge_message_id"  # the tag / custom arg / variable / metadata key we send
MAX_ID = 200


def _message_id(value: Any) -> uuid.UUID | None:
    if isinstance(value, list) and value:  # SES tags are lists of values
        value = value[0]
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _text_id(value: Any, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or not value.isprintable():
        raise InvalidReceipt(f"{what} must be a printable string of 1..{MAX_ID} characters")
    return value


def _link_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()[:16]


def _event(
    mid: uuid.UUID,
    kind: EventKind,
    key: str,
    tenant_id: str,
    now: datetime,
    *,
    reason: str | None = None,
    url: str | None = None,
    occurred_at: datetime | None = None,
) -> Event:
    when = now if occurred_at is None else min(occurred_at, now + MAX_CLOCK_SKEW)
    return Event(
        message_id=mid,
        kind=kind,
        source=Source.GENERIC,
        dedupe_key=key[:400],
        occurred_at=when,
        reason=reason[:500] if reason else None,
        url=url[:2048] if url else None,
        tenant_id=tenant_id,
    )


def _unix_time(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 2**33:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value.isdigit() and len(value) <= 11:
        return datetime.fromtimestamp(int(value), UTC)
    return None


def _iso_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# --- Amazon SES through SNS -------------------------------------------------------------------

_SNS_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SNS_SUBSCRIPTION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SNS_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The string SNS signs: "key\\nvalue\\n" for the documented keys of the type, in order
    (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html)."""
    kind = message.get("Type")
    if kind not in SNS_TYPES:
        raise InvalidReceipt("Type must be an SNS message type")
    keys = _SNS_NOTIFICATION_KEYS if kind == "Notification" else _SNS_SUBSCRIPTION_KEYS
    parts: list[str] = []
    for key in keys:
        value = message.get(key)
        if value is None and key == "Subject":
            continue  # optional, and then not part of the string
        if not isinstance(value, str):
            raise InvalidReceipt(f"SNS message lacks {key}")
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode("utf-8")


def sns_cert_url_allowed(url: Any, base_url: str) -> bool:
    """Whether SigningCertURL (or SubscribeURL) sits under the configured SNS base URL.

    Compared on parsed parts, never as a string prefix: "https://sns.x.amazonaws.com.evil.test"
    starts with the base's text but is another host."""
    if not isinstance(url, str) or len(url) > 2048:
        return False
    try:
        given, base = urlsplit(url), urlsplit(base_url)
        given_port, base_port = given.port, base.port
    except ValueError:
        return False
    return (
        given.scheme == base.scheme
        and given.hostname is not None
        and given.hostname == base.hostname
        and given_port == base_port
        and given.username is None
        and given.path.startswith(base.path.rstrip("/") + "/")
        and not given.fragment
    )


def sns_signature_valid(message: Mapping[str, Any], cert_pem: bytes, now: datetime) -> bool:
    """Whether the SNS message is signed by the certificate's key (valid at `now`)."""
    version = message.get("SignatureVersion")
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # noqa: S303  # SNS's SignatureVersion 1 is SHA1withRSA
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        return False
    signature_text = message.get("Signature")
    if not isinstance(signature_text, str) or len(signature_text) > 4096:
        return False
    try:
        signature = base64.b64decode(signature_text, validate=True)
        to_sign = sns_string_to_sign(message)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, binascii.Error):
        return False
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return False
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, to_sign, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return False
    return True


_SES_KINDS = {
    "Delivery": EventKind.DELIVERED,
    "Complaint": EventKind.COMPLAINED,
    "Open": EventKind.OPENED,
    "Click": EventKind.CLICKED,
    "Reject": EventKind.FAILED,
    "Rendering Failure": EventKind.FAILED,
}


def ses_events(notification: Any, tenant_id: str, now: datetime) -> list[Event]:
    """The event of one SES notification (the SNS Message, parsed): event publishing
    (`eventType`) or feedback notifications (`notificationType`)."""
    if not isinstance(notification, dict):
        raise InvalidReceipt("SES notification must be a JSON object")
    kind_name = notification.get("eventType") or notification.get("notificationType")
    mail = notification.get("mail")
    if not isinstance(kind_name, str) or not isinstance(mail, dict):
        raise InvalidReceipt("SES notification lacks eventType or mail")
    tags = mail.get("tags")
    mid = _message_id(tags.get(MESSAGE_KEY)) if isinstance(tags, dict) else None
    if mid is None:
        return []
    ses_id = _text_id(mail.get("messageId"), "mail.messageId")
    url = None
    reason = f"ses {kind_name[:40]}"
    if kind_name == "Bounce":
        bounce = notification.get("bounce")
        bounce_type = bounce.get("bounceType") if isinstance(bounce, dict) else None
        kind = EventKind.BOUNCED if bounce_type == "Permanent" else EventKind.FAILED
        reason += f" {str(bounce_type)[:40]}"
    elif kind_name in _SES_KINDS:
        kind = _SES_KINDS[kind_name]
    else:
        return []  # Send, DeliveryDelay, Subscription: nothing we count
    key = f"ses:{ses_id}:{kind}"
    if kind is EventKind.CLICKED:
        click = notification.get("click")
        link = click.get("link") if isinstance(click, dict) else None
        url = link if isinstance(link, str) else None
        key += ":" + _link_key(url or "")
    when = _iso_time(mail.get("timestamp")) if kind is EventKind.DELIVERED else None
    return [_event(mid, kind, key, tenant_id, now, reason=reason, url=url, occurred_at=when)]


# --- SendGrid ---------------------------------------------------------------------------------


def sendgrid_signature_valid(
    public_key: ec.EllipticCurvePublicKey, timestamp: str | None, body: bytes, signature: str | None
) -> bool:
    """SendGrid's Event Webhook signature: ECDSA(SHA-256) over timestamp + payload, base64 DER."""
    if not timestamp or not signature or len(timestamp) > 32 or len(signature) > 512:
        return False
    try:
        der = base64.b64decode(signature, validate=True)
        public_key.verify(der, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    except (ValueError, binascii.Error, InvalidSignature):
        return False
    return True


_SENDGRID_KINDS = {
    "delivered": EventKind.DELIVERED,
    "open": EventKind.OPENED,
    "click": EventKind.CLICKED,
    "spamreport": EventKind.COMPLAINED,
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "group_unsubscribe": EventKind.UNSUBSCRIBED,
    "dropped": EventKind.FAILED,
}


def sendgrid_events(body: Any, tenant_id: str, now: datetime, *, max_events: int) -> list[Event]:
    """SendGrid posts a JSON array of events; each carries our custom arg at top level."""
    if not isinstance(body, list) or not body:
        raise InvalidReceipt("SendGrid events must be a non-empty JSON array")
    if len(body) > max_events:
        raise InvalidReceipt(f"at most {max_events} events per request")
    events = []
    for item in body:
        if not isinstance(item, dict):
            raise InvalidReceipt("each SendGrid event must be a JSON object")
        name = item.get("event")
        if not isinstance(name, str):
            raise InvalidReceipt("SendGrid event lacks 'event'")
        if name == "bounce":
            # type "bounce" is a hard bounce; "blocked" is the receiving server refusing for now.
            kind = EventKind.BOUNCED if item.get("type", "bounce") == "bounce" else EventKind.FAILED
        elif name in _SENDGRID_KINDS:
            kind = _SENDGRID_KINDS[name]
        else:
            continue  # processed, deferred, group_resubscribe
        mid = _message_id(item.get(MESSAGE_KEY))
        if mid is None:
            continue
        event_id = _text_id(item.get("sg_event_id"), "sg_event_id")
        url = item.get("url") if kind is EventKind.CLICKED and isinstance(item.get("url"), str) else None
        events.append(
            _event(
                mid,
                kind,
                f"sendgrid:{event_id}",
                tenant_id,
                now,
                reason=f"sendgrid {name[:40]}",
                url=url,
                occurred_at=_unix_time(item.get("timestamp")),
            )
        )
    return events


# --- Mailgun ----------------------------------------------------------------------------------


def mailgun_signature_valid(signing_key: str, signature: Any) -> bool:
    """Mailgun's `signature` object: hex HMAC-SHA256(key, timestamp + token) == signature."""
    if not isinstance(signature, dict):
        return False
    timestamp, token, given = signature.get("timestamp"), signature.get("token"), signature.get("signature")
    if not all(isinstance(v, str) and 0 < len(v) <= 256 for v in (timestamp, token, given)):
        return False
    expected = hmac.new(signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, str(given).lower())


# Mailgun's signature covers timestamp + token only, not the event: a captured signature could be
# moved onto other event data. Mailgun's documented answer: refuse old timestamps, and never accept
# a token twice (`MailgunTokens`, in the web layer, remembers them for this long).
MAILGUN_MAX_AGE_S = 3600


def mailgun_fresh(signature: Any, now: datetime) -> bool:
    """Whether the signed timestamp is within MAILGUN_MAX_AGE_S of now (either side)."""
    stamp = _unix_time(signature.get("timestamp")) if isinstance(signature, dict) else None
    return stamp is not None and abs((now - stamp).total_seconds()) <= MAILGUN_MAX_AGE_S


def mailgun_token_and_event(body: Any) -> tuple[str, str] | None:
    """(signature token, event id) of a webhook, for the used-token check."""
    if not isinstance(body, dict):
        return None
    signature, data = body.get("signature"), body.get("event-data")
    if not isinstance(signature, dict) or not isinstance(data, dict):
        return None
    token, event_id = signature.get("token"), data.get("id")
    if not isinstance(token, str) or not isinstance(event_id, str):
        return None
    return token, event_id


_MAILGUN_KINDS = {
    "delivered": EventKind.DELIVERED,
    "opened": EventKind.OPENED,
    "clicked": EventKind.CLICKED,
    "unsubscribed": EventKind.UNSUBSCRIBED,
    "complained": EventKind.COMPLAINED,
}


def mailgun_events(body: Any, tenant_id: str, now: datetime) -> list[Event]:
    """One webhook, one event: {"signature": {...}, "event-data": {...}}."""
    data = body.get("event-data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise InvalidReceipt("Mailgun webhook lacks event-data")
    name = data.get("event")
    if not isinstance(name, str):
        raise InvalidReceipt("Mailgun event lacks 'event'")
    if name == "failed":
        if data.get("severity") != "permanent":
            return []  # temporary: Mailgun retries on its own
        kind = EventKind.BOUNCED
    elif name in _MAILGUN_KINDS:
        kind = _MAILGUN_KINDS[name]
    else:
        return []  # accepted, stored, ...
    variables = data.get("user-variables")
    mid = _message_id(variables.get(MESSAGE_KEY)) if isinstance(variables, dict) else None
    if mid is None:
        return []
    event_id = _text_id(data.get("id"), "event-data.id")
    url = data.get("url") if kind is EventKind.CLICKED and isinstance(data.get("url"), str) else None
    return [
        _event(
            mid,
            kind,
            f"mailgun:{event_id}",
            tenant_id,
            now,
            reason=f"mailgun {name}",
            url=url,
            occurred_at=_unix_time(data.get("timestamp")),
        )
    ]


# --- Postmark ---------------------------------------------------------------------------------


def basic_auth_valid(header: str | None, username: str, password: str) -> bool:
    """Whether an Authorization header carries exactly these basic credentials."""
    if not header or header[:6].lower() != "basic " or len(header) > 1024:
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True)
    except (ValueError, binascii.Error):
        return False
    expected = f"{username}:{password}".encode()
    return hmac.compare_digest(given, expected)


_POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Blocked"})


def postmark_events(body: Any, tenant_id: str, now: datetime) -> list[Event]:
    """One webhook, one record: RecordType Delivery, Bounce, SpamComplaint, Open, Click,
    SubscriptionChange."""
    if not isinstance(body, dict):
        raise InvalidReceipt("Postmark webhook must be a JSON object")
    record = body.get("RecordType")
    if not isinstance(record, str):
        raise InvalidReceipt("Postmark webhook lacks RecordType")
    url = None
    if record == "Delivery":
        kind = EventKind.DELIVERED
    elif record == "Bounce":
        kind = EventKind.BOUNCED if body.get("Type") in _POSTMARK_HARD else EventKind.FAILED
    elif record == "SpamComplaint":
        kind = EventKind.COMPLAINED
    elif record == "Open":
        kind = EventKind.OPENED
    elif record == "Click":
        kind = EventKind.CLICKED
        link = body.get("OriginalLink")
        url = link if isinstance(link, str) else None
    elif record == "SubscriptionChange" and body.get("SuppressSending") is True:
        kind = EventKind.UNSUBSCRIBED
    else:
        return []
    metadata = body.get("Metadata")
    mid = _message_id(metadata.get(MESSAGE_KEY)) if isinstance(metadata, dict) else None
    if mid is None:
        return []
    postmark_id = _text_id(body.get("MessageID"), "MessageID")
    key = f"postmark:{postmark_id}:{record}"
    if record == "Bounce" and body.get("ID") is not None:
        key += ":" + _text_id(body.get("ID"), "ID")
    if url is not None:
        key += ":" + _link_key(url)
    when = _iso_time(body.get("DeliveredAt") or body.get("BouncedAt") or body.get("ReceivedAt"))
    reason = f"postmark {record}" + (f" {str(body.get('Type'))[:40]}" if record == "Bounce" else "")
    return [_event(mid, kind, key, tenant_id, now, reason=reason, url=url, occurred_at=when)]


# --- Vonage -----------------------------------------------------------------------------------


def vonage_signature(params: Mapping[str, str], secret: str, method: str) -> str:
    """Vonage's `sig` over every parameter but `sig`: sorted "&key=value" pairs, '&' and '='
    in values turned into '_'; HMAC with `method`, or for "md5hash" MD5 with the secret appended."""
    message = "".join(
        f"&{key}={params[key].replace('&', '_').replace('=', '_')}" for key in sorted(params) if key != "sig"
    ).encode("utf-8")
    if method == "md5hash":
        return hashlib.md5(message + secret.encode()).hexdigest()  # noqa: S324  # Vonage's scheme
    return hmac.new(secret.encode(), message, method).hexdigest()


def vonage_signature_valid(params: Mapping[str, str], secret: str, method: str) -> bool:
    given = params.get("sig", "")
    if not given or len(given) > 256 or "timestamp" not in params:
        return False
    return hmac.compare_digest(vonage_signature(params, secret, method).encode(), given.lower().encode())


VONAGE_BAD_NUMBER = frozenset({"3", "9"})  # absent subscriber (permanent), illegal number


def vonage_events(params: Mapping[str, str], tenant_id: str, now: datetime) -> list[Event]:
    """A delivery receipt: messageId, status, err-code, client-ref (our message id)."""
    status = params.get("status", "").strip().lower()
    if not status or len(status) > 40:
        raise InvalidReceipt("status missing")
    if status == "delivered":
        kind = EventKind.DELIVERED
    elif status in ("failed", "rejected", "expired"):
        kind = EventKind.BOUNCED if params.get("err-code") in VONAGE_BAD_NUMBER else EventKind.FAILED
    else:
        return []  # accepted, buffered, unknown
    mid = _message_id(params.get("client-ref"))
    if mid is None:
        return []
    vonage_id = _text_id(params.get("messageId"), "messageId")
    reason = f"vonage {status} {params.get('err-code', '')[:9]}".strip()
    return [_event(mid, kind, f"vonage:{vonage_id}:{status}", tenant_id, now, reason=reason)]


# --- Plivo ------------------------------------------------------------------------------------


def _plivo_url(uri: str, params: Mapping[str, str]) -> str:
    """Plivo SDK's construct_post_url: base URL, sorted query, then sorted post parameters."""
    parts = urlsplit(uri)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = parse_qs(parts.query, keep_blank_values=True)
    query_text = "&".join(f"{key}={value}" for key in sorted(query) for value in sorted(query[key]))
    if query_text or params:
        base += "?" + query_text
    if query_text and params:
        base += "."
    return base + "".join(f"{key}{params[key]}" for key in sorted(params))


def plivo_signature_v3(uri: str, params: Mapping[str, str], nonce: str, auth_token: str) -> str:
    """X-Plivo-Signature-V3 of a POST callback to `uri` with form `params`."""
    payload = f"{_plivo_url(uri, params)}.{nonce}".encode()
    return base64.b64encode(hmac.new(auth_token.encode(), payload, hashlib.sha256).digest()).decode()


def plivo_signature_valid(
    auth_tokens: Sequence[str], uri: str, params: Mapping[str, str], nonce: str | None, header: str | None
) -> bool:
    """Whether one of the comma-separated signatures is ours under one of the auth tokens."""
    if not nonce or not header or not auth_tokens or len(header) > 1024 or len(nonce) > 256:
        return False
    given = [s.strip().encode() for s in header.split(",")]
    ok = False
    for token in auth_tokens:
        expected = plivo_signature_v3(uri, params, nonce, token).encode()
        for candidate in given:
            ok |= hmac.compare_digest(expected, candidate)
    return ok


PLIVO_BAD_NUMBER = frozenset({"50", "70"})  # invalid destination, permanently unavailable


def plivo_events(
    params: Mapping[str, str], message_id: uuid.UUID, tenant_id: str, now: datetime
) -> list[Event]:
    """A status callback: MessageUUID, Status, ErrorCode."""
    status = params.get("Status", "").strip().lower()
    if not status or len(status) > 40:
        raise InvalidReceipt("Status missing")
    if status == "delivered":
        kind = EventKind.DELIVERED
    elif status == "read":
        kind = EventKind.OPENED
    elif status in ("failed", "undelivered", "rejected"):
        kind = EventKind.BOUNCED if params.get("ErrorCode") in PLIVO_BAD_NUMBER else EventKind.FAILED
    else:
        return []  # queued, sent
    plivo_id = _text_id(params.get("MessageUUID"), "MessageUUID")
    reason = f"plivo {status} {params.get('ErrorCode', '')[:9]}".strip()
    return [_event(message_id, kind, f"plivo:{plivo_id}:{status}", tenant_id, now, reason=reason)]

"""RFC 5322 / MIME bytes for one email, written directly.

`email.message.EmailMessage` builds only ~450 messages/s per core; this writes the same structure
(multipart/alternative with a text and an HTML part) with string joins and the C codecs in
`binascii`, which is two orders of magnitude cheaper. Python's email parser is the oracle in the
tests.

Everything that lands in a header is sanitised here, since subjects, addresses and extra headers
come from rendered templates and customer data: CR/LF never reach the output except as folding,
non-ASCII text is RFC 2047 encoded, addresses are checked and their domain IDNA-encoded.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from email.utils import parseaddr

from optibridge.channels.base import OutboundMessage

CRLF = "\r\n"
MAX_LINE = 998  # RFC 5322 hard limit, without the CRLF
_WORD_BYTES = 45  # 45 bytes -> 60 base64 chars; "=?utf-8?b?" + 60 + "?=" = 72 <= 75 (RFC 2047)

# Header field names: printable ASCII except ':' (RFC 5322 section 2.2).
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# Deliberately stricter than RFC 5321 (no quoted local parts, no comments): what bulk mail uses,
# and nothing that could break out of a header or an SMTP command.
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"\\@]+@[^\s<>()\[\],;:\"\\@]+")
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._\-]+")
_NEEDS_QUOTING = re.compile(r"[()<>\[\]:;@\\,.\"]")
# Headers that the composer writes itself; letting a template set them could corrupt the MIME
# structure or impersonate the sender.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "sender",
        "return-path",
    }
)


class InvalidRecipientError(ValueError):
    """The recipient address cannot be mailed: a bounce, not a bug."""


def encode_word(text: str) -> str:
    """RFC 2047 B-encoding, split on character boundaries and folded at 75-char words."""
    data = text.encode("utf-8")
    words = []
    start = 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            end -= 1
        words.append("=?utf-8?b?" + binascii.b2a_base64(data[start:end], newline=False).decode() + "?=")
        start = end
    return (CRLF + " ").join(words)


def header_text(value: str) -> str:
    """An unstructured header value: one line, ASCII as is, anything else RFC 2047 encoded."""
    if not value.isprintable():
        # A line break inside a subject is a template artifact or an injection attempt; either
        # way it must not start a new header. Other whitespace controls become spaces too.
        value = " ".join(value.split())
    if value.isascii() and len(value) <= 900 and value.isprintable():
        return value
    return encode_word(value)


def check_address(address: str) -> str:
    """The address as it may appear in a header and an SMTP envelope, or ValueError.

    Internationalised domains are IDNA-encoded; a non-ASCII local part would need SMTPUTF8,
    which bulk senders rarely get end to end, so it is refused.
    """
    if _ADDRESS.fullmatch(address) is None:
        raise ValueError(f"invalid email address {address!r}")
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError(f"non-ASCII local part needs SMTPUTF8: {address!r}")
    try:
        return local + "@" + domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"invalid email domain {domain!r}") from exc


def format_mailbox(name: str | None, address: str) -> str:
    """`Name <addr>` with the display name quoted or encoded as needed."""
    address = check_address(address)
    if not name:
        return address
    name = " ".join(name.split())
    if not name.isascii():
        return f"{encode_word(name)} <{address}>"
    if _NEEDS_QUOTING.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


def split_mailbox(value: str) -> tuple[str | None, str]:
    """('Name', 'addr') from 'Name <addr>' or (None, 'addr')."""
    if "<" not in value:
        return None, value.strip()
    name, address = parseaddr(value)
    return (name or None), address


def _has_long_line(text: str) -> bool:
    return len(text) > MAX_LINE and any(len(line) > MAX_LINE for line in text.split("\n"))


def encode_body(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, CRLF-terminated body bytes) for one text part.

    Plain ASCII with short lines goes out as 7bit at no cost; anything else as quoted-printable
    (readable, and smaller than base64 for mostly-ASCII HTML). Text containing "=_" is encoded
    too, because the MIME boundary starts with "=_" and must not occur in a 7bit part.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii() and "=_" not in text and not _has_long_line(text):
        data = text.replace("\n", CRLF).encode("ascii")
        return "7bit", data if data.endswith(b"\r\n") else data + b"\r\n"
    data = text.replace("\n", CRLF).encode("utf-8")
    if not data.endswith(b"\r\n"):
        # b2a_qp picks CRLF soft line breaks only when the first line ends in CRLF.
        data += b"\r\n"
    return "quoted-printable", binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def extra_headers(headers: Mapping[str, str]) -> str:
    """Extra header lines (List-Unsubscribe, ...), each validated and ending in CRLF."""
    lines = []
    for name, value in headers.items():
        if _FIELD_NAME.fullmatch(name) is None:
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the sender and cannot be overridden")
        lines.append(f"{name}: {header_text(value)}{CRLF}")
    return "".join(lines)


class EmailComposer:
    """Builds the bytes of each message; per-provider constants are formatted once."""

    __slots__ = ("_default_from", "_default_from_header", "_domain")

    def __init__(self, from_address: str, from_name: str | None, message_id_domain: str) -> None:
        self._default_from = check_address(from_address)
        self._default_from_header = f"From: {format_mailbox(from_name, from_address)}{CRLF}"
        self._domain = message_id_domain

    @property
    def default_from(self) -> str:
        return self._default_from

    def compose(self, message: OutboundMessage, date: str) -> tuple[str, str, bytes]:
        """(sender address, recipient address, message bytes); ValueError for bad input.

        `date` is an RFC 5322 date, passed in so that composing stays pure (and the caller can
        format it once per second rather than once per message).
        """
        try:
            recipient = check_address(message.to)
        except ValueError as exc:
            raise InvalidRecipientError(str(exc)) from None
        if message.from_address:
            name, address = split_mailbox(message.from_address)
            sender = check_address(address)
            from_header = f"From: {format_mailbox(name, sender)}{CRLF}"
        else:
            sender = self._default_from
            from_header = self._default_from_header
        message_id = message.message_id
        if _MESSAGE_ID.fullmatch(message_id) is None:
            raise ValueError(f"invalid message id {message_id!r}")
        head = [
            from_header,
            f"To: {recipient}{CRLF}",
            f"Subject: {header_text(message.subject or '')}{CRLF}",
            f"Date: {date}{CRLF}",
            f"Message-ID: <{message_id}@{self._domain}>{CRLF}",
            f"MIME-Version: 1.0{CRLF}",
        ]
        if message.headers:
            head.append(extra_headers(message.headers))
        html_cte, html = encode_body(message.body)
        if message.text_body is None:
            head.append(f"Content-Type: text/html; charset=utf-8{CRLF}")
            head.append(f"Content-Transfer-Encoding: {html_cte}{CRLF}{CRLF}")
            return sender, recipient, "".join(head).encode("ascii") + html
        text_cte, text = encode_body(message.text_body)
        boundary = f"=_ob_{message_id}"
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}{CRLF}')
        head.append(
            f"--{boundary}{CRLF}Content-Type: text/plain; charset=utf-8{CRLF}"
            f"Content-Transfer-Encoding: {text_cte}{CRLF}{CRLF}"
        )
        middle = (
            f"--{boundary}{CRLF}Content-Type: text/html; charset=utf-8{CRLF}"
            f"Content-Transfer-Encoding: {html_cte}{CRLF}{CRLF}"
        )
        end = f"--{boundary}--{CRLF}".encode("ascii")
        data = b"".join(("".join(head).encode("ascii"), text, middle.encode("ascii"), html, end))
        return sender, recipient, data

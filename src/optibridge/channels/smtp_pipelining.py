"""SMTP PIPELINING (RFC 2920) on top of aiosmtplib's connection.

aiosmtplib (5.x, the maintained asyncio client) issues one command per round trip and has no
pipelining. When the server's EHLO offers PIPELINING, the SMTP channel sends MAIL FROM, RCPT TO
and DATA in one write and reads their three replies in order (RFC 2920 §3.1: DATA ends the
group), then the message and its end-of-data: two round trips per message instead of four.

This module is the small part that aiosmtplib lacks: writing a group of commands at once and
reading several replies that may arrive in one segment. aiosmtplib's protocol parses one reply
per `data_received` call and keeps the rest in its buffer, so the following replies are taken
from that buffer before waiting for more data. That buffer parser is private to aiosmtplib:
`available()` says whether the installed version still has it (otherwise the channel keeps the
one-command-per-round-trip path), and tests/integration/channels/test_smtp_pipelining.py fails
when an upgrade removes it.
"""

from __future__ import annotations

import aiosmtplib
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    PERIOD_REGEX,
    SMTPProtocol,
    normalize_message_line_endings,
)
from aiosmtplib.response import SMTPResponse

_BUFFER_PARSER = "_read_response_from_buffer"


def available() -> bool:
    """Whether this aiosmtplib exposes what the pipelined reads need."""
    return callable(getattr(SMTPProtocol, _BUFFER_PARSER, None))


def offered(client: aiosmtplib.SMTP) -> bool:
    """The server's last EHLO offered PIPELINING (after STARTTLS: the second EHLO's answer)."""
    return client.supports_extension("pipelining") and available()


def command(verb: bytes, argument: bytes) -> bytes:
    """One command line, refusing control characters in the argument as aiosmtplib's
    `execute_command` does (a CR or LF would inject a command of the caller's choosing)."""
    if COMMAND_INJECTION_REGEX.search(argument):
        raise ValueError("Command arg contains a prohibited control character")
    return verb + b" " + argument + b"\r\n"


def data_payload(message: bytes) -> bytes:
    """The message as sent after a 354: exactly aiosmtplib's `execute_data_command` encoding
    (CRLF line endings, dot-stuffing, the end-of-data line), with its own helpers."""
    message = normalize_message_line_endings(message)
    return PERIOD_REGEX.sub(b"..", message) + b".\r\n"


class Pipeline:
    """A group of commands written at once on a connected client, their replies read in order.

    The caller owns the connection exclusively (the channel's pool hands each connection to one
    send at a time) and bounds the whole exchange with its own deadline.
    """

    __slots__ = ("_protocol", "_unread")

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        protocol = client.protocol
        if protocol is None or not client.is_connected:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        self._protocol = protocol
        self._unread = 0

    def send(self, data: bytes, replies: int) -> None:
        """Write `data` (whole command lines, or a message payload) expecting `replies` replies."""
        self._protocol.write(data)
        self._unread += replies

    @property
    def unread(self) -> int:
        return self._unread

    async def reply(self) -> SMTPResponse:
        """The next reply in order: from what already arrived, else from the connection.

        Raises SMTPServerDisconnected when the connection is lost (aiosmtplib's own errors).
        """
        if self._unread <= 0:
            raise RuntimeError("no reply expected")
        protocol = self._protocol
        # A previous segment may have carried several replies; aiosmtplib took only the first.
        response: SMTPResponse | None = getattr(protocol, _BUFFER_PARSER)()
        if response is None:
            # read_response arms the protocol for the reply before waiting; there is no await
            # between the write (or the previous reply) and this call, so nothing is dropped.
            response = await protocol.read_response(timeout=None)
        self._unread -= 1
        return response

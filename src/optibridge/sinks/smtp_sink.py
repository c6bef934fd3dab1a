"""An SMTP server that accepts and records mail, with switchable faults.

    async with SmtpSink(mail_dir=Path("mail")) as sink:     # 127.0.0.1, a free port
        ... send to ("127.0.0.1", sink.port) ...
        sink.throttle(421, count=3)          # next 3 transactions get "421 4.7.0 ..." at MAIL
        sink.reject_recipients(["x@y.test"]) # "550 5.1.1 ..." at RCPT
        sink.slow(0.2, count=5)              # delay DATA replies
        sink.drop_connections(count=1)       # close the connection at MAIL (or at="DATA")
        sink.drop_connections(at="ACCEPTED", seconds=5)  # keep the mail, lose its 250
        sink.drop_all_connections()          # like a server restart or an idle timeout
        sink.record_reads = True             # keep what each read from a client carried
        assert sink.count == 10 and sink.messages[0].parse()["Subject"] == "..."

It runs in the caller's event loop (aiosmtpd's protocol on `loop.create_server`), so tests read
its state without locks.
"""

from __future__ import annotations

import asyncio
import email.policy
import itertools
import re
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from optibridge.sinks.faults import Window

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]*)>", re.IGNORECASE | re.MULTILINE)
_THROTTLE_TEXT = {
    421: "4.7.0 Too many connections, try again in 1 seconds",
    451: "4.7.1 Service temporarily unavailable, try again later",
    452: "4.5.3 Too many recipients",
    454: "4.7.0 Throttling failure: Maximum sending rate exceeded",
}


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # as received, CRLF line endings, dot-unstuffed
    message_id: str | None  # the Message-ID header without <>
    queue_id: str
    received_at: float
    peer: str

    def parse(self) -> EmailMessage:
        """The message through Python's own parser (the oracle for what a client will show)."""
        message = BytesParser(policy=email.policy.default).parsebytes(self.data)
        assert isinstance(message, EmailMessage)
        return message


class _SinkSMTP(SMTP):
    """aiosmtpd's protocol, registering its sessions with the sink so they can be dropped."""

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink
        self._replies: asyncio.Queue[tuple[float, bytes]] | None = None
        self._replier: asyncio.Task[None] | None = None
        self._greeted = True  # until connection_made counts the session as greeting

    async def push(self, status: Any) -> None:
        """With the sink's `reply_latency_s`, every reply leaves that long after its command was
        answered - a network round trip: replies to pipelined commands travel together, so a
        pipelining client pays one latency per batch, a lock-step client one per command."""
        latency = self._sink.reply_latency_s
        if not latency or (isinstance(status, str) and status.startswith("221")):  # QUIT: the
            await super().push(status)  # connection closes right after, nothing may be left queued
            return
        response = status if isinstance(status, bytes) else status.encode("utf-8")
        if self._replies is None:
            self._replies = asyncio.Queue()
            self._replier = asyncio.create_task(self._send_replies())
        self._replies.put_nowait((asyncio.get_running_loop().time() + latency, response))

    async def _send_replies(self) -> None:
        assert self._replies is not None
        loop = asyncio.get_running_loop()
        while True:  # ends with the connection (cancelled in connection_lost)
            due, response = await self._replies.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.transport is None or self._writer.is_closing():
                return
            self._writer.write(response + b"\r\n")

    def data_received(self, data: bytes) -> None:
        if self._sink.record_reads:
            self._sink.reads.append(data)
        super().data_received(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self._sink._sessions.add(self)
            self._sink.connections += 1
            self._greeted = False
            self._sink.greeting += 1
            self._sink.greeting_peak = max(self._sink.greeting_peak, self._sink.greeting)

    def greeted(self) -> None:
        """The client said EHLO or HELO: its connection is open."""
        if not self._greeted:
            self._greeted = True
            self._sink.greeting -= 1

    def connection_lost(self, error: Exception | None) -> None:
        self.greeted()
        self._sink._sessions.discard(self)
        if self._replier is not None:
            self._replier.cancel()
        super().connection_lost(error)


class SmtpSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mail_dir: Path | None = None,
        keep_messages: bool = True,
        hostname: str = "sink.optibridge.test",
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        credentials: Mapping[str, str] | None = None,
        pipelining: bool = True,
    ) -> None:
        """`tls_context` (a server context) offers STARTTLS, or with `implicit_tls` wraps every
        connection in TLS from the start (port 465 style). `credentials` (user -> password)
        makes AUTH PLAIN/LOGIN mandatory before MAIL. `pipelining`: EHLO offers PIPELINING
        (RFC 2920), as most providers do; aiosmtpd reads commands one line at a time, so it
        answers a pipelined group in order either way, but does not offer it by itself."""
        self.host = host
        self.port = port
        self.mail_dir = mail_dir
        self.keep_messages = keep_messages
        self.hostname = hostname
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.require_starttls = require_starttls
        self.credentials = dict(credentials) if credentials is not None else None
        self.pipelining = pipelining
        self.authenticated_users: list[str] = []
        self.messages: list[ReceivedMail] = []
        self.count = 0
        self.connections = 0  # sessions opened since start
        self.greeting = 0  # sessions not yet past EHLO/HELO (a client opening connections)
        self.greeting_peak = 0  # the most at once since start
        self.rejections = 0  # replies other than 250 at MAIL/RCPT
        self.unanswered = 0  # messages kept whose 250 was never sent (drop at "ACCEPTED")
        self._sessions: set[_SinkSMTP] = set()
        self._server: asyncio.base_events.Server | None = None
        self._queue_ids = itertools.count(1)
        # Every reply delayed by this (a provider's network round trip; bench/send.py --latency-ms).
        self.reply_latency_s = 0.0
        # With record_reads, `reads` keeps every chunk read from a client, as it arrived (after
        # TLS): what a client wrote together (tests of pipelining). Off by default: it grows.
        self.record_reads = False
        self.reads: list[bytes] = []
        self.clear_faults()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.mail_dir is not None:
            self.mail_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)

        options: dict[str, Any] = {}
        if self.tls_context is not None and not self.implicit_tls:
            options.update(tls_context=self.tls_context, require_starttls=self.require_starttls)
        if self.credentials is not None:
            options.update(
                auth_required=True,
                # aiosmtpd cannot see implicit TLS (it wraps below the protocol), so it would
                # refuse AUTH there as "unencrypted"; with STARTTLS it can, and insists.
                auth_require_tls=self.tls_context is not None and not self.implicit_tls,
                authenticator=self._authenticate,
            )

        def protocol() -> _SinkSMTP:
            # hostname given: aiosmtpd would otherwise call getfqdn() (a DNS lookup) per session.
            return _SinkSMTP(
                self, handler, hostname=self.hostname, loop=loop, data_size_limit=None, **options
            )

        server_ssl = self.tls_context if self.implicit_tls else None
        self._server = await loop.create_server(protocol, self.host, self.port, ssl=server_ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self.drop_all_connections()
        await server.wait_closed()

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- recorded data --------------------------------------------------------------------------

    @property
    def message_ids(self) -> list[str]:
        return [m.message_id for m in self.messages if m.message_id is not None]

    @property
    def open_connections(self) -> int:
        return len(self._sessions)

    def reset(self) -> None:
        """Forget received mail and counters (faults stay)."""
        self.messages.clear()
        self.count = 0
        self.connections = 0
        self.rejections = 0
        self.unanswered = 0
        self.reads.clear()

    # -- faults ---------------------------------------------------------------------------------

    def clear_faults(self) -> None:
        self._throttle: tuple[Window, str] | None = None
        self._rejected: dict[str, str] = {}
        self._slow: tuple[Window, float] | None = None
        self._drop: Window | None = None
        self._drop_at = "MAIL"

    def throttle(
        self,
        code: int = 421,
        *,
        count: int | None = None,
        seconds: float | None = None,
        text: str | None = None,
    ) -> None:
        """Answer MAIL FROM with `code` (421/451/452/454) for the next `count` or `seconds`."""
        self._throttle = (
            Window(count=count, seconds=seconds),
            f"{code} {text or _THROTTLE_TEXT.get(code, '')}",
        )

    def reject_recipients(self, addresses: Iterable[str], code: int = 550, text: str | None = None) -> None:
        """Refuse these recipients at RCPT TO (default: 550 5.1.1 user unknown)."""
        for address in addresses:
            reply = text or f"5.1.1 <{address}>: Recipient address rejected: User unknown"
            self._rejected[address.lower()] = f"{code} {reply}"

    def slow(self, delay_s: float, *, count: int | None = None, seconds: float | None = None) -> None:
        """Wait `delay_s` before answering DATA."""
        self._slow = (Window(count=count, seconds=seconds), delay_s)

    def drop_connections(
        self,
        *,
        count: int | None = 1,
        seconds: float | None = None,
        at: Literal["MAIL", "DATA", "ACCEPTED"] = "MAIL",
    ) -> None:
        """Close the connection instead of answering MAIL FROM, or after the message data
        without answering it (the message is then not kept): a crash mid-session. With
        `at="ACCEPTED"` the message is kept, and only its 250 answer is lost: the provider
        accepted it, the sender cannot know (a timeout or reset after DATA)."""
        self._drop = Window(count=count, seconds=seconds)
        self._drop_at = at

    def drop_all_connections(self) -> None:
        """Close every open session now (a restart, or an idle timeout on the server side)."""
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()

    # -- used by the handler --------------------------------------------------------------------

    def _authenticate(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        if self.credentials.get(user) != password:
            return AuthResult(success=False, handled=False)
        self.authenticated_users.append(user)
        return AuthResult(success=True)

    def _accept(self, envelope: Envelope, session: Session) -> str:
        data: bytes = envelope.original_content or b""
        queue_id = f"{next(self._queue_ids):010X}"
        match = _MESSAGE_ID.search(data, 0, data.find(b"\r\n\r\n") + 2 if b"\r\n\r\n" in data else len(data))
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            message_id=match.group(1).decode("ascii", "replace") if match else None,
            queue_id=queue_id,
            received_at=time.time(),
            peer=str(session.peer),
        )
        self.count += 1
        if self.keep_messages:
            self.messages.append(mail)
        if self.mail_dir is not None:
            (self.mail_dir / f"{queue_id}.eml").write_bytes(data)
        return queue_id


class _Handler:
    """aiosmtpd hooks; all state lives on the sink."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves it to this hook when the hook exists
        server.greeted()
        if self.sink.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")  # before the last "250 HELP"
        return responses

    async def handle_MAIL(  # aiosmtpd's hook names
        self, server: _SinkSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        sink = self.sink
        if sink._drop_at == "MAIL" and sink._drop is not None and sink._drop.hit():
            return _abort(server)
        if sink._throttle is not None:
            window, reply = sink._throttle
            if window.hit():
                sink.rejections += 1
                return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.sink._rejected.get(address.lower())
        if reply is not None:
            self.sink.rejections += 1
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: _SinkSMTP, session: Session, envelope: Envelope) -> str:
        sink = self.sink
        if sink._drop_at == "DATA" and sink._drop is not None and sink._drop.hit():
            return _abort(server)
        if sink._slow is not None:
            window, delay = sink._slow
            if window.hit():
                await asyncio.sleep(delay)
        queue_id = sink._accept(envelope, session)
        if sink._drop_at == "ACCEPTED" and sink._drop is not None and sink._drop.hit():
            sink.unanswered += 1
            return _abort(server)
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _abort(server: _SinkSMTP) -> str:
    # Any loop's transport: uvloop's (python -m optibridge.sinks) are not asyncio.Transport
    # instances, and a check on that class let the 421 below reach the client, so the "answer
    # lost" fault became a plain refusal (tests/faults/test_fault_provider.py caught it).
    abort = getattr(server.transport, "abort", None)
    if callable(abort):
        abort()
    return "421 4.3.2 connection dropped"  # never reaches the client

"""Email over SMTP: a pool of persistent connections, one transaction per message.

Connections are opened lazily up to `pool_size`, reused LIFO (warm ones first), replaced when the
server drops them, and recycled after `max_messages_per_connection` (servers often cap messages
per session). A send waits for a free connection, so any number of concurrent callers is safe.

Where the server's EHLO offers PIPELINING (RFC 2920), MAIL FROM, RCPT TO and DATA go in one
write (smtp_pipelining.py): two round trips per message instead of four.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

import aiosmtplib
from aiosmtplib.response import SMTPResponse

from optibridge.channels.base import OutboundMessage, Outcome, SendResult, send_bounded
from optibridge.channels.classify import classify_network_error, classify_smtp_reply
from optibridge.channels.mime import EmailComposer, InvalidRecipientError
from optibridge.channels.settings import SmtpSettings
from optibridge.channels.smtp_pipelining import Pipeline, command, data_payload, offered
from optibridge.channels.sockets import RESET_ON_CLOSE
from optibridge.core.logs import get_logger
from optibridge.core.outbound import DestinationRefusedError, OutboundPolicy

log = get_logger(__name__)

# "250 2.0.0 Ok: queued as 4Bx7Yz" (Postfix), "250 Ok 0100018c-..." (SES): the id to correlate
# bounces and logs with.
_QUEUE_ID = re.compile(r"(?:queued as|Ok)\s+<?([A-Za-z0-9._@\-]{4,})>?", re.IGNORECASE)


def provider_id_from_reply(reply: str) -> str | None:
    match = _QUEUE_ID.search(reply)
    return match.group(1) if match else None


def _discard_unsent(client: aiosmtplib.SMTP) -> None:
    """Close abortively (RST): asyncio's write buffer and the kernel's send buffer are dropped.

    A plain close first flushes asyncio's buffer, then the kernel keeps retransmitting what is
    still in the socket's send buffer, then FIN.
    When the link was cut (a partition, not a dead server), that data would reach the server
    whenever the link returns, long after this message went back to `pending` and another
    worker sent it: a duplicate. Found by tests/scale/test_netns.py (20 duplicates, one chunk).
    """
    transport = client.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(*RESET_ON_CLOSE)
    abort = getattr(transport, "abort", None)  # a WriteTransport's; then close() resets state
    if abort is not None:
        abort()


class _StaleConnectionError(Exception):
    """The connection failed at MAIL, before the server could have accepted anything."""


class _DateHeader:
    """RFC 5322 Date for the current second, formatted once per second rather than per message."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = format_datetime(datetime.fromtimestamp(second, UTC))  # ... +0000
        return self._text


class _Connection:
    __slots__ = ("client", "pipelining", "sent")

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.sent = 0
        self.pipelining = False  # the server's EHLO on this connection offered PIPELINING


class SmtpProvider:
    kind = "email"

    def __init__(
        self, settings: SmtpSettings, *, name: str | None = None, policy: OutboundPolicy | None = None
    ) -> None:
        """`policy`: the operator's outbound policy, checked against every address the host resolves
        to at each new connection (a name re-pointed inside after it was saved is refused); None
        connects wherever the host leads (library use without a policy)."""
        self.name = name or settings.name or "smtp"
        self.settings = settings
        self._policy = policy
        self._composer = EmailComposer(
            settings.from_address, settings.from_name, settings.effective_message_id_domain
        )
        self._envelope_from = settings.envelope_from
        self._cap = settings.max_messages_per_connection
        self._throttle_default = settings.throttle_retry_after_s
        self._timeout = settings.timeout_s
        self._date = _DateHeader()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._connecting = asyncio.Semaphore(settings.connects_at_once)  # settings.py says why
        self._closed = False
        self._quitting: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps only weak ones
        self.connections_opened = 0  # for tests and metrics: reconnects show up here

    async def __aenter__(self) -> SmtpProvider:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        # Connections open lazily on first use, so a provider that sends nothing costs nothing.
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(conn) for conn in idle), *self._quitting)

    async def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return await send_bounded(self.send, messages, self.settings.pool_size)

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            sender, recipient, data = self._composer.compose(message, self._date.now())
        except InvalidRecipientError as exc:
            return SendResult(Outcome.PERMANENT, reason=str(exc), bounce=True)
        except ValueError as exc:
            return SendResult(Outcome.PERMANENT, reason=str(exc))
        if self._envelope_from is not None:
            sender = self._envelope_from
        await self._slots.acquire()
        conn = self._idle.pop() if self._idle else _Connection(self._new_client())
        try:
            for _ in range(2):  # at most one retry, and only when nothing can have been delivered
                reused = conn.client.is_connected
                if not reused:
                    failure = await self._connect(conn)
                    if failure is not None:
                        return failure
                try:
                    if conn.pipelining:
                        return await self._pipelined_transaction(conn, sender, recipient, data)
                    return await self._transaction(conn, sender, recipient, data)
                except _StaleConnectionError as exc:
                    # The server had closed a pooled connection that still looked open: MAIL
                    # failed before any message data left, so a fresh connection is safe.
                    if not reused:
                        return classify_network_error(exc.__cause__ or exc)
            return SendResult(Outcome.TRANSIENT, reason="connection lost twice before MAIL")
        except asyncio.CancelledError:
            # Cancelled mid-exchange: the connection's replies are out of step; never reuse it,
            # and let nothing still buffered reach the server later (the caller gave up on it).
            _discard_unsent(conn.client)
            conn.client.close()
            raise
        finally:
            self._release(conn)

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            # Under a policy we connect the socket ourselves (see _guarded_socket); aiosmtplib
            # refuses a port beside a socket. The host name stays for TLS (SNI, certificate).
            port=None if self._policy is not None else s.effective_port,
            username=s.username,
            password=s.password,
            local_hostname=s.local_hostname,
            timeout=s.timeout_s,
            use_tls=s.tls == "implicit",
            start_tls={"starttls": True, "opportunistic": None}.get(s.tls, False),
            validate_certs=s.validate_certs,
            cert_bundle=s.cert_bundle,
        )

    async def _connect(self, conn: _Connection) -> SendResult | None:
        """Open (or reopen) a connection; a failure is about the server, never the message."""
        conn.sent = 0
        conn.pipelining = False
        async with self._connecting:
            return await self._open(conn)

    async def _open(self, conn: _Connection) -> SendResult | None:
        try:
            if self._policy is not None:
                await conn.client.connect(sock=await self._guarded_socket(self._policy))
            else:
                await conn.client.connect()
            if conn.client.is_ehlo_or_helo_needed:  # connect() greets only for STARTTLS or AUTH
                try:
                    await conn.client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await conn.client.helo()
        except aiosmtplib.SMTPResponseException as exc:
            conn.client.close()
            result = classify_smtp_reply(exc.code, exc.message, default_retry_after=self._throttle_default)
            if result.outcome is Outcome.THROTTLED:
                return result
            # Greeting, EHLO, STARTTLS or AUTH refused: the same for every message, so it must
            # not fail this one.
            return SendResult(Outcome.TRANSIENT, reason=f"connect: {result.reason}")
        except DestinationRefusedError as exc:
            # The same for every message until the operator or the tenant changes something.
            conn.client.close()
            return SendResult(Outcome.PERMANENT, reason=f"connect: {exc}")
        except (aiosmtplib.SMTPException, OSError) as exc:  # includes timeouts
            conn.client.close()
            failure = classify_network_error(exc)
            return SendResult(Outcome.TRANSIENT, reason=f"connect: {failure.reason}")
        conn.pipelining = offered(conn.client)
        self.connections_opened += 1
        return None

    async def _guarded_socket(self, policy: OutboundPolicy) -> socket.socket:
        """A TCP socket connected to an address of the host that the policy allows.

        Resolved on every new connection (no cache), so DNS rebinding meets the check too.
        DestinationRefusedError when every address is forbidden; OSError when none answers.
        """
        s = self.settings
        port = s.effective_port
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._timeout):
            answers = await policy.resolver().resolve(s.host, port, socket.AF_UNSPEC)
            last: OSError | None = None
            for answer in answers:
                sock = socket.socket(answer["family"], socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, (answer["host"], port))
                except OSError as exc:
                    sock.close()
                    last = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                return sock
        raise last if last is not None else OSError(f"{s.host} has no address")

    async def _transaction(self, conn: _Connection, sender: str, recipient: str, data: bytes) -> SendResult:
        """MAIL, RCPT, DATA on a connected client; every outcome classified.

        aiosmtplib's `sendmail` would re-parse both addresses with the stdlib's address parser
        four times per message (a quarter of the CPU per message); they are already checked
        by the composer, so the commands are issued directly. One deadline covers the whole
        transaction instead of one timer per reply.
        """
        client = conn.client
        phase = "MAIL"
        try:
            async with asyncio.timeout(self._timeout):
                reply = await client.execute_command(
                    b"MAIL", b"FROM:<" + sender.encode() + b">", timeout=None
                )
                if reply.code != 250:
                    return await self._refused(client, reply.code, reply.message, recipient=False)
                phase = "RCPT"
                reply = await client.execute_command(
                    b"RCPT", b"TO:<" + recipient.encode() + b">", timeout=None
                )
                if reply.code not in (250, 251):
                    return await self._refused(client, reply.code, reply.message, recipient=True)
                phase = "DATA"
                reply = await client.data(data, timeout=None)
        except aiosmtplib.SMTPResponseException as exc:  # DATA refused, or a malformed reply
            if exc.code < 400:
                client.close()
                return classify_network_error(exc, uncertain=phase == "DATA")
            return await self._refused(client, exc.code, exc.message, recipient=False)
        except (aiosmtplib.SMTPException, OSError) as exc:  # includes TimeoutError
            # A half-finished exchange leaves the connection out of step: discard it. Before
            # DATA nothing was accepted, so the caller may retry on a fresh connection.
            if phase == "DATA":
                _discard_unsent(client)
            client.close()
            if phase == "MAIL" and not isinstance(exc, TimeoutError):
                raise _StaleConnectionError from exc
            # Lost during DATA: the server may have queued the message before the reply got
            # lost (the classic end-of-data race), so the outcome is unknown.
            return classify_network_error(exc, uncertain=phase == "DATA")
        conn.sent += 1
        return SendResult(Outcome.SENT, provider_message_id=provider_id_from_reply(reply.message))

    async def _pipelined_transaction(
        self, conn: _Connection, sender: str, recipient: str, data: bytes
    ) -> SendResult:
        """MAIL, RCPT and DATA in one write, their three replies read in order, then the message
        only if all three said yes (RFC 2920 §3.1): two round trips instead of four.

        The outcomes are those of `_transaction`: a refusal is classified by the first command
        refused (MAIL: the message; RCPT: the recipient), a failure before any reply may be a
        stale pooled connection (retried once), and only a failure once the message was written
        leaves its fate unknown (and drops what is unsent, see `_discard_unsent`).
        """
        client = conn.client
        phase = "MAIL"
        try:
            async with asyncio.timeout(self._timeout):
                group = Pipeline(client)
                group.send(
                    command(b"MAIL", b"FROM:<" + sender.encode() + b">")
                    + command(b"RCPT", b"TO:<" + recipient.encode() + b">")
                    + b"DATA\r\n",
                    replies=3,
                )
                mail = await group.reply()
                phase = "RCPT"
                if mail.code != 250:
                    return await self._refused_in_group(client, group, mail, recipient=False)
                rcpt = await group.reply()
                phase = "DATA"
                if rcpt.code not in (250, 251):
                    return await self._refused_in_group(client, group, rcpt, recipient=True)
                start = await group.reply()
                if start.code != 354:
                    return await self._not_taken(client, start, uncertain=False)
                phase = "BODY"
                group.send(data_payload(data), replies=1)
                reply = await group.reply()
                if reply.code != 250:
                    return await self._not_taken(client, reply, uncertain=True)
        except (aiosmtplib.SMTPException, OSError) as exc:  # includes TimeoutError
            if phase == "BODY":
                _discard_unsent(client)
            client.close()
            if phase == "MAIL" and not isinstance(exc, TimeoutError):
                # No reply at all yet: a pooled connection the server had closed; nothing of the
                # message left, so a fresh connection is safe (as in `_transaction`).
                raise _StaleConnectionError from exc
            return classify_network_error(exc, uncertain=phase == "BODY")
        conn.sent += 1
        return SendResult(Outcome.SENT, provider_message_id=provider_id_from_reply(reply.message))

    async def _not_taken(
        self, client: aiosmtplib.SMTP, reply: SMTPResponse, *, uncertain: bool
    ) -> SendResult:
        """DATA or end-of-data answered with anything but yes: a reply that makes no sense here
        (below 400) leaves the connection out of step (closed; `uncertain` once the message was
        written); a refusal is classified as the message's, and a 421 closes the connection."""
        if reply.code < 400:
            client.close()
            error = aiosmtplib.SMTPDataError(reply.code, reply.message)
            return classify_network_error(error, uncertain=uncertain)
        if reply.code == 421:
            client.close()
        return await self._refused(client, reply.code, reply.message, recipient=False)

    async def _refused_in_group(
        self, client: aiosmtplib.SMTP, group: Pipeline, reply: SMTPResponse, *, recipient: bool
    ) -> SendResult:
        """MAIL or RCPT refused inside a group: the message is not sent. The group's remaining
        replies are read (the server must then refuse DATA with 503/554); a server that accepts
        DATA anyway gets the lone end-of-data line (RFC 2920 §3.1), which ends a transaction
        without valid recipients. A 421, or a connection that fails meanwhile, is closed."""
        in_step = reply.code != 421  # 421: the server is closing the connection
        try:
            while in_step and group.unread:
                if (await group.reply()).code == 354:
                    group.send(b".\r\n", replies=1)
        except (aiosmtplib.SMTPException, OSError):
            in_step = False
        if not in_step:
            client.close()
        return await self._refused(client, reply.code, reply.message, recipient=recipient)

    async def _refused(self, client: aiosmtplib.SMTP, code: int, text: str, *, recipient: bool) -> SendResult:
        if client.is_connected:  # 421 closes it; otherwise clear the envelope for the next message
            try:
                async with asyncio.timeout(self._timeout):
                    await client.execute_command(b"RSET", timeout=None)
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        return classify_smtp_reply(
            code, text, recipient=recipient, default_retry_after=self._throttle_default
        )

    def _release(self, conn: _Connection) -> None:
        client = conn.client
        if self._closed or (self._cap is not None and conn.sent >= self._cap):
            if client.is_connected:
                # QUIT politely in the background; the slot is free at once.
                task = asyncio.ensure_future(self._quit(conn))
                self._quitting.add(task)
                task.add_done_callback(self._quitting.discard)
            if self._closed:
                self._slots.release()
                return
            conn = _Connection(self._new_client())
        self._idle.append(conn)
        self._slots.release()

    async def _quit(self, conn: _Connection) -> None:
        if not conn.client.is_connected:
            return
        try:
            await asyncio.wait_for(conn.client.quit(), timeout=2.0)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            conn.client.close()
